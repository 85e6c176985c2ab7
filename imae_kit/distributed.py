"""The process context of a run: one process, or N under ``torchrun`` (torch.distributed), seen the same way.

``torchrun --nproc-per-node N -m imae_kit run RECIPE`` starts N processes and sets RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR and MASTER_PORT; ``init_from_environment`` joins them into one process group
(gloo for CPU tensors, NCCL for CUDA ones: the group is ``cpu:gloo,cuda:nccl`` where CUDA is present).
Without those variables (or with WORLD_SIZE = 1) nothing is initialised and every operation here is the
identity, so one process and many run the same code.

Each process holds a slice of the global batch (``train.batch_size`` is the global size). A batch
statistic is computed over the global batch in one of two ways, both exact:

- replicated: every process gathers the inputs (``ProcessContext.gather``, a differentiable all-gather)
  and computes the same global value; the gather's backward sums the gradient over the processes, and
  DDP's average over the N processes turns that sum back into the gradient of the one global value;
- by rows: each process computes the mean over its own rows i of a quantity f(z_i, gathered columns)
  (the batch estimators' local-by-global rectangle); the mean over processes of these local means is the
  global mean, which is exactly what DDP's gradient average computes, the gather's summed backward
  bringing every row's gradient to the columns' owners.

The factor to mind: a replicated value must not be divided by N (DDP already averages), and a gather
whose backward kept only the local slice of the gradient (no sum over processes) would be N times too
small. A per-example mean over the local slice (reconstruction, VAT, posterior KL) needs nothing.

Batch-statistic collectives run on a process group of their own, apart from DDP's gradient buckets.
This module imports only torch.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.distributed as dist
from torch import nn


class ProcessGroupLost(RuntimeError):
    """A collective failed: another process of the run stopped (an error, a kill) or cannot be reached."""


def _collective(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except RuntimeError as exc:
        raise ProcessGroupLost(f"{what} failed ({type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]})") from exc


@dataclass(frozen=True)
class ProcessContext:
    """Rank, world size and the collectives a run needs; in one process every operation is the identity."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    group: Any = None  # the process group of the batch statistics (None: the default group)

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the process that writes the run directory."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        """Whether there are several processes."""
        return self.world_size > 1

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate every process's ``tensor`` (equal shapes) along dim 0, in rank order, with autograd:
        the backward pass sums the gradient over processes and hands each its slice. Identity in one process."""
        if not self.is_distributed:
            return tensor
        return _Gather.apply(tensor, self)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum over processes of ``tensor``, with autograd (the backward sums the gradients too)."""
        if not self.is_distributed:
            return tensor
        return _AllReduceSum.apply(tensor, self)

    def mean_of(self, values: Sequence[float]) -> list[float]:
        """The mean over processes of each number (float64, no autograd)."""
        if not self.is_distributed:
            return [float(v) for v in values]
        t = torch.tensor([float(v) for v in values], dtype=torch.float64)
        _collective("averaging the logged values", dist.all_reduce, t, group=self.group)
        return (t / self.world_size).tolist()

    def max_of(self, value: int) -> int:
        """The largest ``value`` over processes (e.g. a stop signal any process received)."""
        if not self.is_distributed:
            return int(value)
        t = torch.tensor([int(value)], dtype=torch.int64)
        _collective("agreeing on a stop", dist.all_reduce, t, op=dist.ReduceOp.MAX, group=self.group)
        return int(t.item())

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` (picklable), on every process."""
        if not self.is_distributed:
            return obj
        box = [obj if self.is_main else None]
        _collective("receiving from process 0", dist.broadcast_object_list, box, src=0, group=self.group)
        return box[0]

    def all_objects(self, obj: Any) -> list[Any]:
        """Every process's ``obj`` (picklable), in rank order."""
        if not self.is_distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        _collective("gathering from every process", dist.all_gather_object, out, obj, group=self.group)
        return out

    def barrier(self) -> None:
        """Wait until every process gets here."""
        if self.is_distributed:
            _collective("waiting for every process", dist.barrier, group=self.group)

    def slice(self, batch: torch.Tensor) -> torch.Tensor:
        """This process's equal share of a global batch (dim 0): rows rank * B/N to (rank + 1) * B/N."""
        if not self.is_distributed:
            return batch
        b = batch.shape[0] // self.world_size
        return batch[self.rank * b:(self.rank + 1) * b]


