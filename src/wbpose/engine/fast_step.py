"""A training step without launch overhead: the forward pass, the loss and the backward pass compiled with
``torch.compile`` or captured once as a CUDA graph and replayed on static buffers.

HRNet runs thousands of small kernels per step; at the recipe's batch of 64 on one GPU the step is bound by
launching them, not by arithmetic (docs/benchmarks.md#gpu). The three modes (``module.step_mode``):

- ``eager``: PyTorch's ordinary execution; the reference the other two must equal.
- ``compile``: ``torch.compile`` of the forward pass and the loss (AOTAutograd compiles the backward pass too).
  Options go to ``torch.compile`` unchanged; without any, ``mode="reduce-overhead"`` on CUDA (inductor's CUDA
  graphs), the default mode elsewhere.
- ``cuda_graph``: forward, loss and backward captured as one CUDA graph on the first batch and replayed for
  every later batch of the same shapes. The inputs are copied into static buffers; the gradients land in static
  tensors that stay the parameters' ``.grad`` (written, not accumulated, by every replay); BatchNorm's running
  statistics are updated inside the graph. A batch of other shapes (an epoch's last, partial batch) runs the same
  computation eagerly into the same gradient tensors.

The optimiser's update stays outside the compiled or captured part in every mode, so Lightning's optimiser step,
the LR scheduler (plain float learning rates), gradient clipping and the optimiser's checkpoint state are the eager
step's; with ``fused=True`` Adam (``optim.fused``) it is one multi-tensor kernel per few dozen parameters.

:class:`TrainStep` is the one place that computes a training loss in each mode; the LightningModule and the
benchmarks (``benchmarks/train_throughput.py``) both use it. :class:`OptimizerStep` adds the optimiser for use
outside Lightning; :func:`record_steps` and :func:`compare_records` (or :func:`step_difference`, both in one call)
measure how far a fast step lands from the eager one.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

log = logging.getLogger(__name__)

__all__ = [
    "STEP_MODES",
    "Capture",
    "CudaGraphCapture",
    "OptimizerStep",
    "RerunCapture",
    "StepDifference",
    "StepRecord",
    "TrainStep",
    "autocast_dtype",
    "compare_records",
    "record_steps",
    "step_difference",
]

#: The values of ``module.step_mode``.
STEP_MODES = ("eager", "compile", "cuda_graph")

#: Mixed precisions and their autocast dtype; the ``*-true`` precisions (and ``32``, ``64``) run without autocast.
_AUTOCAST = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16, "bf16": torch.bfloat16, "16": torch.float16}


def autocast_dtype(precision: str | int) -> torch.dtype | None:
    """The autocast dtype of a Lightning precision string (``"bf16-mixed"`` -> bfloat16), ``None`` for none."""
    return _AUTOCAST.get(str(precision))


def check_step_mode(step_mode: str) -> str:
    """``step_mode`` if it is one of :data:`STEP_MODES`, else a ``ValueError`` naming them."""
    if step_mode not in STEP_MODES:
        raise ValueError(f"step_mode must be one of {', '.join(STEP_MODES)}; got {step_mode!r}")
    return step_mode


# ---------------------------------------------------------------------------------------------- capture backends
class Capture(Protocol):
    """Turns a body (a function of no arguments that reads and writes only static tensors) into its replay."""

    def __call__(self, body: Callable[[], None]) -> Callable[[], None]: ...


class CudaGraphCapture:
    """Capture with ``torch.cuda.CUDAGraph``: ``warmup`` eager runs on a side stream (cuDNN's algorithm choice, the
    allocator), then one capture (errors for unsafe CUDA calls from this thread only); the replay is
    ``graph.replay``.

    Args:
        warmup: eager runs of the body before capturing (the PyTorch documentation uses 3; at least 1).
    """

    def __init__(self, warmup: int = 3) -> None:
        if not torch.cuda.is_available():
            raise RuntimeError(
                "step_mode=cuda_graph needs a CUDA GPU and this torch sees none "
                f"(torch {torch.__version__}, cuda available: False); use step_mode=compile or eager"
            )
        if warmup < 1:
            raise ValueError(f"CudaGraphCapture: warmup must be >= 1, got {warmup}")
        self.warmup = warmup
        self.graph: torch.cuda.CUDAGraph | None = None

    def __call__(self, body: Callable[[], None]) -> Callable[[], None]:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                body()
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        torch.cuda.empty_cache()  # the warm-up's activations, cached for the side stream: the graph gets its own pool
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: other threads may go on with their CUDA work meanwhile (the loader's pin-memory thread
        # allocates pinned memory, which the default "global" mode would count against the capture)
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            body()
        return self.graph.replay


class RerunCapture:
    """A CPU stand-in for :class:`CudaGraphCapture`: the same warm-up runs, and a "replay" that runs the body again.

    It exercises everything around the capture (static buffers, gradients written into the same tensors, the
    running statistics put back after the warm-up, the fallback for other shapes) on any device, and checks what a
    real graph relies on: every tensor the body touches (``watch``) keeps its storage from capture to each replay.

    Args:
        warmup: eager runs before the "capture", as on a GPU.
    """

    def __init__(self, warmup: int = 3) -> None:
        self.warmup = warmup
        self.replays = 0
        self.watch: Sequence[torch.Tensor] = ()
        self._ptrs: list[int] = []

    def __call__(self, body: Callable[[], None]) -> Callable[[], None]:
        for _ in range(self.warmup):
            body()
        self._ptrs = [t.data_ptr() for t in self.watch]

        def replay() -> None:
            moved = [i for i, t in enumerate(self.watch) if t.data_ptr() != self._ptrs[i]]
            if moved:
                raise RuntimeError(
                    f"{len(moved)} static tensor(s) changed storage since the capture (first: #{moved[0]}); a CUDA "
                    "graph would read and write the old memory (was the model moved or its .grad replaced?)"
                )
            self.replays += 1
            body()

        return replay


# ---------------------------------------------------------------------------------------------- the step
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class TrainStep:
    """``(images, heatmaps, weights) -> loss`` of a pose model in one of the :data:`STEP_MODES`.

    ``eager`` and ``compile`` return a loss that still needs its backward pass (Lightning's, or
    :class:`OptimizerStep`'s); ``cuda_graph`` has run the backward pass when it returns (:attr:`computes_grads`):
    the gradients are in the parameters' ``.grad``, static tensors that every step overwrites, and the returned loss
    is a detached copy.

    Args:
        model: images (B, 3, H, W) -> heatmaps (B, K, h, w); its parameters and buffers must stay where they are
            (same device, same storage) once the first ``cuda_graph`` step has run.
        loss: ``loss(heatmaps, target, weights) -> scalar``.
        mode: ``eager``, ``compile`` or ``cuda_graph``.
        autocast: the autocast dtype (``torch.bfloat16`` for ``bf16-mixed``), ``None`` for none.
        channels_last: feed the model NHWC images (the model's weights must be NHWC already).
        compile_options: keyword arguments of ``torch.compile`` (``compile`` mode); ``None`` or empty:
            ``mode="reduce-overhead"`` on CUDA, the defaults elsewhere. ``dynamic`` defaults to ``False``.
        capture: the ``cuda_graph`` capture; ``None``: :class:`CudaGraphCapture` (needs CUDA). Tests pass a
            :class:`RerunCapture` to run the same logic on the CPU.

    Shapes: the first call fixes the batch shapes of the fast path; a call with other shapes runs eagerly (in
    ``cuda_graph`` mode, into the same gradient tensors), so that a last partial batch costs no recompile or second
    graph. :attr:`fallbacks` counts those calls.
    """

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module | LossFn,
        mode: str = "eager",
        autocast: torch.dtype | None = None,
        channels_last: bool = False,
        compile_options: Mapping[str, Any] | None = None,
        capture: Capture | None = None,
    ) -> None:
        self.model, self.loss, self.mode = model, loss, check_step_mode(mode)
        self.autocast, self.channels_last = autocast, channels_last
        self.compile_options = dict(compile_options or {})
        if self.compile_options and mode != "compile":
            raise ValueError(f"compile_options apply to step_mode=compile only; got them with step_mode={mode!r}")
        self._capture = capture
        self.fallbacks = 0
        self._shapes: tuple[tuple[int, ...], ...] | None = None
        self._compiled: Callable[..., torch.Tensor] | None = None
        self._cudagraph_steps = False
        self._replay: Callable[[], None] | None = None
        self._static: dict[str, torch.Tensor] = {}
        self._params: list[nn.Parameter] = []
        self._grads: list[torch.Tensor] = []

    @property
    def computes_grads(self) -> bool:
        """True when a call also ran the backward pass (``cuda_graph``)."""
        return self.mode == "cuda_graph"

    def _autocast(self, device_type: str, cache: bool = True) -> AbstractContextManager[Any]:
        if self.autocast is None:
            return nullcontext()
        return torch.autocast(device_type, dtype=self.autocast, cache_enabled=cache)

    def forward_loss(self, images: torch.Tensor, heatmaps: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The eager forward pass and loss (what every mode computes)."""
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        # autocast's weight cache must be off while a CUDA graph is captured (the cached casts would be freed)
        with self._autocast(images.device.type, cache=self.mode != "cuda_graph"):
            heatmaps_pred = self.model(images)
        return self.loss(heatmaps_pred, heatmaps, weights)

    def __call__(self, images: torch.Tensor, heatmaps: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        shapes = (tuple(images.shape), tuple(heatmaps.shape), tuple(weights.shape))
        if self._shapes is None:
            self._shapes = shapes
        elif shapes != self._shapes and self.mode != "eager":
            self.fallbacks += 1
            if self.fallbacks == 1:
                log.info("step_mode=%s: a batch of shapes %s (not %s) runs eagerly", self.mode, shapes, self._shapes)
            loss = self.forward_loss(images, heatmaps, weights)
            return self._write_grads(loss) if self.computes_grads else loss
        if self.mode == "eager":
            return self.forward_loss(images, heatmaps, weights)
        if self.mode == "compile":
            return self._compiled_loss(images, heatmaps, weights)
        return self._graph_step(images, heatmaps, weights)

    # ------------------------------------------------------------------ compile
    def _compiled_loss(self, images: torch.Tensor, heatmaps: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if self._compiled is None:
            options = dict(self.compile_options)
            if not options and images.is_cuda:
                options["mode"] = "reduce-overhead"
            options.setdefault("dynamic", False)
            self._cudagraph_steps = options.get("mode") in ("reduce-overhead", "max-autotune")
            log.info("step_mode=compile: torch.compile(%s)", ", ".join(f"{k}={v!r}" for k, v in options.items()))
            self._compiled = torch.compile(self.forward_loss, **options)
        if self._cudagraph_steps:  # a new step: inductor's CUDA graphs may reuse the previous step's outputs
            torch.compiler.cudagraph_mark_step_begin()
        return self._compiled(images, heatmaps, weights)

    # ------------------------------------------------------------------ cuda_graph
    def _write_grads(self, loss: torch.Tensor) -> torch.Tensor:
        """Backward of ``loss`` into the static gradient tensors (copied, never accumulated); a detached loss."""
        if self._params and self._params[0].grad is not self._grads[0]:
            self._attach_grads()  # someone set the grads to None (zero_grad(set_to_none=True)): put them back
        grads = torch.autograd.grad(loss, self._params, allow_unused=True, materialize_grads=True)
        torch._foreach_copy_(self._grads, grads)
        return loss.detach()

    def _graph_step(self, images: torch.Tensor, heatmaps: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if self._replay is None:
            self._build_graph(images, heatmaps, weights)
        assert self._replay is not None
        for name, value in (("images", images), ("heatmaps", heatmaps), ("weights", weights)):
            self._static[name].copy_(value, non_blocking=True)
        if self._params and self._params[0].grad is not self._grads[0]:
            self._attach_grads()  # as in _write_grads, which the replay does not run in Python
        self._replay()
        return self._static["loss"].clone()

    def _attach_grads(self) -> None:
        for p, g in zip(self._params, self._grads, strict=True):
            p.grad = g

    def _build_graph(self, images: torch.Tensor, heatmaps: torch.Tensor, weights: torch.Tensor) -> None:
        capture = self._capture if self._capture is not None else CudaGraphCapture()
        fmt = torch.channels_last if self.channels_last and images.ndim == 4 else torch.contiguous_format
        self._static = {
            "images": torch.empty(images.shape, dtype=images.dtype, device=images.device, memory_format=fmt),
            "heatmaps": torch.empty_like(heatmaps, memory_format=torch.contiguous_format),
            "weights": torch.empty_like(weights, memory_format=torch.contiguous_format),
            "loss": torch.zeros((), dtype=torch.float32, device=images.device),
        }
        for name, value in (("images", images), ("heatmaps", heatmaps), ("weights", weights)):
            self._static[name].copy_(value)
        self._params = [p for p in self.model.parameters() if p.requires_grad]
        self._grads = [torch.zeros_like(p) for p in self._params]
        self._attach_grads()
        buffers = [b for b in self.model.buffers() if b.is_floating_point() or b.dtype == torch.long]
        saved = [b.clone() for b in buffers]  # the warm-up runs update BatchNorm's statistics: put them back after

        def body() -> None:
            loss = self.forward_loss(self._static["images"], self._static["heatmaps"], self._static["weights"])
            self._static["loss"].copy_(self._write_grads(loss))

        if isinstance(capture, RerunCapture):
            capture.watch = [*self._static.values(), *self._params, *self._grads, *buffers]
        self._replay = capture(body)
        with torch.no_grad():
            for b, s in zip(buffers, saved, strict=True):
                b.copy_(s)
        log.info("step_mode=cuda_graph: captured forward, loss and backward for shapes %s", self._shapes)


# ---------------------------------------------------------------------------------------------- outside Lightning
class OptimizerStep:
    """One whole optimiser step outside Lightning: :class:`TrainStep`, its backward pass if it has not run it, the
    optimiser's update and zeroed gradients. For benchmarks and comparisons; training goes through the
    LightningModule, which uses :class:`TrainStep` alone.

    Args:
        step: the loss of a batch in the chosen mode.
        optimizer: over the model's parameters.
        scheduler: stepped after each optimiser step when given.
    """

    def __init__(self, step: TrainStep, optimizer: torch.optim.Optimizer, scheduler: Any | None = None) -> None:
        self.step, self.optimizer, self.scheduler = step, optimizer, scheduler

    def __call__(self, images: torch.Tensor, heatmaps: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        loss = self.step(images, heatmaps, weights)
        if not self.step.computes_grads:
            loss.backward()
        self.optimizer.step()
        if not self.step.computes_grads:
            self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None:
            self.scheduler.step()
        return loss.detach()


@dataclass(frozen=True)
class StepDifference:
    """How far a fast step's results land from the eager step's, from the same weights on the same batches.

    Attributes:
        loss: max |loss_fast - loss_eager| over the steps, over |loss_eager|.
        grad: ||grad_fast - grad_eager|| / ||grad_eager|| over all parameters, at the last step.
        weights: max |w_fast - w_eager| after the last update.
        update: ||w_fast - w_eager|| / ||w_eager - w_initial||: the difference against how far the weights moved.
            Adam divides each gradient by its own running magnitude, so a gradient near zero that differs by rounding
            can move its weight by up to the learning rate: ``weights`` alone can reach ``lr`` where this stays small.
        buffers: ||b_fast - b_eager|| / ||b_eager|| over BatchNorm's running statistics.
    """

    loss: float
    grad: float
    weights: float
    update: float
    buffers: float

    def text(self) -> str:
        return (
            f"loss {self.loss:.1e}, grads {self.grad:.1e}, weights max {self.weights:.1e} "
            f"(update {self.update:.1e}), BN stats {self.buffers:.1e} (relative)"
        )


def _rel(
    fast: Sequence[torch.Tensor], ref: Sequence[torch.Tensor], base: Sequence[torch.Tensor] | None = None
) -> float:
    """||fast - ref|| / ||ref - base|| (``base`` zeros when ``None``) over lists of tensors, in float64."""
    num = sum(float(((a.double() - b.double()) ** 2).sum()) for a, b in zip(fast, ref, strict=True))
    bases = base if base is not None else [torch.zeros_like(b) for b in ref]
    den = sum(float(((b.double() - c.double()) ** 2).sum()) for b, c in zip(ref, bases, strict=True))
    return (num / den) ** 0.5 if den > 0 else (0.0 if num == 0 else float("inf"))


@dataclass
class StepRecord:
    """What :func:`record_steps` keeps of a run: the losses, the last step's gradients (before its update), and the
    parameters before the first step and after the last, and the floating-point buffers after."""

    losses: list[float]
    grads: list[torch.Tensor]
    initial: list[torch.Tensor]
    params: list[torch.Tensor]
    buffers: list[torch.Tensor]


def record_steps(
    step: OptimizerStep,
    batches: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    lrs: Sequence[float] | None = None,
) -> StepRecord:
    """Run ``step`` over ``batches`` (setting the learning rate of step i to ``lrs[i]`` when given) and record it."""
    opt, model = step.optimizer, step.step.model
    initial = [p.detach().clone() for p in model.parameters()]
    losses: list[float] = []
    grads: list[torch.Tensor] = []
    for i, batch in enumerate(batches):
        if lrs is not None:
            for group in opt.param_groups:
                group["lr"] = lrs[i]
        handle = opt.register_step_pre_hook(_grab_grads(grads)) if i == len(batches) - 1 else None
        losses.append(float(step(*batch)))
        if handle is not None:
            handle.remove()
    return StepRecord(
        losses,
        grads,
        initial,
        [p.detach().clone() for p in model.parameters()],
        [b.detach().clone() for b in model.buffers() if b.is_floating_point()],
    )


def compare_records(fast: StepRecord, ref: StepRecord) -> StepDifference:
    """How far ``fast`` landed from ``ref`` (the eager run), both from the same initial weights."""
    for a, b in zip(fast.initial, ref.initial, strict=True):
        if not torch.equal(a, b):
            raise ValueError("compare_records: the two runs did not start from the same weights")
    with torch.no_grad():
        return StepDifference(
            loss=max(abs(a - b) / max(abs(b), 1e-30) for a, b in zip(fast.losses, ref.losses, strict=True)),
            grad=_rel(fast.grads, ref.grads),
            weights=max(
                float((a.double() - b.double()).abs().max()) for a, b in zip(fast.params, ref.params, strict=True)
            ),  # fmt: skip
            update=_rel(fast.params, ref.params, ref.initial),
            buffers=_rel(fast.buffers, ref.buffers),
        )


def step_difference(
    make_model: Callable[[], nn.Module],
    loss: nn.Module | LossFn,
    make_optimizer: Callable[[Any], torch.optim.Optimizer],
    batches: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    mode: str,
    lrs: Sequence[float] | None = None,
    **step_kwargs: Any,
) -> StepDifference:
    """Run ``len(batches)`` optimiser steps eagerly and in ``mode`` from the same initial weights; compare.

    Args:
        make_model: a fresh model on the target device (called once; the second copy is a deep copy).
        loss: the training loss.
        make_optimizer: ``params -> optimizer``.
        batches: ``(images, heatmaps, weights)`` per step, on the model's device.
        mode: the fast mode compared with ``eager``.
        lrs: the learning rate of each step (set on every parameter group before the step), to check that an LR
            change reaches the fast step; ``None`` keeps the optimiser's.
        step_kwargs: the remaining :class:`TrainStep` arguments (``autocast``, ``channels_last``, ...).
    """
    eager_model = make_model()
    fast_model = copy.deepcopy(eager_model)
    records = []
    for model, step_mode in ((eager_model, "eager"), (fast_model, mode)):
        kwargs = dict(step_kwargs)
        if step_mode != "compile":
            kwargs.pop("compile_options", None)
        step = OptimizerStep(TrainStep(model, loss, step_mode, **kwargs), make_optimizer(model.parameters()))
        records.append(record_steps(step, batches, lrs))
    return compare_records(records[1], records[0])


def _grab_grads(out: list[torch.Tensor]) -> Callable[..., None]:
    """An optimiser step pre-hook that copies every parameter's gradient (zeros for none) into ``out`` once."""

    def hook(optimizer: torch.optim.Optimizer, *_: Any) -> None:
        if not out:
            params = [p for g in optimizer.param_groups for p in g["params"]]
            out.extend(torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in params)

    return hook
