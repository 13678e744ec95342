"""COCO-WholeBody keypoint metric as a torchmetrics ``Metric`` (MMPose 1.x ``CocoWholeBodyMetric`` semantics).

Order of operations (docs/conventions.md#evaluation): gather the per-rank states (``cat``), drop duplicate
instance ids (keep the first, which removes DistributedSampler padding), rescore, OKS-NMS per image, write the
results json (when ``outfile`` is set), run the six evaluations. Predictions are put in a canonical order (by
instance id) before rescoring, so the numbers do not depend on how the instances were split across ranks or
batches.

Engines: ``"fast"`` (default) scores the kept predictions as arrays with :mod:`wbpose.metrics.cocoeval` (the
xtcocotools numbers, bit for bit, with no Python object per prediction), against the ground truth as arrays (from
the parsed-file cache when one is set: :mod:`wbpose.data.cache`); ``"xtcocotools"`` builds the result dicts and
runs the reference. Without ``outfile`` no results json is written (``write_results=True`` writes one into a
temporary folder, as before): at full size the file is 0.7 GB and writing it costs seconds every epoch.

Under DDP every rank gathers all predictions and computes the same numbers (torchmetrics' ``sync_on_compute``);
each rank writes the same results json atomically, and the default number of evaluation processes is the usable
cores divided by the local ranks. Every rank must have called ``update()`` at least once before ``compute()``
(torchmetrics cannot gather an empty list state of this shape); Lightning's DistributedSampler ensures that.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from wbpose.data.coco_files import CocoArrays
from wbpose.keypoints import NUM_KEYPOINTS
from wbpose.metrics.evaluation import ENGINES, evaluate_arrays, evaluate_results, load_gt_arrays
from wbpose.metrics.keypoint_results import KeypointResults
from wbpose.metrics.oks import select_people
from wbpose.metrics.reference import load_coco_gt
from wbpose.metrics.results_io import build_results

if TYPE_CHECKING:  # the reference engine's ground truth (the fast engine works on arrays without xtcocotools)
    from xtcocotools.coco import COCO

_ID_STATES = ("instance_ids", "image_ids")
_FLOAT_STATES = ("keypoints", "keypoint_scores", "bbox_scores", "areas")
_RESULTS_NAME = "results.keypoints.json"


def _validated(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Check the ``update()`` shapes and that the float inputs are finite; return the floats (float32 or float64)."""
    n = tensors["instance_ids"].shape[0] if tensors["instance_ids"].ndim == 1 else -1
    expected = {
        "instance_ids": (n,),
        "image_ids": (n,),
        "keypoints": (n, NUM_KEYPOINTS, 2),
        "keypoint_scores": (n, NUM_KEYPOINTS),
        "bbox_scores": (n,),
        "areas": (n,),
    }
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    if n < 0 or got != expected:
        raise ValueError(
            "CocoWholeBodyMetric.update expects instance_ids (N,), image_ids (N,), keypoints (N, 133, 2), "
            f"keypoint_scores (N, 133), bbox_scores (N,), areas (N,); got {got}"
        )
    # float32 inputs (a model's outputs) are kept as float32: lossless, and half the memory of float64; every
    # computation in compute() is done in float64 from these exact values.
    floats = {k: tensors[k].detach() for k in _FLOAT_STATES}
    floats = {k: v if v.dtype in (torch.float32, torch.float64) else v.to(torch.float64) for k, v in floats.items()}
    finite = torch.stack(
        [torch.isfinite(v).flatten(1).all(1) if v.ndim > 1 else torch.isfinite(v) for v in floats.values()]
    )
    if not bool(finite.all()):  # one host sync per batch
        bad_rows = (~finite.all(0)).nonzero().flatten()[:5]
        bad_fields = [k for k, row in zip(floats, finite) if not bool(row.all())]
        raise ValueError(
            f"CocoWholeBodyMetric.update got NaN/inf in {bad_fields} for instance ids "
            f"{tensors['instance_ids'][bad_rows].tolist()}"
        )
    return floats


def _cat_numpy(state: Tensor | list[Tensor]) -> np.ndarray:
    """A ``cat`` state as one numpy array. numpy's concatenate, not ``torch.cat``: on a busy CPU, torch's
    intra-op threads made the concatenation of ~100k predictions take seconds instead of 0.1 s."""
    if isinstance(state, Tensor):
        return state.detach().cpu().numpy()
    parts = [t.detach().cpu().numpy() for t in state]
    return np.concatenate([p.reshape(1) if p.ndim == 0 else p for p in parts])


