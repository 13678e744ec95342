"""Codecs by name, and the default Gaussian sigma of a network input size: the one home of both rules.

Every place that turns a codec name ("msra", "dark") into a codec object goes through :func:`make_codec` (the
predictor, checkpoint recipes, the training-crops script, the benchmarks); Hydra configs instantiate the codec
classes directly from ``conf/codec/*.yaml``, with the sigma of ``conf/input/*.yaml`` (a test checks those values
against :func:`default_sigma`).
"""

from __future__ import annotations

from collections.abc import Sequence

from wbpose.codecs.dark import DarkHeatmap
from wbpose.codecs.msra import MSRAHeatmap

#: Codec names accepted by :func:`make_codec`.
CODECS: tuple[str, ...] = ("msra", "dark")
#: Heatmap stride of every recipe: heatmaps are the network input at 1/4 size.
HEATMAP_STRIDE = 4


def default_sigma(image_hw: Sequence[int]) -> float:
    """Gaussian sigma (heatmap pixels) of the published recipes for a network input (height, width): 2 up to a
    height of 256 (256x192), 3 above (384x288)."""
    return 2.0 if int(image_hw[0]) <= 256 else 3.0


def make_codec(
    name: str,
    image_hw: Sequence[int],
    *,
    sigma: float | None = None,
    heatmap_hw: Sequence[int] | None = None,
    blur_kernel: int = 11,
) -> MSRAHeatmap | DarkHeatmap:
    """The codec called ``name`` for a network input size.

    Args:
        name: "msra" (argmax + quarter pixel) or "dark" (Taylor refinement after a Gaussian blur).
        image_hw: network input (height, width); divisible by :data:`HEATMAP_STRIDE` unless ``heatmap_hw`` is given.
        sigma: Gaussian sigma of the training targets (heatmap pixels); ``None``: :func:`default_sigma`. It only
            affects encoding.
        heatmap_hw: heatmap (height, width); ``None``: the input at stride 4.
        blur_kernel: DARK modulation kernel (11 in every published recipe at training time; unused by "msra").

    Raises:
        ValueError: an unknown name, or an input size that the stride does not divide.
    """
    if name not in CODECS:
        raise ValueError(f"unknown codec {name!r}; choose one of {CODECS}")
    h, w = (int(v) for v in image_hw)
    if heatmap_hw is None:
        if h % HEATMAP_STRIDE or w % HEATMAP_STRIDE:
            raise ValueError(f"image_hw must be divisible by the heatmap stride {HEATMAP_STRIDE}, got {(h, w)}")
        heatmap_hw = (h // HEATMAP_STRIDE, w // HEATMAP_STRIDE)
    hm = tuple(int(v) for v in heatmap_hw)
    sigma = default_sigma((h, w)) if sigma is None else float(sigma)
    if name == "dark":
        return DarkHeatmap((h, w), hm, sigma, blur_kernel=blur_kernel)
    return MSRAHeatmap((h, w), hm, sigma)
