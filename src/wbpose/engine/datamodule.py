"""LightningDataModule for COCO-WholeBody: augmented GT-box training crops, detector-box validation crops.

Layout of a dataset root (real or synthetic, identical; ``docs/architecture.md``)::

    annotations/coco_wholebody_{train,val}_v1.0.json
    train2017/*.jpg   val2017/*.jpg
    person_detection_results/COCO_val2017_detections_AP_H_56_person.json

Distributed evaluation: validation and test use :class:`UnpaddedDistributedSampler` (rank r takes
indices ``r::world``, no padding, like MMPose 1.x ``DefaultSampler(round_up=False)``), so every instance is scored
exactly once; samples still carry ``instance_id`` so the metric can drop duplicates should any appear. Lightning
(2.x, ``_requires_distributed_sampler``) never replaces a ``DistributedSampler``. Training shards and shuffles
itself, in an :class:`~wbpose.data.sampling.EpochBatchSampler` (a ``DistributedSampler`` inside, one rank without
DDP) read by a :class:`~wbpose.data.sampling.ResumableDataLoader` whose place in the epoch goes into the
checkpoints; Lightning must not rebuild that loader, so ``Trainer(use_distributed_sampler=False)``
(``conf/trainer/default.yaml``). Because ranks run different numbers of validation batches, the LightningModule
must not do collective calls per validation step (no ``self.log(..., sync_dist=True)`` in ``validation_step``);
the metric syncs once in ``compute()`` (docs/conventions.md#distributed-evaluation).

Annotation cache (``cache_dir``, :mod:`wbpose.data.cache`): ``prepare_data`` (once per node: Lightning calls it on
local rank 0 only) parses every annotation and detection json into arrays on disk, or fully verifies the arrays
already there; ``setup`` (every rank) memory-maps them, and sets the folder as the process default so that the
metric's ground truth comes from the same cache. Loader workers map every page of the instance arrays when they
start, so their memory stays flat over an epoch. Without ``cache_dir`` every rank parses the json itself.

Loader workers (:class:`WorkerInit`, every loader's ``worker_init_fn``): each worker first limits itself to one
thread in OpenCV and torch (:func:`wbpose.data.workers.limit_threads`: on a many-core machine OpenCV's own pool
would otherwise start a thread per core in every worker), then runs Lightning's worker seeding when
``seed_everything(workers=True)`` asked for it, then maps the cached instance arrays.
How workers start (``worker_start``): by default forked from the rank (torch's default on Linux: the workers share
the rank's memory, the memory-mapped arrays included, copy-on-write), except in a gloo (CPU) DDP run, where they
come from a fork server. A rank forks its first workers while its gloo threads may hold locks; a worker forked at
such an instant waits inside ``fork`` for good, its rank waits for its first batch and the other ranks wait for
that rank (3 runs of ``trainer=ddp_cpu`` in about 230 on two cores hung so before their first step). A fork server
is a fresh interpreter with no such threads; each worker gets the dataset pickled, once per run with persistent
workers. ``worker_start`` names ``fork``, ``forkserver`` or ``spawn`` outright for any run.

Pixels on the GPU (``decode_on="gpu"``, docs/data.md#pixels-on-the-gpu): the workers send each batch's JPEG files,
the warps and the targets as Gaussian profiles (:mod:`wbpose.data.encoded`), and :meth:`transfer_batch_to_device`
decodes, warps and normalises the crops on the device (:mod:`wbpose.data.gpu_pixels`), training and validation
alike. The LightningModule sees the same batch keys either way. Only loaders run by a ``Trainer`` given this data
module (``fit``/``validate``/``test(datamodule=...)``) pass through that hook. The work happens in
``transfer_batch_to_device`` rather than ``on_after_batch_transfer`` because the files must stay on the host (the
decoders read host memory) while the rest of the batch moves, and so that the LightningModule keeps
``on_after_batch_transfer`` for itself (Lightning calls a data module's batch hook instead of the module's).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, get_worker_info

from wbpose.data import cache
from wbpose.data.augment import GeometricAugment, PhotometricAugment
from wbpose.data.bad_images import BadImagePolicy, note_bad_rows
from wbpose.data.coco_wholebody import CocoWholeBodyDataset
from wbpose.data.encoded import HOST_KEYS, collate_encoded, is_encoded_batch
from wbpose.data.gpu_pixels import DevicePixels
from wbpose.data.layout import DET_FILE, LAYOUT_HINT, TRAIN_ANN, VAL_ANN
from wbpose.data.sampling import EpochBatchSampler, ResumableDataLoader
from wbpose.data.transforms import zero_outside_crop_for
from wbpose.data.workers import end_with, limit_threads
from wbpose.synthetic import generate_dataset


class UnpaddedDistributedSampler(DistributedSampler):
    """In-order sharding without padding: rank ``r`` of ``world`` gets indices ``r, r + world, ...``.

    Ranks get ``ceil((N - r) / world)`` samples, so the union over ranks is every index exactly once. Subclassing
    ``DistributedSampler`` stops Lightning from injecting its padded sampler.

    Args:
        dataset: the dataset to shard.
        num_replicas: world size.
        rank: this process's global rank.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.total_size = len(dataset)  # type: ignore[arg-type]
        self.num_samples = len(range(rank, self.total_size, num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.total_size, self.num_replicas))

    def __len__(self) -> int:
        return self.num_samples


