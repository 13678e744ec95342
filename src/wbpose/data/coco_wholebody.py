"""COCO-WholeBody top-down dataset: one sample per person box (ground-truth or detector boxes).

The instances come from :func:`wbpose.data.annotations.load_instances` (MMPose 1.x parsing and filtering rules,
docs/conventions.md#annotations); the per-sample pipeline is MMPose 1.x's (docs/conventions.md#augmentation),
built from ``wbpose.data.transforms`` and ``wbpose.data.augment``. A sample is the dict of ``docs/ARCHITECTURE.md``.

Speed (``benchmarks/data_pipeline.py``): a batch is built stage by stage (all annotation work, then decode + warp +
normalise per image), the image stays BGR until the fused normalisation, a flip is folded into the warp matrix,
and glibc is told to keep freed memory (:func:`keep_freed_memory`), which removes most page faults of a sample
(the README's speed table has the per-sample figures).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from wbpose.data.annotations import BBoxSource, InstanceTable, load_instances
from wbpose.data.errors import DataError
from wbpose.data.transforms import (
    Compose,
    GenerateTarget,
    Normalize,
    TopdownAffine,
    TopdownSample,
    Transform,
    pack_sample,
)


def keep_freed_memory(mmap_threshold: int = 64 << 20, trim_threshold: int = 256 << 20) -> bool:
    """Stop glibc from returning freed memory to the OS between samples (``mallopt``; a no-op elsewhere).

    Every sample allocates a few MB (decoded image, crop, heatmaps) and frees them again. With glibc's defaults
    those buffers are mmapped or trimmed off the heap each time, so the next sample page-faults them back in.
    Raising the mmap and trim thresholds keeps the memory in the process for reuse. Returns whether the settings
    were applied.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, mmap_threshold)) and bool(
            libc.mallopt(m_trim_threshold, trim_threshold)
        )
    except (OSError, AttributeError):
        return False


