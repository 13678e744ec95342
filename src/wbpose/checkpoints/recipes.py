"""What each released MMPose whole-body HRNet checkpoint needs around its weights (timm's ``default_cfgs`` idea).

An MMPose ``.pth`` holds weights only: the input size and codec it was trained with are not stored reliably in its
``meta``. This table names them per released file, so ``Predictor.from_checkpoint(<released file>)`` and
``scripts/eval.py`` pick 384x288 DARK for ``hrnet_w48_coco_wholebody_384x288_dark-f5726563_20200918.pth`` without
flags. Files renamed by the user still match when the name keeps MMPose's pattern
(``hrnet_<w32|w48>_coco_wholebody_<h>x<w>[_dark]``); any other file needs the recipe given explicitly.

Source: MMPose 0.x ``hrnet_coco-wholebody.md`` and ``hrnet_dark_coco-wholebody.md`` (the seed tables of this
project) and the matching configs in ``configs/wholebody/2D_Kpt_SView_RGB_Img/top_down_heatmap/coco-wholebody/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from wbpose.codecs.factory import default_sigma

__all__ = ["RECIPES", "Recipe", "recipe_for_file", "recipe_from_name"]

_URL = "https://download.openmmlab.com/mmpose/top_down/hrnet/"


@dataclass(frozen=True)
class Recipe:
    """The settings a pose checkpoint was trained with, beyond its weights.

    Attributes:
        arch: HRNet variant (``wbpose.models.hrnet.ARCHS`` key).
        image_hw: network input (height, width).
        codec: ``"msra"`` or ``"dark"``.
        sigma: Gaussian sigma of the training targets, in heatmap pixels.
        experiment: the ``conf/experiment`` file that trains it.
        url: where MMPose publishes the file (empty for recipes matched by pattern only).
    """

    arch: str
    image_hw: tuple[int, int]
    codec: str
    sigma: float
    experiment: str = ""
    url: str = ""

    @property
    def heatmap_hw(self) -> tuple[int, int]:
        """Heatmap (height, width): the input at stride 4."""
        return self.image_hw[0] // 4, self.image_hw[1] // 4


def _recipe(arch: str, size: str, codec: str, experiment: str, file: str = "") -> Recipe:
    h, w = (int(v) for v in size.split("x"))
    return Recipe(arch, (h, w), codec, default_sigma((h, w)), experiment, _URL + file if file else "")


#: Released file name -> recipe: one entry per row of the seed tables.
RECIPES: dict[str, Recipe] = {
    "hrnet_w32_coco_wholebody_256x192-853765cd_20200918.pth": _recipe(
        "w32", "256x192", "msra", "w32_256x192_msra", "hrnet_w32_coco_wholebody_256x192-853765cd_20200918.pth"
    ),
    "hrnet_w32_coco_wholebody_384x288-78cacac3_20200922.pth": _recipe(
        "w32", "384x288", "msra", "w32_384x288_msra", "hrnet_w32_coco_wholebody_384x288-78cacac3_20200922.pth"
    ),
    "hrnet_w48_coco_wholebody_256x192-643e18cb_20200922.pth": _recipe(
        "w48", "256x192", "msra", "w48_256x192_msra", "hrnet_w48_coco_wholebody_256x192-643e18cb_20200922.pth"
    ),
    "hrnet_w48_coco_wholebody_384x288-6e061c6a_20200922.pth": _recipe(
        "w48", "384x288", "msra", "w48_384x288_msra", "hrnet_w48_coco_wholebody_384x288-6e061c6a_20200922.pth"
    ),
    "hrnet_w32_coco_wholebody_256x192_dark-469327ef_20200922.pth": _recipe(
        "w32", "256x192", "dark", "w32_256x192_dark", "hrnet_w32_coco_wholebody_256x192_dark-469327ef_20200922.pth"
    ),
    "hrnet_w48_coco_wholebody_384x288_dark-f5726563_20200918.pth": _recipe(
        "w48",
        "384x288",
        "dark",
        "w48_384x288_dark_plus",
        "hrnet_w48_coco_wholebody_384x288_dark-f5726563_20200918.pth",
    ),
}

_PATTERN = re.compile(r"hrnet_(?P<arch>w32|w48)_coco_wholebody_(?P<size>\d+x\d+)(?P<dark>_dark)?(?:[-_.]|$)")


def recipe_from_name(name: str) -> Recipe | None:
    """The recipe of a released file name, or of a name that keeps MMPose's naming pattern; else ``None``."""
    name = Path(name).name
    if name in RECIPES:
        return RECIPES[name]
    match = _PATTERN.search(name)
    if match is None:
        return None
    codec = "dark" if match["dark"] else "msra"
    experiment = f"{match['arch']}_{match['size']}_{codec}"
    return _recipe(match["arch"], match["size"], codec, experiment)


def recipe_for_file(path: str | Path) -> Recipe | None:
    """:func:`recipe_from_name` of a file path (only the file name is read)."""
    return recipe_from_name(Path(path).name)