class WorkerInit:
    """Every loader worker's ``worker_init_fn`` (module docstring): one thread for OpenCV and torch
    (:func:`wbpose.data.workers.limit_threads`), Lightning's worker seeding when ``seed_everything(workers=True)``
    set ``PL_SEED_WORKERS``, and, with the annotation cache, every page of the instance arrays mapped.

    A worker that is not its rank's child (started by a fork server, ``worker_start``) also ends when the rank
    ends (:func:`wbpose.data.workers.end_with`).

    Args:
        prefault: map the dataset's instance arrays (memory-mapped cache files) when the worker starts.
    """

    def __init__(self, prefault: bool) -> None:
        self.prefault = prefault
        self.rank_pid = os.getpid()  # made by the rank's loader, called in its workers

    def __call__(self, worker_id: int) -> None:
        end_with(self.rank_pid)
        limit_threads()
        if int(os.environ.get("PL_SEED_WORKERS", "0")):
            from lightning_fabric.utilities.seed import pl_worker_init_function

            pl_worker_init_function(worker_id)
        if self.prefault:
            info = get_worker_info()
            instances = getattr(getattr(info, "dataset", None), "instances", None)
            if instances is not None:
                cache.prefault(*(v for v in vars(instances).values() if isinstance(v, np.ndarray)))

    def __repr__(self) -> str:
        return f"WorkerInit(prefault={self.prefault})"