class CocoWholeBodyMetric(Metric):
    """Six-part COCO-WholeBody AP/AR of top-down predictions, with MMPose's rescoring and OKS-NMS.

    Args:
        ann_file: COCO-WholeBody annotation json scored against (loaded once, on first ``compute()``).
        prefix: Key prefix of the returned dict (``"val"`` -> ``"val/wholebody_ap"``).
        outfile: Where to write the results json; ``None`` = a temporary folder owned by this object (removed with
            it). The path of the last written file is ``results_file``.
        keypoint_score_thr: Keypoints with a score above this count in the instance score.
        nms_thr: OKS-NMS threshold (a candidate is dropped if its OKS with a kept one is greater).
        use_area: ``COCOeval(..., use_area)``; MMPose uses True (the GT ``area``).
        num_procs: Workers. Fast engine: it evaluates in this process; N > 1 writes the results json in a thread
            meanwhile. xtcocotools engine: worker processes for the six evaluations (``None``: usable cores /
            local ranks, at most 6; 1: sequential). The numbers do not depend on it.
        verbose: Print xtcocotools' summary tables.
        engine: "fast" (numpy on arrays, the default) or "xtcocotools" (the reference); same numbers.
        cache_dir: Parsed-file cache folder for the ground truth (``None``: the process default set by the
            DataModule, if any, else parse the json).
        write_results: Write the results json; ``None`` = only when ``outfile`` is given.
        **kwargs: Passed to ``torchmetrics.Metric`` (e.g. ``process_group``, ``sync_on_compute``).

    Example:
        >>> metric = CocoWholeBodyMetric("annotations/coco_wholebody_val_v1.0.json")  # doctest: +SKIP
        >>> metric.update(instance_ids, image_ids, keypoints, keypoint_scores, bbox_scores, areas)  # doctest: +SKIP
        >>> metric.compute()["val/wholebody_ap"]  # doctest: +SKIP
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(
        self,
        ann_file: str | Path,
        prefix: str = "val",
        outfile: str | Path | None = None,
        keypoint_score_thr: float = 0.2,
        nms_thr: float = 0.9,
        use_area: bool = True,
        num_procs: int | None = None,
        verbose: bool = False,
        engine: str = "fast",
        cache_dir: str | Path | None = None,
        write_results: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        self.engine = engine
        self.cache_dir = None if cache_dir is None else str(cache_dir)
        self.write_results = write_results
        self.ann_file = str(ann_file)
        self.prefix = prefix
        self.outfile = None if outfile is None else str(outfile)
        self.keypoint_score_thr = float(keypoint_score_thr)
        self.nms_thr = float(nms_thr)
        self.use_area = bool(use_area)
        self.num_procs = num_procs
        self.verbose = verbose
        self.results_file: Path | None = None
        self._coco_gt: COCO | None = None
        self._gt_arrays: CocoArrays | None = None
        self._tmpdir: str | None = None
        for name in (*_ID_STATES, *_FLOAT_STATES):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    # Ground truth and temporary folder are per process: never pickled or deep-copied with the states.
    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        return {**state, "_coco_gt": None, "_gt_arrays": None, "_tmpdir": None, "results_file": None}

    @property
    def gt_arrays(self) -> CocoArrays:
        """The ground truth as arrays (fast engine), loaded on first use (memory-mapped from the cache if set)."""
        if self._gt_arrays is None:
            self._gt_arrays = load_gt_arrays(self.ann_file, self.cache_dir)
        return self._gt_arrays

    @property
    def coco_gt(self) -> COCO:
        """The ground truth, loaded on first use and kept for the life of the metric."""
        if self._coco_gt is None:
            self._coco_gt = load_coco_gt(self.ann_file)
        return self._coco_gt

    def update(
        self,
        instance_ids: Tensor,
        image_ids: Tensor,
        keypoints: Tensor,
        keypoint_scores: Tensor,
        bbox_scores: Tensor,
        areas: Tensor,
    ) -> None:
        """Store one batch of predictions.

        Args:
            instance_ids: Unique id of each box (detection running index or annotation id); duplicates, e.g. from
                DistributedSampler padding, are dropped at ``compute()``.
            image_ids: COCO image id of each box.
            keypoints: Predicted keypoints in image pixels.
            keypoint_scores: Per-keypoint confidences (heatmap maxima).
            bbox_scores: Detector box scores (1 for ground-truth boxes).
            areas: Padded box area ``prod(scale_wh)`` used by OKS-NMS.

        Shape:
            instance_ids, image_ids, bbox_scores, areas: (N,); keypoints: (N, 133, 2); keypoint_scores: (N, 133).

        Raises:
            ValueError: On wrong shapes or non-finite values.
        """
        tensors = dict(
            instance_ids=instance_ids,
            image_ids=image_ids,
            keypoints=keypoints,
            keypoint_scores=keypoint_scores,
            bbox_scores=bbox_scores,
            areas=areas,
        )
        tensors = {k: torch.as_tensor(v, device=self.device) for k, v in tensors.items()}
        floats = _validated(tensors)
        # Copies, never the caller's tensors: a batch field from a loader worker lives in shared memory, and
        # holding it keeps that whole mapping alive (about 14 MB per batch at 64 crops: 23 GB over the full val set).
        for name in _ID_STATES:
            getattr(self, name).append(tensors[name].detach().to(torch.int64, copy=True))
        for name, value in floats.items():
            getattr(self, name).append(value.clone())

    def _gathered(self) -> dict[str, np.ndarray]:
        """The (synced) states as numpy arrays, in gathered order (duplicates included)."""
        if all(isinstance(s, list) and len(s) == 0 for s in (getattr(self, n) for n in _ID_STATES)):
            arrays = {
                "instance_ids": np.zeros(0, np.int64),
                "image_ids": np.zeros(0, np.int64),
                "keypoints": np.zeros((0, NUM_KEYPOINTS, 2)),
                "keypoint_scores": np.zeros((0, NUM_KEYPOINTS)),
                "bbox_scores": np.zeros(0),
                "areas": np.zeros(0),
            }
        else:
            arrays = {n: _cat_numpy(getattr(self, n)) for n in (*_ID_STATES, *_FLOAT_STATES)}
        return arrays

    def _results_path(self) -> Path:
        if self.outfile is not None:
            return Path(self.outfile)
        if self._tmpdir is None:
            self._tmpdir = tempfile.mkdtemp(prefix="wbpose_metric_")
            weakref.finalize(self, shutil.rmtree, self._tmpdir, True)
        return Path(self._tmpdir) / _RESULTS_NAME

    def compute(self) -> dict[str, Tensor]:
        """Deduplicate, rescore, OKS-NMS, write the results json (if asked) and run the six evaluations.

        Returns:
            ``{f"{prefix}/{part}_{stat}": float64 tensor}`` for part in body, foot, face, lefthand, righthand, hand,
            wholebody and stat in ap, ap50, ap75, apm, apl, ar, ar50, ar75, arm, arl (-1 where undefined).

        Raises:
            ValueError: Predictions for image ids the annotation file does not have.
        """
        preds = self._gathered()
        keep, scores = select_people(  # dedupe by instance id (canonical order), rescore, OKS-NMS per image
            preds["image_ids"],
            preds["keypoints"],
            preds["keypoint_scores"],
            preds["bbox_scores"],
            preds["areas"],
            instance_ids=preds["instance_ids"],
            keypoint_score_thr=self.keypoint_score_thr,
            nms_thr=self.nms_thr,
        )
        write = self.outfile is not None if self.write_results is None else self.write_results
        path = self._results_path() if write else None
        if self.engine == "fast":
            results = KeypointResults(
                preds["image_ids"][keep], preds["keypoints"][keep], preds["keypoint_scores"][keep], scores
            )
            del preds
            metrics = evaluate_arrays(
                self.gt_arrays,
                results,
                ann_file=self.ann_file,
                results_file=path,
                num_procs=self.num_procs,
                use_area=self.use_area,
                verbose=self.verbose,
            )
        else:
            results = build_results(
                preds["image_ids"][keep], preds["keypoints"][keep], preds["keypoint_scores"][keep], scores
            )
            metrics = evaluate_results(
                self.coco_gt,
                results,
                ann_file=self.ann_file,
                results_file=path,
                num_procs=self.num_procs,
                use_area=self.use_area,
                verbose=self.verbose,
            )
        self.results_file = path
        sep = "/" if self.prefix else ""
        return {f"{self.prefix}{sep}{k}": torch.tensor(v, dtype=torch.float64) for k, v in metrics.items()}
