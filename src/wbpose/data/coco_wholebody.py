"""COCO-WholeBody top-down dataset: one sample per person box (ground-truth or detector boxes).

The instances come from :func:`wbpose.data.annotations.load_instances` (MMPose 1.x parsing and filtering rules,
docs/conventions.md#annotations); the per-sample pipeline is MMPose 1.x's (docs/conventions.md#augmentation),
built from ``wbpose.data.transforms`` and ``wbpose.data.augment``. A sample is the dict of ``docs/architecture.md``.

Speed (``benchmarks/data_pipeline.py``): a batch is built stage by stage (all annotation work, then decode + warp +
normalise per image), the image stays BGR until the fused normalisation, a flip is folded into the warp matrix,
and glibc is told to keep freed memory (:func:`keep_freed_memory`), which removes most page faults of a sample
(docs/benchmarks.md has the per-sample figures).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from wbpose.data.annotations import BBoxSource, InstanceTable, load_instances
from wbpose.data.bad_images import read_image_file
from wbpose.data.encoded import EncodedImage, pack_encoded, read_encoded
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
        zero_outside_crop: make keypoints outside the crop invisible before encoding (not MMPose's rule; see
            ``GenerateTarget``).
        bbox_padding: box -> scale padding (1.25).
        tune_malloc: call :func:`keep_freed_memory` once in every process that loads samples (glibc only).
        seed: augmentation seed: sample ``index`` of epoch ``epoch`` draws from
            ``numpy.random.default_rng([seed, epoch, index])`` (:meth:`sample_rng`).
        on_bad_image: what a sample whose image is missing, truncated, corrupt or of the wrong size becomes:
            "raise" (``DataError``, the default), "replace" (training: the next instance, in index order, whose
            image reads) or "drop" (evaluation: a blank crop, for no prediction). With "replace" and "drop" every
            sample also carries ``bad_index`` int64: the instance index whose image failed, -1 otherwise.
        encoded: samples carry the image file and the crop's warp instead of the crop, and their targets as
            profiles (:mod:`wbpose.data.encoded`; batch them with ``collate_encoded``): the pixels are made on the
            training device (:mod:`wbpose.data.gpu_pixels`). Not with ``photometric``.

    A sample is a dict of tensors: ``image`` float32 (3, H, W) normalised RGB; ``center_xy`` float32 (2,);
    ``scale_wh`` float32 (2,) (padded, aspect-fixed, after augmentation); ``instance_id`` int64; ``image_id``
    int64; ``bbox_score`` float32; with a codec also ``heatmaps`` float32 (K, h, w), ``weights`` float32 (K,),
    ``keypoints_xy`` float32 (K, 2) crop pixels, ``visible`` float32 (K,). ``encoded`` samples carry
    ``encoded`` (an :class:`~wbpose.data.encoded.EncodedImage`) and ``warp_inv`` instead of ``image``, and
    ``heatmap_x``/``heatmap_y`` instead of ``heatmaps``.
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
        zero_outside_crop: bool = False,
        bbox_padding: float = 1.25,
        tune_malloc: bool = True,
        on_bad_image: Literal["raise", "replace", "drop"] = "raise",
        seed: int = 0,
        encoded: bool = False,
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
        if encoded and photometric is not None:
            raise ValueError(
                "photometric augmentation runs on the uint8 crop in the loader workers, which encoded samples "
                "(data.decode_on=gpu) never make: use data.decode_on=cpu with data.photometric, or drop it"
            )
        self.encoded = bool(encoded)
        self.photometric = photometric
        self.affine = TopdownAffine(self.input_wh)
        self.normalize = Normalize()
        self.target = GenerateTarget(codec, zero_outside_crop, profiles=self.encoded) if codec is not None else None
        self.codec = codec
        self.bbox_source = bbox_source
        self.seed = int(seed)
        #: The epoch of plain integer indices (a loader's ``(epoch, index)`` pairs carry their own).
        self.epoch = 0
        self.tune_malloc = tune_malloc
        if on_bad_image not in ("raise", "replace", "drop"):
            raise ValueError(f"on_bad_image must be 'raise', 'replace' or 'drop', got {on_bad_image!r}")
        self.on_bad_image = on_bad_image
        self._bad_rows: set[int] = set()  # image rows found bad in this process (not read again)
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
        """Decode the image of instance ``index`` (BGR uint8, as ``cv2.imread``), checking its size.

        Raises:
            DataError: the file is missing, truncated (a JPEG without its end marker,
                :func:`wbpose.data.bad_images.read_image_file`), corrupt, or not of the annotated size; the message
                names the file and the record.
        """
        path = self.image_path(index)
        image, why = read_image_file(path)
        w, h = self.instances.image_wh[self.instances.image_index[index]].tolist()
        if image is None or image.shape[0] != h or image.shape[1] != w:
            self._raise_bad_image(index, path, None if image is None else (image.shape[1], image.shape[0]), why)
        return image

    def read_encoded_image(self, index: int) -> EncodedImage:
        """Read the image file of instance ``index`` for the device decoder (:func:`wbpose.data.encoded.read_encoded`:
        no decoding for a JPEG), checking its size (upright, from the JPEG header) against the annotation.

        Raises:
            DataError: as :meth:`read_image`, for what can be seen without decoding.
        """
        path = self.image_path(index)
        image, why = read_encoded(path)
        w, h = self.instances.image_wh[self.instances.image_index[index]].tolist()
        if image is None or image.wh != (w, h):
            self._raise_bad_image(index, path, None if image is None else image.wh, why)
        return image

    def _read(self, index: int) -> np.ndarray | EncodedImage:
        """The image of instance ``index`` as this dataset's samples need it: decoded, or encoded."""
        return self.read_encoded_image(index) if self.encoded else self.read_image(index)

    def _raise_bad_image(self, index: int, path: str, size_wh: tuple[int, int] | None, why: str | None = None) -> None:
        inst = self.instances
        what = f"image_id {int(inst.image_ids[index])}, instance_id {int(inst.instance_ids[index])} ({self.ann_file})"
        if size_wh is None and (why == "missing" or not os.path.exists(path)):
            raise DataError(f"missing image file {path} for {what}; check img_dir / data.data_root")
        if why == "truncated":
            raise DataError(
                f"cannot decode image {path} for {what}: truncated JPEG (no end-of-image marker; a partial copy "
                "or download)"
            )
        if size_wh is None:
            # "corrupt: libjpeg reports ..." says why itself; a bare "corrupt" is a file OpenCV refused
            detail = why if why and why != "corrupt" else "corrupt (not an image OpenCV decodes)"
            raise DataError(f"cannot decode image {path} for {what}: {detail}")
        w, h = inst.image_wh[inst.image_index[index]].tolist()
        raise DataError(
            f"image {path} decodes to {size_wh[0]}x{size_wh[1]} but the annotation file says {w}x{h} "
            f"for {what} (wrong file, or an EXIF-rotated JPEG)"
        )

    # ------------------------------------------------------------------ bad images (``on_bad_image``)
    @property
    def num_images(self) -> int:
        """Distinct images holding at least one instance (what a fractional bad-image budget is a fraction of)."""
        return int(np.unique(self.instances.image_index).size)

    def _try_read_image(self, index: int) -> np.ndarray | EncodedImage | None:
        """:meth:`read_image` (:meth:`read_encoded_image` for ``encoded``), or ``None`` for a bad image (remembered:
        this process does not try it again)."""
        row = int(self.instances.image_index[index])
        if row in self._bad_rows:
            return None
        try:
            return self._read(index)
        except DataError:
            self._bad_rows.add(row)
            return None

    def replacement_index(
        self, index: int, decoded: dict[int, Any] | None = None, max_reads: int = 1000
    ) -> tuple[int, np.ndarray | EncodedImage]:
        """The instance standing in for ``index`` in training when its image is bad, with its decoded image.

        It is the next instance in index order (wrapping around) on another image that reads, so a rerun builds the
        same batches. ``decoded`` (image row -> image) reuses images already decoded for the batch.

        Raises:
            DataError: none of the next ``max_reads`` images tried reads (the image folder looks broken).
        """
        rows = self.instances.image_index
        bad_row, n, reads = int(rows[index]), len(self), 0
        for step in range(1, n):
            j = (index + step) % n
            row = int(rows[j])
            if row == bad_row or row in self._bad_rows:
                continue
            image = decoded.get(row) if decoded is not None else None
            if image is None:
                image, reads = self._try_read_image(j), reads + 1
            if image is not None:
                return j, image
            if reads >= max_reads:
                break
        raise DataError(
            f"no readable image to stand in for the bad image {self.image_path(index)} (instance index {index}): "
            f"{reads} other images of {self.ann_file} failed to read in a row; check {self.img_dir}"
        )

    def _stand_in(
        self, sample: TopdownSample, index: int, rng: np.random.Generator | None, decoded: dict[int, Any]
    ) -> TopdownSample:
        """The sample that takes the place of ``index``, whose image is bad: the replacement instance, prepared
        with ``rng`` ("replace"), or the same geometry on a blank image, for no prediction ("drop")."""
        if self.on_bad_image == "drop":
            w, h = self.instances.image_wh[self.instances.image_index[index]].tolist()
            sample.image = EncodedImage.blank((w, h)) if self.encoded else np.zeros((int(h), int(w), 3), np.uint8)
            return sample
        j, image = self.replacement_index(index, decoded)
        decoded.setdefault(int(self.instances.image_index[j]), image)
        stand_in = self.prepare(self.load_sample(j, read_image=False), rng)
        stand_in.image = image
        return stand_in

    def describe_bad_image(self, index: int) -> str:
        """``<path> (image_id .., instance_id ..): <what is wrong>`` for instance ``index`` (reads the file again)."""
        inst = self.instances
        path = self.image_path(index)
        image, why = read_image_file(path)
        if image is not None:
            w, h = inst.image_wh[inst.image_index[index]].tolist()
            why = (
                f"decodes to {image.shape[1]}x{image.shape[0]}, the annotation file says {w}x{h}"
                if image.shape[:2] != (h, w)
                else "failed to read in a loader worker (reads now)"
            )
        return f"{path} (image_id {int(inst.image_ids[index])}, instance_id {int(inst.instance_ids[index])}): {why}"

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose augmentation plain integer indices get (``(epoch, index)`` pairs carry their own)."""
        self.epoch = int(epoch)

    def sample_rng(self, index: int, epoch: int | None = None) -> np.random.Generator:
        """The augmentation generator of sample ``index`` in ``epoch`` (default :attr:`epoch`):
        ``numpy.random.default_rng([seed, epoch, index])``.

        A function of (seed, epoch, index) only, so a sample's augmentation does not depend on the process, the
        worker or the batch that builds it, and a resumed run draws what the uninterrupted one drew
        (docs/conventions.md#training-order-and-resume). Seeding costs about 12 us per sample.
        """
        return np.random.default_rng([self.seed, self.epoch if epoch is None else int(epoch), int(index)])

    def _augment_rng(
        self, rng: np.random.Generator | None, index: int | None, epoch: int | None = None
    ) -> np.random.Generator | None:
        if rng is None and (self.transforms is not None or self.photometric is not None):
            if index is None:
                raise ValueError("augmenting a sample needs its generator (rng=) or its dataset index (index=)")
            rng = self.sample_rng(index, epoch)
        return rng

    def prepare(
        self, sample: TopdownSample, rng: np.random.Generator | None = None, index: int | None = None
    ) -> TopdownSample:
        """The annotation half of the pipeline: augmentations, crop geometry and target (no pixels needed).
        The augmentation draws from ``rng``, else from :meth:`sample_rng` of ``index``."""
        rng = self._augment_rng(rng, index)
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
            sample = self.photometric(sample, self._augment_rng(rng, index))
        return self.normalize(sample)

    def transform(
        self, sample: TopdownSample, rng: np.random.Generator | None = None, index: int | None = None
    ) -> TopdownSample:
        """Run the whole pipeline on a sample from :meth:`load_sample` (:meth:`prepare`, then :meth:`finish`);
        without ``rng`` the augmentation draws from :meth:`sample_rng` of ``index``."""
        rng = self._augment_rng(rng, index)
        return self.finish(self.prepare(sample, rng), rng, index)

    def __getitems__(self, indices: Sequence[int | tuple[int, int]]) -> list[dict[str, torch.Tensor]]:
        """Build a batch of samples stage by stage (the DataLoader calls this with a batch's indices).

        An index is a dataset index, or an ``(epoch, index)`` pair (what
        :class:`wbpose.data.sampling.EpochBatchSampler` yields): the epoch picks the augmentation
        (:meth:`sample_rng`); plain indices use :attr:`epoch`.

        First the annotation half for every sample (augmentation, geometry, target), then for each sample its
        decode, warp and normalisation. Decoding a JPEG evicts the CPU caches; running the annotation steps
        back to back, before any decode, keeps their code and data hot, which makes them cheaper (figures:
        ``benchmarks/data_pipeline.py``). Each sample draws from its own generator, so the draws are the same as
        sample by sample.

        ``encoded`` samples (:mod:`wbpose.data.encoded`) stop after the annotation half: each image file is read
        once per batch and checked without decoding, and shared by the batch's samples on it.

        Each image is decoded once per batch however many of its instances the batch holds: validation boxes come
        grouped by image (104,125 detector boxes on 5,000 val images, about 21 per image), so a val batch decodes
        a few images instead of one per box. The warp reads the decoded image and writes a new crop, so sharing it
        is safe.
        """
        if self.tune_malloc and self._tuned_pid != os.getpid():
            keep_freed_memory()
            self._tuned_pid = os.getpid()
        keys = [(int(i[0]), int(i[1])) if isinstance(i, tuple | list) else (self.epoch, int(i)) for i in indices]
        indices = [i for _, i in keys]
        rngs = [self._augment_rng(None, i, epoch) for epoch, i in keys]
        samples = [self.prepare(self.load_sample(i, read_image=False), r) for i, r in zip(indices, rngs)]
        decoded: dict[int, Any] = {}
        image_index = self.instances.image_index
        bad = [-1] * len(indices)
        for n, i in enumerate(indices):
            key = int(image_index[i])
            if key not in decoded:
                decoded[key] = self._read(i) if self.on_bad_image == "raise" else self._try_read_image(i)
            if decoded[key] is not None:
                samples[n].image = decoded[key]
            else:  # a bad image, not strict: a stand-in sample (``on_bad_image``)
                bad[n] = i
                samples[n] = self._stand_in(samples[n], i, rngs[n], decoded)
        if self.encoded:  # the pixels are made on the device (wbpose.data.gpu_pixels)
            out = [pack_encoded(s, s.image) for s in samples]
        else:
            out = [pack_sample(self.finish(s, r, i)) for s, r, i in zip(samples, rngs, indices)]
        if self.on_bad_image != "raise":
            for sample, b in zip(out, bad):
                sample["bad_index"] = torch.tensor(b, dtype=torch.int64)
        return out

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        return self.__getitems__([index])[0]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.ann_file}, bbox_source={self.bbox_source!r}, "
            f"instances={len(self)}, input_wh={self.input_wh}{', encoded' if self.encoded else ''})"
        )