class WholeBodyDataModule(pl.LightningDataModule):
    """Train/val/test loaders over a COCO-WholeBody root.

    Args:
        data_root: dataset root (see the module docstring); relative file arguments are joined to it.
        image_hw: network input (height, width), e.g. (256, 192).
        codec: heatmap codec for the training targets (``codec.input_wh`` must match ``image_hw``).
        batch_size: training batch size per process.
        val_batch_size: validation/test batch size per process.
        num_workers: loader worker processes (0: load in the main process).
        pin_memory: pin batches in page-locked memory.
        persistent_workers: keep workers alive across epochs (only when ``num_workers > 0``).
        prefetch_factor: batches each worker prepares ahead (``None``: torch's default, 2; only with workers).
        worker_start: how loader workers start: ``"auto"`` (fork, or a fork server in a gloo DDP run: module
            docstring), ``"fork"``, ``"forkserver"`` or ``"spawn"``.
        train_ann: training annotation json.
        val_ann: validation annotation json (also what the metric scores against: :attr:`val_ann_file`).
        train_img_dir: training image folder.
        val_img_dir: validation image folder.
        det_file: person detection results for validation/test.
        val_bbox_source: "det" (detector boxes, the published protocol) or "gt" (annotation boxes).
        det_score_thr: keep detections with ``score >= det_score_thr``.
        synthetic: ``{"num_train", "num_val", "seed"}`` to generate a synthetic root in ``prepare_data`` when the
            annotation files are absent (into an empty or generator-marked folder only); ``None`` for real data.
        geometric: the geometric training augmentation (flip, half-body, shift/scale/rotation): a
            :class:`~wbpose.data.augment.GeometricAugment` or a mapping of its fields (``data.geometric``,
            ``conf/augment/geometric.yaml``); missing fields and ``None`` take its defaults (MMPose 1.x's).
        photometric: optional albumentations transforms on the crop (a Compose or a list of ``{"type": ...}`` dicts).
        target_weight: "mmpose" (default: a visible point keeps weight 1 while the codec's 3-sigma square touches
            the heatmap) or "inside_crop" (also weight 0 once the augmentation moves it outside the crop); see
            :data:`~wbpose.data.transforms.TARGET_WEIGHT_RULES`.
        drop_last: drop the last incomplete training batch.
        cache_dir: folder of the parsed-annotation cache (``None``: parse the json files in every process).
        bad_images: ``{"strict", "budget"}`` (:class:`~wbpose.data.bad_images.BadImagePolicy`, ``None``: its
            defaults): what a missing, truncated, corrupt or wrongly sized image does; kept as :attr:`bad_images`,
            which the LightningModule reads to count and enforce the budget.
        decode_on: "cpu" (default: the workers decode, warp and normalise) or "gpu" (the workers send the JPEG
            files; the crops are made on the training device, :meth:`transfer_batch_to_device`; on a CPU trainer
            that is the main process). Not with ``photometric``.
        image_dtype: dtype of the crops made with ``decode_on="gpu"``: "float32" or "bfloat16".
        gpu_decoder: "auto" (nvJPEG through torchvision on CUDA, else OpenCV), "nvjpeg" or "cv2"
            (:func:`wbpose.data.gpu_pixels.decode_images`).
    """

    def __init__(
        self,
        data_root: str | os.PathLike | None,
        image_hw: Sequence[int] = (256, 192),
        codec: Any | None = None,
        batch_size: int = 64,
        val_batch_size: int = 32,
        num_workers: int = 2,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        train_ann: str = TRAIN_ANN,
        val_ann: str = VAL_ANN,
        train_img_dir: str = "train2017",
        val_img_dir: str = "val2017",
        det_file: str = DET_FILE,
        val_bbox_source: Literal["det", "gt"] = "det",
        det_score_thr: float = 0.0,
        synthetic: dict[str, Any] | None = None,
        geometric: GeometricAugment | Mapping[str, Any] | None = None,
        photometric: Any | None = None,
        target_weight: Literal["mmpose", "inside_crop"] = "mmpose",
        drop_last: bool = False,
        cache_dir: str | os.PathLike | None = None,
        bad_images: BadImagePolicy | Mapping[str, Any] | None = None,
        prefetch_factor: int | None = None,
        decode_on: Literal["cpu", "gpu"] = "cpu",
        image_dtype: Literal["float32", "bfloat16"] = "float32",
        gpu_decoder: Literal["auto", "nvjpeg", "cv2"] = "auto",
        worker_start: Literal["auto", "fork", "forkserver", "spawn"] = "auto",
    ) -> None:
        super().__init__()
        if worker_start != "auto" and worker_start not in multiprocessing.get_all_start_methods():
            raise ValueError(
                f"data.worker_start must be 'auto' or one of {multiprocessing.get_all_start_methods()}, "
                f"got {worker_start!r}"
            )
        if decode_on not in ("cpu", "gpu"):
            raise ValueError(f"data.decode_on must be 'cpu' or 'gpu', got {decode_on!r}")
        if decode_on == "gpu" and photometric:
            raise ValueError(
                "data.decode_on=gpu cannot run data.photometric: the albumentations steps work on the uint8 crop in "
                "the loader workers, and with decode_on=gpu the crops are made on the device. Use decode_on=cpu "
                "with photometric augmentation, or drop it (augment=null)"
            )
        if prefetch_factor is not None and int(prefetch_factor) < 1:
            raise ValueError(f"data.prefetch_factor must be >= 1 or null, got {prefetch_factor!r}")
        if data_root is None:
            raise ValueError(f"WholeBodyDataModule needs data_root: {LAYOUT_HINT}")
        if val_bbox_source not in ("det", "gt"):
            raise ValueError(f"val_bbox_source must be 'det' or 'gt', got {val_bbox_source!r}")
        self.data_root = str(data_root)
        self.image_hw = (int(image_hw[0]), int(image_hw[1]))
        self.codec = codec
        if codec is not None and tuple(int(v) for v in codec.input_wh) != self.input_wh:
            raise ValueError(f"codec.input_wh {tuple(codec.input_wh)} does not match image_hw {self.image_hw}")
        self.batch_size, self.val_batch_size = batch_size, val_batch_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.prefetch_factor = None if prefetch_factor is None or num_workers == 0 else int(prefetch_factor)
        self.decode_on = decode_on
        self.worker_start = worker_start
        #: Makes the crops of encoded batches on the device (``decode_on="gpu"``), else ``None``.
        self.device_pixels = (
            DevicePixels(self.input_wh, dtype=image_dtype, channels_last=True, decoder=gpu_decoder)
            if decode_on == "gpu"
            else None
        )
        self.train_ann_file = self._path(train_ann)
        self.val_ann_file = self._path(val_ann)
        self.train_img_dir, self.val_img_dir = self._path(train_img_dir), self._path(val_img_dir)
        self.det_file = self._path(det_file)
        self.val_bbox_source, self.det_score_thr = val_bbox_source, det_score_thr
        self.synthetic = dict(synthetic) if synthetic is not None else None
        self.geometric = GeometricAugment.from_config(geometric)
        self.photometric = photometric
        self.target_weight = target_weight
        self.zero_outside_crop = zero_outside_crop_for(target_weight)  # a ValueError names the valid rules
        self.drop_last = drop_last
        self.cache_dir = None if cache_dir is None else str(cache_dir)
        self.bad_images = BadImagePolicy.from_config(bad_images)
        self.train_dataset: CocoWholeBodyDataset | None = None
        self.val_dataset: CocoWholeBodyDataset | None = None

    @property
    def input_wh(self) -> tuple[int, int]:
        """Network input (width, height)."""
        return self.image_hw[1], self.image_hw[0]

    def _path(self, p: str | os.PathLike) -> str:
        return os.path.join(self.data_root, os.fspath(p))

    #: ``prepare_data`` caches the train annotations too (evaluation sets it False: only val is read).
    prepare_train = True

    def prepare_data(self) -> None:
        """Generate the synthetic dataset when configured and absent; build or verify the annotation cache.

        Generation happens only with ``synthetic`` set (``data=synthetic``, chosen by this run's own config) and
        only into an empty folder or one the generator marked (:func:`~wbpose.synthetic.generate.claim_root`
        refuses any other), so a real root is only ever read. Evaluation (``prepare_train=False``) needs the val
        files only.
        """
        needed = (self.train_ann_file, self.val_ann_file) if self.prepare_train else (self.val_ann_file,)
        if self.synthetic is not None and not all(os.path.isfile(p) for p in needed):
            generate_dataset(self.data_root, **self.synthetic)
        if self.cache_dir is not None:
            splits = (self.train_ann_file, self.val_ann_file) if self.prepare_train else (self.val_ann_file,)
            anns = [p for p in splits if os.path.isfile(p)]
            dets = [self.det_file] if self.val_bbox_source == "det" and os.path.isfile(self.det_file) else []
            cache.prepare(self.cache_dir, anns, dets)

    def _check_precision(self) -> None:
        """bfloat16 crops need a bf16 trainer: a float32 network refuses bfloat16 input."""
        trainer = getattr(self, "trainer", None)
        pixels = self.device_pixels
        if trainer is None or pixels is None or pixels.dtype != torch.bfloat16:
            return
        precision = str(getattr(trainer, "precision", ""))
        if "bf16" not in precision:
            raise ValueError(
                f"data.image_dtype=bfloat16 makes bfloat16 crops, which a {precision} network cannot take: use "
                "trainer.precision=bf16-mixed, or data.image_dtype=float32"
            )

    def _check_files(self, *paths: str) -> None:
        missing = [p for p in paths if not os.path.exists(p)]
        if missing:
            raise FileNotFoundError(f"COCO-WholeBody data not found: missing {', '.join(missing)}; {LAYOUT_HINT}")

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets the stage needs ("fit", "validate", "test"; ``None`` builds all)."""
        self._check_precision()
        if self.cache_dir is not None:
            cache.set_cache_dir(self.cache_dir)  # the datasets and the metric's ground truth read the cache
        if stage in ("fit", None) and self.train_dataset is None:
            self._check_files(self.train_ann_file, self.train_img_dir)
            if self.codec is None:
                raise ValueError("training needs a codec for the heatmap targets (WholeBodyDataModule(codec=...))")
            photometric = PhotometricAugment(self.photometric) if self.photometric else None
            self.train_dataset = CocoWholeBodyDataset(
                self.train_ann_file,
                self.train_img_dir,
                self.input_wh,
                codec=self.codec,
                transforms=self.geometric.build(),
                bbox_source="gt",
                photometric=photometric,
                zero_outside_crop=self.zero_outside_crop,
                on_bad_image="raise" if self.bad_images.strict else "replace",
                encoded=self.decode_on == "gpu",
            )
        if stage in ("fit", "validate", "test", None) and self.val_dataset is None:
            det = self.val_bbox_source == "det"
            self._check_files(self.val_ann_file, self.val_img_dir, *([self.det_file] if det else []))
            self.val_dataset = CocoWholeBodyDataset(
                self.val_ann_file,
                self.val_img_dir,
                self.input_wh,
                bbox_source=self.val_bbox_source,
                det_file=self.det_file if det else None,
                det_score_thr=self.det_score_thr,
                on_bad_image="raise" if self.bad_images.strict else "drop",
                encoded=self.decode_on == "gpu",
            )

    def _dist(self) -> dict[str, int] | None:
        """``{"num_replicas", "rank"}`` when running under a multi-process trainer, else ``None``."""
        trainer = getattr(self, "trainer", None)
        if trainer is None or trainer.world_size <= 1:
            return None
        kwargs = trainer.distributed_sampler_kwargs or {}
        return {
            "num_replicas": int(kwargs.get("num_replicas", trainer.world_size)),
            "rank": int(kwargs.get("rank", trainer.global_rank)),
        }

    def worker_start_method(self) -> str | None:
        """How this process's loader workers start (``None``: torch's default, fork on Linux): ``worker_start``
        when named, else a fork server in a gloo DDP run (module docstring)."""
        if self.num_workers == 0:
            return None
        if self.worker_start != "auto":
            return self.worker_start
        gloo = dist.is_available() and dist.is_initialized() and dist.get_backend() == "gloo"
        return "forkserver" if gloo and "forkserver" in multiprocessing.get_all_start_methods() else None

    def _loader_kwargs(self) -> dict[str, Any]:
        """The ``DataLoader`` arguments shared by the train and val loaders: workers and their set-up, pinning,
        prefetch, and the collate of encoded samples with ``decode_on="gpu"``."""
        kwargs: dict[str, Any] = {
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory,
            "persistent_workers": self.persistent_workers,
            "worker_init_fn": WorkerInit(prefault=self.cache_dir is not None) if self.num_workers > 0 else None,
        }
        if self.prefetch_factor is not None:
            kwargs["prefetch_factor"] = self.prefetch_factor
        start = self.worker_start_method()
        if start is not None:
            kwargs["multiprocessing_context"] = start
        if self.decode_on == "gpu":
            kwargs["collate_fn"] = collate_encoded
        return kwargs

    def _loader(self, dataset: Dataset, batch_size: int, train: bool) -> DataLoader:
        dist = self._dist()
        if train:
            return self._train_loader(dataset, batch_size, dist)
        sampler = UnpaddedDistributedSampler(dataset, **dist) if dist is not None else None
        return DataLoader(
            dataset, batch_size=batch_size, shuffle=False, sampler=sampler, drop_last=False, **self._loader_kwargs()
        )

    def _train_loader(self, dataset: Dataset, batch_size: int, dist: dict[str, int] | None) -> ResumableDataLoader:
        """Training batches in an order of (seed, epoch) (this rank's shard under DDP), each index with its epoch so
        the augmentation is one of (seed, epoch, index), from a loader whose place in the epoch is saved in the
        checkpoints (``wbpose.data.sampling``; docs/conventions.md#training-order-and-resume). The seed is the
        run's (``seed_everything``), 0 without one. ``Trainer(overfit_batches)`` keeps index order."""
        seed = int(os.getenv("PL_GLOBAL_SEED", 0))
        if isinstance(dataset, CocoWholeBodyDataset):
            dataset.seed = seed
        trainer = getattr(self, "trainer", None)
        overfit = getattr(trainer, "overfit_batches", 0) > 0
        sampler = EpochBatchSampler(
            dataset, batch_size, shuffle=not overfit, seed=seed, drop_last=self.drop_last, **(dist or {})
        )
        return ResumableDataLoader(dataset, sampler, **self._loader_kwargs())

    def train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            self.setup("fit")
        return self._loader(self.train_dataset, self.batch_size, train=True)

    def val_dataloader(self) -> DataLoader:
        if self.val_dataset is None:
            self.setup("validate")
        return self._loader(self.val_dataset, self.val_batch_size, train=False)

    def test_dataloader(self) -> DataLoader:
        """COCO-WholeBody has no public test split: testing scores the validation set (as MMPose)."""
        return self.val_dataloader()

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Note the rows whose image was bad while the batch is on the host (``wbpose.data.bad_images``), for the
        LightningModule to count without waiting for the device."""
        return note_bad_rows(batch)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Move the batch to the device; an encoded batch (``decode_on="gpu"``) then becomes the crops and heatmaps
        there (:class:`~wbpose.data.gpu_pixels.DevicePixels`; its files stay on the host, where the decoders read
        them)."""
        if not is_encoded_batch(batch):
            return super().transfer_batch_to_device(batch, device, dataloader_idx)
        pixels = self.device_pixels or DevicePixels(self.input_wh)
        host = {k: batch[k] for k in HOST_KEYS}
        rest = super().transfer_batch_to_device({k: v for k, v in batch.items() if k not in HOST_KEYS}, device,
                                                dataloader_idx)  # fmt: skip
        return pixels({**rest, **host}, device)