class _Gather(torch.autograd.Function):
    """all_gather forward; backward: the gradient summed over processes, this process's slice of it."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, process: ProcessContext) -> torch.Tensor:
        ctx.process = process
        tensor = tensor.contiguous()
        parts = [torch.empty_like(tensor) for _ in range(process.world_size)]
        _collective("gathering the batch", dist.all_gather, parts, tensor, group=process.group)
        return torch.cat(parts, dim=0)

    @staticmethod
    def jvp(ctx: Any, tangent: torch.Tensor, _process: None) -> torch.Tensor:
        """Forward mode (VAT's exact Hessian-vector product): gathering is linear, so the tangents gather too."""
        return _Gather.forward(ctx, tangent, ctx.process)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        p: ProcessContext = ctx.process
        grad = grad.contiguous()
        if grad.is_cuda:  # NCCL: a reduce-scatter moves 1/N of what an all-reduce does
            out = grad.new_empty((grad.shape[0] // p.world_size, *grad.shape[1:]))
            _collective("summing the gradient", dist.reduce_scatter_tensor, out, grad, group=p.group)
            return out, None
        total = grad.clone()
        _collective("summing the gradient", dist.all_reduce, total, group=p.group)
        return p.slice(total), None


class _AllReduceSum(torch.autograd.Function):
    """all_reduce(SUM) forward and backward."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, process: ProcessContext) -> torch.Tensor:
        ctx.process = process
        out = tensor.contiguous().clone()
        _collective("summing over processes", dist.all_reduce, out, group=process.group)
        return out

    @staticmethod
    def jvp(ctx: Any, tangent: torch.Tensor, _process: None) -> torch.Tensor:
        """Forward mode (VAT's exact Hessian-vector product): the sum is linear, so the tangents are summed."""
        return _AllReduceSum.forward(ctx, tangent, ctx.process)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        out = grad.contiguous().clone()
        _collective("summing the gradient", dist.all_reduce, out, group=ctx.process.group)
        return out, None


# -- the process's context ------------------------------------------------------------------------

_SINGLE = ProcessContext()
_current = _SINGLE


def current() -> ProcessContext:
    """This process's context (one process until ``init_from_environment`` joined a group)."""
    return _current


def world_size_from_environment() -> int:
    """WORLD_SIZE as torchrun sets it (1 when absent)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def init_from_environment() -> ProcessContext:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) once and
    return the context; in one process (no WORLD_SIZE, or 1) nothing happens. On CUDA each process takes
    the GPU of its LOCAL_RANK."""
    global _current
    if _current.is_distributed or world_size_from_environment() == 1:
        return _current
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        backend = "cpu:gloo,cuda:nccl"
    if not dist.is_initialized():
        _collective("joining the other processes", dist.init_process_group, backend=backend)
        atexit.register(_shutdown)
    group = _collective("creating a process group", dist.new_group, backend=backend)
    _current = ProcessContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                              group=group)
    return _current


def _shutdown() -> None:
    global _current
    if dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # pragma: no cover - a peer gone at exit changes nothing here
            pass
    _current = _SINGLE


# -- batch normalisation over the global batch -------------------------------------------------------

_GLOBAL_CLASSES: dict[type, type] = {}


class _GlobalStatistics:
    """Mixed into a BatchNorm class: in training mode, the batch statistics are those of the global batch
    (the same function of it as one process's BatchNorm; SyncBatchNorm's job, on the CPU as on CUDA)."""

    process: ProcessContext

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - torch's name
        bn: Any = self
        if not (bn.training and self.process.is_distributed):
            return super().forward(input)  # type: ignore[misc]
        bn._check_input_dim(input)
        x = input.float() if input.dtype in (torch.bfloat16, torch.float16) else input
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = x.numel() // x.shape[1] * self.process.world_size
        mean = self.process.sum(x.sum(dim=dims)) / count
        centred = x - mean.reshape(shape)
        var = self.process.sum(centred.square().sum(dim=dims)) / count  # biased, as BatchNorm normalises
        if bn.track_running_stats:
            with torch.no_grad():
                bn.num_batches_tracked.add_(1)
                f = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
                bn.running_mean.mul_(1 - f).add_(mean.detach(), alpha=f)
                bn.running_var.mul_(1 - f).add_(var.detach() * (count / max(count - 1, 1)), alpha=f)
        y = centred * torch.rsqrt(var + bn.eps).reshape(shape)
        if bn.affine:
            y = y * bn.weight.reshape(shape) + bn.bias.reshape(shape)
        return y.to(input.dtype)


def convert_batch_norm(module: nn.Module, process: ProcessContext) -> int:
    """Make every BatchNorm in ``module`` normalise by the global batch's statistics in training mode;
    the parameters and buffers stay the same objects (optimisers and state dicts are unaffected). Returns
    how many were converted."""
    n = 0
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, _GlobalStatistics):
            cls = type(m)
            if cls not in _GLOBAL_CLASSES:
                _GLOBAL_CLASSES[cls] = type(f"Global{cls.__name__}", (_GlobalStatistics, cls),
                                            {"__module__": __name__})
            m.__class__ = _GLOBAL_CLASSES[cls]
            m.process = process  # type: ignore[attr-defined]
            n += 1
    return n