class CocoWholeBodyDataset(Dataset):
    """Top-down COCO-WholeBody samples: image -> [augmentations] -> affine crop -> [target] -> normalised tensor.

    Args:
        ann_file: COCO-WholeBody annotation json.
        img_dir: folder holding the images named by ``file_name``.
        input_wh: crop (width, height), e.g. (192, 256).
        codec: heatmap codec (``encode``, ``input_wh``); when given, samples carry ``heatmaps``/``weights``/
            ``keypoints_xy``/``visible`` (ground-truth boxes only).
        transforms: random augmentations applied before the warp (e.g.
            :func:`wbpose.data.augment.build_train_augmentations`); ``None`` for validation.
        bbox_source: "gt" (annotation boxes) or "det" (detector results in ``det_file``).
        det_file: detection results json (needed when ``bbox_source="det"``).
        det_score_thr: keep detections with ``score >= det_score_thr``.
        photometric: optional transform on the warped crop (e.g. :class:`wbpose.data.augment.PhotometricAugment`).
        zero_outside_crop: make keypoints outside the crop invisible before encoding (see ``GenerateTarget``).
        bbox_padding: box -> scale padding (1.25).
        tune_malloc: call :func:`keep_freed_memory` once in every process that loads samples (glibc only).

    A sample is a dict of tensors: ``image`` float32 (3, H, W) normalised RGB; ``center_xy`` float32 (2,);
    ``scale_wh`` float32 (2,) (padded, aspect-fixed, after augmentation); ``instance_id`` int64; ``image_id``
    int64; ``bbox_score`` float32; with a codec also ``heatmaps`` float32 (K, h, w), ``weights`` float32 (K,),
    ``keypoints_xy`` float32 (K, 2) crop pixels, ``visible`` float32 (K,).
    """

    def __init__(
        self,
        ann_file: str | os.PathLike,
        img_dir: str | os.PathLike,
        input_wh: tuple[int, int],
        codec: Any | None = None,
        transforms: Transform | list[Transform] | None = None,
        bbox_source: BBoxSource = "gt",
        det_file: str | os.PathLike | None = None,
        det_score_thr: float = 0.0,
        photometric: Transform | None = None,
        zero_outside_crop: bool = True,
        bbox_padding: float = 1.25,
        tune_malloc: bool = True,
    ) -> None:
        self.ann_file = str(ann_file)
        self.img_dir = str(img_dir)
        self.input_wh = (int(input_wh[0]), int(input_wh[1]))
        if codec is not None:
            if bbox_source != "gt":
                raise ValueError("a codec builds training targets from keypoints: use bbox_source='gt' with it")
            codec_wh = tuple(int(v) for v in codec.input_wh)
            if codec_wh != self.input_wh:
                raise ValueError(f"codec.input_wh {codec_wh} differs from the dataset's input_wh {self.input_wh}")
        if isinstance(transforms, list | tuple):
            transforms = Compose(transforms)
        if isinstance(transforms, Compose) and len(transforms) == 0:
            transforms = None
        self.transforms = transforms
        self.photometric = photometric
        self.affine = TopdownAffine(self.input_wh)
        self.normalize = Normalize()
        self.target = GenerateTarget(codec, zero_outside_crop) if codec is not None else None
        self.codec = codec
        self.bbox_source = bbox_source
        self._rng: np.random.Generator | None = None
        self._rng_seed: int | None = None
        self.tune_malloc = tune_malloc
        self._tuned_pid: int | None = None
        self.instances: InstanceTable = load_instances(
            self.ann_file, bbox_source=bbox_source, det_file=det_file, det_score_thr=det_score_thr, padding=bbox_padding
        )

    def __len__(self) -> int:
        return len(self.instances.instance_ids)

    @property
    def skipped(self) -> dict[str, int]:
        """Instances dropped while loading, per reason (crowd, no_keypoints, invalid_box, no_labels)."""
        return self.instances.skipped

    def image_path(self, index: int) -> str:
        """Path of the image of instance ``index``."""
        return os.path.join(self.img_dir, str(self.instances.file_names[self.instances.image_index[index]]))

    def load_sample(self, index: int, read_image: bool = True) -> TopdownSample:
        """Instance ``index`` as an untransformed sample; ``read_image=False`` leaves ``image`` as ``None``."""
        inst = self.instances
        kp = vis = None
        if inst.keypoints_xy is not None:
            kp = inst.keypoints_xy[index].astype(np.float64)
            vis = inst.visible[index].astype(np.float32)
        w, h = inst.image_wh[inst.image_index[index]].tolist()
        return TopdownSample(
            image=self.read_image(index) if read_image else None,
            image_wh=(w, h),
            center_xy=inst.center_xy[index].copy(),
            scale_wh=inst.scale_wh[index].copy(),
            bbox_xyxy=inst.bbox_xyxy[index].copy(),
            keypoints_xy=kp,
            visible=vis,
            image_id=int(inst.image_ids[index]),
            instance_id=int(inst.instance_ids[index]),
            bbox_score=float(inst.bbox_scores[index]),
        )

    def read_image(self, index: int) -> np.ndarray:
        """Decode the image of instance ``index`` (BGR uint8, as ``cv2.imread``), checking its size."""
        path = self.image_path(index)
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        w, h = self.instances.image_wh[self.instances.image_index[index]].tolist()
        if image is None or image.shape[0] != h or image.shape[1] != w:
            self._raise_bad_image(index, path, image)
        return image

    def _raise_bad_image(self, index: int, path: str, image: np.ndarray | None) -> None:
        inst = self.instances
        what = f"image_id {int(inst.image_ids[index])}, instance_id {int(inst.instance_ids[index])} ({self.ann_file})"
        if image is None and not os.path.exists(path):
            raise DataError(f"missing image file {path} for {what}; check img_dir / data.data_root")
        if image is None:
            raise DataError(f"cannot decode image {path} for {what}: corrupt or not an image (cv2.imread gave None)")
        w, h = inst.image_wh[inst.image_index[index]].tolist()
        raise DataError(
            f"image {path} decodes to {image.shape[1]}x{image.shape[0]} but the annotation file says {w}x{h} "
            f"for {what} (wrong file, or an EXIF-rotated JPEG)"
        )

    def sample_rng(self) -> np.random.Generator:
        """The augmentation generator of this process, seeded from its torch seed.

        A loader worker's torch seed is ``base_seed + worker_id`` (drawn anew from the main process's torch RNG
        for every epoch's workers, and re-seeded by Lightning's ``worker_init_fn`` under
        ``seed_everything(workers=True)``); in the main process it is the ``seed_everything`` seed. The generator
        is rebuilt whenever that seed changes and otherwise continues its stream, so a run is reproducible,
        workers draw independent streams, and persistent workers still see new augmentations every epoch.
        (One generator per process gives the same guarantees as seeding one per sample, without paying for a
        ``SeedSequence`` per sample.)
        """
        seed = torch.initial_seed()
        if self._rng is None or seed != self._rng_seed:
            self._rng, self._rng_seed = np.random.default_rng(seed), seed
        return self._rng

    def _augment_rng(self, rng: np.random.Generator | None) -> np.random.Generator | None:
        if rng is None and (self.transforms is not None or self.photometric is not None):
            rng = self.sample_rng()
        return rng

    def prepare(self, sample: TopdownSample, rng: np.random.Generator | None = None) -> TopdownSample:
        """The annotation half of the pipeline: augmentations, crop geometry and target (no pixels needed)."""
        rng = self._augment_rng(rng)
        if self.transforms is not None:
            sample = self.transforms(sample, rng)
        sample = self.affine.set_geometry(sample)
        if self.target is not None:
            sample = self.target(sample)
        return sample

    def finish(
        self, sample: TopdownSample, rng: np.random.Generator | None = None, index: int | None = None
    ) -> TopdownSample:
        """The pixel half: decode (when ``sample.image`` is ``None``; needs ``index``), warp, photometric, normalise."""
        if sample.image is None:
            if index is None:
                raise ValueError("finish() needs the instance index to read a sample without an image")
            sample.image = self.read_image(index)
        sample = self.affine.warp_image(sample)
        if self.photometric is not None:
            sample = self.photometric(sample, self._augment_rng(rng))
        return self.normalize(sample)

    def transform(
        self, sample: TopdownSample, rng: np.random.Generator | None = None, index: int | None = None
    ) -> TopdownSample:
        """Run the whole pipeline on a sample from :meth:`load_sample` (:meth:`prepare`, then :meth:`finish`)."""
        rng = self._augment_rng(rng)
        return self.finish(self.prepare(sample, rng), rng, index)

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, torch.Tensor]]:
        """Build a batch of samples stage by stage (the DataLoader calls this with a batch's indices).

        First the annotation half for every sample (augmentation, geometry, target), then for each sample its
        decode, warp and normalisation. Decoding a JPEG evicts the CPU caches; running the annotation steps
        back to back, before any decode, keeps their code and data hot, which makes them cheaper (figures:
        ``benchmarks/data_pipeline.py``). The random draws are the same as sample by sample.

        Each image is decoded once per batch however many of its instances the batch holds: validation boxes come
        grouped by image (104,125 detector boxes on 5,000 val images, about 21 per image), so a val batch decodes
        a few images instead of one per box. The warp reads the decoded image and writes a new crop, so sharing it
        is safe.
        """
        if self.tune_malloc and self._tuned_pid != os.getpid():
            keep_freed_memory()
            self._tuned_pid = os.getpid()
        indices = [int(i) for i in indices]
        rng = self._augment_rng(None)
        samples = [self.prepare(self.load_sample(i, read_image=False), rng) for i in indices]
        decoded: dict[int, np.ndarray] = {}
        image_index = self.instances.image_index
        for sample, i in zip(samples, indices):
            key = int(image_index[i])
            if key not in decoded:
                decoded[key] = self.read_image(i)
            sample.image = decoded[key]
        return [pack_sample(self.finish(s, rng, i)) for s, i in zip(samples, indices)]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([index])[0]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.ann_file}, bbox_source={self.bbox_source!r}, "
            f"instances={len(self)}, input_wh={self.input_wh})"
        )
