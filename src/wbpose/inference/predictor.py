"""Whole-body pose prediction on images: boxes in, 133 keypoints per person out.

The steps are those of the evaluation pipeline, with its own transform objects (``TopdownAffine``, ``Normalize``),
so a prediction here equals what the metric scored: box ``[x, y, w, h]`` -> centre/scale padded by 1.25 ->
aspect fix and ``cv2.warpAffine`` crop -> ImageNet normalisation -> network,
with the flip test (docs/conventions.md#flip-test) -> ``codec.decode`` -> ``crop_to_image``. Instance scores are
MMPose's ``bbox_score * mean(keypoint scores > 0.2)`` (docs/conventions.md#rescoring).

Images: ``Predictor.predict`` takes OpenCV's BGR order by default (what ``cv2.imread`` returns, as MMPose's
inferencer and rtmlib do), an RGB array with ``channel_order="rgb"``, or an image path (read with OpenCV, naming a
file that does not read). Either order gives the same RGB crops, as the validation pipeline makes them.

Batching: all crops of an image are warped, then sent through the network ``batch_size`` at a time (the
flipped crops ride in the same forward pass) and decoded on the device in one call per batch.

Checkpoints (:meth:`Predictor.from_checkpoint`, through :func:`wbpose.checkpoints.load_checkpoint`): a Lightning
``.ckpt`` from ``scripts/train.py`` rebuilds its network and codec from its embedded config; an MMPose 0.x/1.x
``.pth`` (or a converted file) has its HRNet arch inferred from the weights and its input size and codec from the
recipe of its released file name (:mod:`wbpose.checkpoints.recipes`); other weights-only files need them given.
An ONNX file from ``scripts/export.py`` (:meth:`Predictor.from_onnx`, or ``from_checkpoint`` on a ``.onnx`` path)
runs its network with ONNX Runtime and takes input size, codec and flip test from the file's metadata
(:mod:`wbpose.inference.onnx_runtime`); crops, decoding and outputs are the same code. The builders (Hydra's
``instantiate``) are imported only when a config is rebuilt, so the ONNX path imports neither Lightning nor Hydra.

Top-down pose estimation as in Xiao et al. (https://arxiv.org/abs/1804.06208) and MMPose's
``inference_topdown``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from wbpose.checkpoints.io import load_checkpoint
from wbpose.checkpoints.recipes import RECIPES
from wbpose.codecs import CODECS, DarkHeatmap, flip_test_average, make_codec
from wbpose.data.transforms import MEAN_RGB, STD_RGB, Normalize, TopdownAffine, TopdownSample
from wbpose.geometry import bbox_xywh_to_xyxy, bbox_xyxy_to_center_scale, crop_to_image
from wbpose.inference.inputs import CHANNEL_ORDERS, as_boxes, as_image, check_channel_order, read_image
from wbpose.inference.prediction import PosePrediction, to_coco_results
from wbpose.keypoints import FLIP_INDICES, NUM_KEYPOINTS
from wbpose.metrics.oks import rescore
from wbpose.models import build_pose_model

log = logging.getLogger(__name__)

__all__ = [
    "CHANNEL_ORDERS",
    "CODECS",
    "PosePrediction",
    "Predictor",
    "is_onnx_file",
    "make_codec",
    "read_image",
    "to_coco_results",
]

#: Keypoint score threshold of the instance score (MMPose ``keypoint_score_thr``; docs/conventions.md#rescoring).
KEYPOINT_SCORE_THR = 0.2
#: Logged when an image comes without person boxes (``Predictor.predict(image)``, ``scripts/predict.py`` without
#: ``--boxes``/``--detector``).
WHOLE_IMAGE_WARNING = (
    "no person boxes given: the whole image is used as one person box, so several people in one image become one "
    "skeleton; pass boxes (Predictor.predict(image, boxes) with [x, y, w, h] rows) or a detector (scripts/predict.py "
    "--boxes det.json or --detector det.onnx; predict_source(predictor, source, boxes))"
)


def _default_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Predictor:
    """Top-down whole-body pose prediction with a heatmap model.

    Args:
        model: crops (B, 3, H, W) normalised RGB -> heatmaps (B, 133, H/4, W/4).
        codec: ``decode(heatmaps) -> (keypoints_xy crop px, scores)`` for this input size.
        input_wh: network input (width, height), e.g. (192, 256).
        device: where the model runs; CUDA when available unless given.
        flip_test: average with the heatmaps of the mirrored crop, as the published numbers do
            (docs/conventions.md#flip-test).
        batch_size: crops per forward pass (each with its mirror when ``flip_test``).
        shift_heatmap: MMPose's one-pixel shift of the flipped-back heatmaps.
        padding: box padding before the aspect fix (1.25, as in evaluation).
        network_flips: the network applies the flip test itself (an ONNX export with it folded in): crops are
            sent once, not with their mirrors; only valid with ``flip_test``.
    """

    def __init__(
        self,
        model: nn.Module,
        codec: Any,
        input_wh: Sequence[int],
        device: str | torch.device | None = None,
        flip_test: bool = True,
        batch_size: int = 32,
        shift_heatmap: bool = True,
        padding: float = 1.25,
        network_flips: bool = False,
    ) -> None:
        if network_flips and not flip_test:
            raise ValueError("network_flips=True (the flip test is folded into the network) needs flip_test=True")
        self.input_wh = (int(input_wh[0]), int(input_wh[1]))
        codec_wh = getattr(codec, "input_wh", None)
        if codec_wh is not None and tuple(int(v) for v in codec_wh) != self.input_wh:
            raise ValueError(f"codec input_wh {tuple(codec_wh)} differs from the predictor's input_wh {self.input_wh}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = _default_device(device)
        self.model = model.to(self.device).eval()
        self.codec = codec
        self.flip_test = flip_test
        self.batch_size = int(batch_size)
        self.shift_heatmap = shift_heatmap
        self.padding = float(padding)
        self.network_flips = bool(network_flips)
        self._flip_indices = torch.as_tensor(FLIP_INDICES, dtype=torch.long, device=self.device)
        # the validation pipeline's transforms: a prediction here equals what the metric scored
        self._affine = TopdownAffine(self.input_wh)
        self._normalize = Normalize()
        self._warned_whole_image = False

    def __repr__(self) -> str:
        return (
            f"Predictor(input_wh={self.input_wh}, codec={self.codec!r}, device={self.device}, "
            f"flip_test={self.flip_test}, batch_size={self.batch_size})"
        )

    # ------------------------------------------------------------------ building
    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        device: str | torch.device | None = None,
        flip_test: bool = True,
        arch: str | None = None,
        image_hw: Sequence[int] | None = None,
        codec: str | None = None,
        batch_size: int = 32,
    ) -> Predictor:
        """Build a predictor from any supported checkpoint (:func:`wbpose.checkpoints.load_checkpoint`).

        Only the network and the codec are built. Our ``.ckpt`` files rebuild both from their config; a released
        MMPose file (or a file keeping its name pattern) takes arch, input size and codec from its recipe
        (:mod:`wbpose.checkpoints.recipes`); any other weights-only file needs ``image_hw`` and ``codec``.

        Args:
            path: the checkpoint file.
            device: where to run; CUDA when available unless given.
            flip_test: use the flip test.
            arch: expected HRNet arch ("w32", "w48", "tiny"); checked against the weights when given.
            image_hw: network input (height, width), overriding the checkpoint's.
            codec: "msra" or "dark", overriding the checkpoint's.
            batch_size: crops per forward pass.

        Raises:
            FileNotFoundError: no such file.
            ValueError: weights that do not fit, an arch mismatch, a file that is not plain weights, or a
                weights-only file with no recipe and no ``image_hw``/``codec``.
        """
        if is_onnx_file(path):
            if image_hw is not None or codec is not None or arch is not None:
                raise ValueError(f"{path}: an ONNX file carries its input size, codec and arch; do not pass them")
            return cls.from_onnx(path, device=device, flip_test=flip_test, batch_size=batch_size)
        loaded = load_checkpoint(path, arch=arch)
        if loaded.config is not None:
            from omegaconf import OmegaConf

            from wbpose.build import build_codec, build_model

            cfg = OmegaConf.create(loaded.config)
            trained = build_codec(cfg)
            name = codec or ("dark" if isinstance(trained, DarkHeatmap) else "msra")
            hw = tuple(image_hw) if image_hw is not None else tuple(trained.image_hw)
            chosen = trained if (name, hw) == (_codec_name(trained), tuple(trained.image_hw)) else make_codec(name, hw)
            shift = bool(OmegaConf.select(cfg, "module.shift_heatmap", default=True))
            with torch.device("meta"):  # filled by assignment: no random init of weights about to be replaced
                model = build_model(cfg, init_weights=False)
        else:
            recipe = loaded.recipe
            if recipe is None and (image_hw is None or codec is None):
                known = ", ".join(sorted(RECIPES))
                raise ValueError(
                    f"{path}: weights without a config, and the file name matches no released MMPose checkpoint "
                    f"({known}); pass image_hw=(256, 192) or (384, 288) and codec='msra' or 'dark' "
                    "(scripts/predict.py: --image-hw H W --codec NAME)"
                )
            hw = tuple(image_hw) if image_hw is not None else recipe.image_hw  # type: ignore[union-attr]
            chosen = make_codec(codec or recipe.codec, hw)  # type: ignore[union-attr]
            shift = True
            with torch.device("meta"):
                model = build_pose_model(loaded.arch, int(loaded.state_dict["head.final_layer.weight"].shape[0]))
        # default (NCHW) layout: a checkpoint saved from an NHWC (channels_last) model keeps its strides otherwise
        state = {k: v.clone(memory_format=torch.contiguous_format) for k, v in loaded.state_dict.items()}
        model.load_state_dict(state, strict=True, assign=True)
        log.info("loaded %s (%s, HRNet-%s) with %r", path, loaded.format, loaded.arch, chosen)
        return cls(model, chosen, chosen.input_wh, device, flip_test, batch_size, shift_heatmap=shift)

    @classmethod
    def from_onnx(
        cls,
        path: str | os.PathLike,
        device: str | torch.device | None = "cpu",
        flip_test: bool = True,
        batch_size: int = 32,
        threads: int | None = None,
        providers: list[str] | None = None,
    ) -> Predictor:
        """Build a predictor whose network runs in ONNX Runtime from a file written by ``scripts/export.py``.

        Input size, codec (and sigma, DARK kernel), flip indices, heatmap shift and box padding come from the
        file's metadata (:class:`~wbpose.inference.onnx_runtime.PoseOnnxMetadata`); crops, decoding and outputs
        are those of :meth:`from_checkpoint`. A file with the flip test folded in runs each crop once.

        Args:
            path: the ``.onnx`` file.
            device: where decoding runs (the network runs where ``providers`` put it; CPU by default).
            flip_test: use the flip test (a file with it folded in cannot run without it).
            batch_size: crops per ONNX Runtime call.
            threads: ONNX Runtime intra-op threads (default ``torch.get_num_threads()``).
            providers: ONNX Runtime execution providers (default CPU).

        Raises:
            FileNotFoundError: no such file.
            ValueError: not a wbpose pose export (another contract), naming the file and what was expected.
            ImportError: ``onnxruntime`` missing (the ``wbpose[onnx]`` extra).
        """
        from wbpose.inference.onnx_runtime import OnnxPoseNetwork

        network = OnnxPoseNetwork(path, threads=threads, providers=providers)
        meta = network.metadata
        if meta.flip_test and not flip_test:
            raise ValueError(
                f"{path} has the flip test folded into its graph and cannot run without it; export without "
                "--flip-test for a network that runs crops alone"
            )
        if list(meta.flip_indices) != list(FLIP_INDICES):
            raise ValueError(f"{path}: its flip indices are not COCO-WholeBody's 133 (wbpose.keypoints.FLIP_INDICES)")
        if not (np.allclose(meta.mean, MEAN_RGB) and np.allclose(meta.std, STD_RGB)):
            raise ValueError(
                f"{path}: expects crops normalised with mean {list(meta.mean)} std {list(meta.std)}; wbpose crops use "
                f"ImageNet mean {list(MEAN_RGB)} std {list(STD_RGB)}"
            )
        h, w = meta.input_hw
        codec = make_codec(
            "dark" if meta.codec == "dark" else "msra",
            (h, w),
            sigma=meta.sigma,
            heatmap_hw=meta.heatmap_hw,
            blur_kernel=meta.blur_kernel or 11,
        )
        log.info("loaded %s (ONNX Runtime, %s) with %r", path, meta.arch or "pose network", codec)
        return cls(network, codec, (w, h), device, flip_test, batch_size, shift_heatmap=meta.shift_heatmap,
                   padding=meta.box_padding, network_flips=meta.flip_test)  # fmt: skip

    # ------------------------------------------------------------------ prediction
    def crops(
        self, image: np.ndarray, boxes_xywh: np.ndarray, *, bgr: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Warp and normalise the crop of each box with the validation pipeline's own transform objects.

        Args:
            image: uint8 image, RGB (or BGR with ``bgr=True``; the crops are RGB either way, as in evaluation).
            boxes_xywh: person boxes ``[x, y, w, h]`` in image pixels.
            bgr: ``image`` is in OpenCV's BGR order.

        Returns:
            ``(images, center_xy, scale_wh)``: normalised float32 RGB crops, float32 centres and aspect-fixed scales.

        Shape:
            image: (H, W, 3); boxes_xywh: (N, 4) -> (N, 3, h, w), (N, 2), (N, 2)
        """
        bbox_xyxy = bbox_xywh_to_xyxy(boxes_xywh)
        center, scale = bbox_xyxy_to_center_scale(bbox_xyxy, None, self.padding)  # as the annotations are parsed
        w, h = self.input_wh
        images = np.empty((len(boxes_xywh), 3, h, w), dtype=np.float32)
        scales = np.empty((len(boxes_xywh), 2), dtype=np.float32)
        image_wh = (image.shape[1], image.shape[0])
        for i in range(len(boxes_xywh)):  # OpenCV has no batched warp: one call per crop
            sample = TopdownSample(image, image_wh, center[i], scale[i], bbox_xyxy[i], bgr=bgr)
            sample = self._normalize(self._affine(sample))
            images[i], scales[i] = sample.image_chw, sample.scale_wh
        return images, center.astype(np.float32), scales

    @torch.inference_mode()
    def heatmaps(self, images: torch.Tensor) -> torch.Tensor:
        """Heatmaps of a batch of normalised crops, flip-averaged when ``flip_test`` (one forward pass).

        Shape:
            images: (B, 3, H, W) -> (B, K, H/4, W/4)
        """
        if self.model.training:
            self.model.eval()
        images = images.to(self.device, non_blocking=True)
        if not self.flip_test or self.network_flips:
            return self.model(images)
        both = self.model(torch.cat([images, images.flip(-1)]))
        n = images.shape[0]
        return flip_test_average(both[:n], both[n:], self._flip_indices, shift=self.shift_heatmap)

    @torch.inference_mode()
    def predict_crops(
        self, images: np.ndarray | torch.Tensor, center_xy: np.ndarray, scale_wh: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints in image pixels for prepared crops, ``batch_size`` crops per forward pass.

        Shape:
            images: (N, 3, H, W); center_xy, scale_wh: (N, 2) -> keypoints (N, K, 2), scores (N, K)
        """
        images = torch.as_tensor(images)
        center = torch.as_tensor(center_xy, dtype=torch.float32)
        scale = torch.as_tensor(scale_wh, dtype=torch.float32)
        keypoints, scores = [], []
        for start in range(0, images.shape[0], self.batch_size):
            sl = slice(start, start + self.batch_size)
            kp_crop, sc = self.codec.decode(self.heatmaps(images[sl]))
            kp = crop_to_image(kp_crop, center[sl].to(kp_crop.device), scale[sl].to(kp_crop.device), self.input_wh)
            keypoints.append(kp.float().cpu())
            scores.append(sc.float().cpu())
        if not keypoints:
            return np.zeros((0, NUM_KEYPOINTS, 2), np.float32), np.zeros((0, NUM_KEYPOINTS), np.float32)
        return torch.cat(keypoints).numpy(), torch.cat(scores).numpy()

    def predict(
        self,
        image: np.ndarray | str | os.PathLike,
        boxes: np.ndarray | Sequence | None = None,
        box_scores: np.ndarray | Sequence | None = None,
        *,
        channel_order: str = "bgr",
    ) -> PosePrediction:
        """Predict the poses of the people in the given boxes of one image.

        The image is taken in OpenCV's BGR order by default, as ``cv2.imread`` returns it (and as MMPose's
        inferencer and rtmlib take it); pass ``channel_order="rgb"`` for an RGB array (PIL, imageio, matplotlib).
        The two orders give the same crops, so the same image gives the same keypoints either way; an image in the
        other order than the one named swaps red and blue and gives other (worse) keypoints.

        Args:
            image: uint8 image (H, W, 3) in ``channel_order`` (a grey (H, W) image is taken as is), or the path
                of an image file (read with OpenCV; ``channel_order`` does not apply).
            boxes: person boxes ``[x, y, w, h]`` in image pixels, (N, 4), or (N, 5) with a score column;
                ``None``: the whole image is one box (score 1), with a warning (once per predictor), since several
                people in one image then become one skeleton.
            box_scores: detector scores (N,), overriding a score column; default 1.
            channel_order: ``"bgr"`` (default) or ``"rgb"``: the channel order of an image array.

        Returns:
            The poses, one per box, in the boxes' order.

        Raises:
            FileNotFoundError: a path that names no file.
            ValueError: an unreadable image file (named), an array that is no uint8 (H, W, 3) image, an unknown
                ``channel_order``, boxes that are not finite with positive width and height.

        Shape:
            image: (H, W, 3); boxes: (N, 4) -> keypoints (N, 133, 2), keypoint_scores (N, 133), scores (N,)
        """
        pixels, bgr = as_image(image, check_channel_order(channel_order))
        if boxes is None and not self._warned_whole_image:
            self._warned_whole_image = True
            log.warning(WHOLE_IMAGE_WARNING)
        boxes_xywh, box_sc = as_boxes(boxes, box_scores, (pixels.shape[1], pixels.shape[0]))
        images, center, scale = self.crops(pixels, boxes_xywh, bgr=bgr)
        keypoints, keypoint_scores = self.predict_crops(images, center, scale)
        scores = rescore(keypoint_scores, box_sc, KEYPOINT_SCORE_THR)
        return PosePrediction(
            keypoints=keypoints.astype(np.float32, copy=False),
            keypoint_scores=keypoint_scores.astype(np.float32, copy=False),
            scores=scores.astype(np.float32),
            boxes=boxes_xywh.astype(np.float32),
            box_scores=box_sc.astype(np.float32),
        )


def _codec_name(codec: Any) -> str:
    return "dark" if isinstance(codec, DarkHeatmap) else "msra"


def is_onnx_file(path: str | os.PathLike) -> bool:
    """Whether a model path names an ONNX file (``*.onnx``): those go to :meth:`Predictor.from_onnx`."""
    return Path(path).suffix.lower() == ".onnx"
