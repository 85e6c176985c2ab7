"""What a trainer is built from: the device, the data, the budget and the optimiser of a recipe."""

from __future__ import annotations

from typing import Any

import torch

from imae_kit import distributed
from imae_kit.data.base import DataSplits
from imae_kit.data.order import steps_per_epoch
from imae_kit.errors import RunError
from imae_kit.recipe.spec import Recipe


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present, else the CPU; an unavailable device is a clear error. Under torchrun
    'auto' and 'cuda' mean this process's GPU, cuda:LOCAL_RANK (one GPU per process)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RunError(f"train.device = {name!r} but no CUDA device is available; use --set train.device=cpu")
    process = distributed.current()
    if name.startswith("cuda") and process.is_distributed:
        if name != "cuda":
            raise RunError(f"train.device = {name!r}: under torchrun each process takes the GPU of its LOCAL_RANK; "
                           f"use --set train.device=cuda (or auto)")
        return torch.device("cuda", process.local_rank % torch.cuda.device_count())
    if name == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise RunError("train.device = 'mps' but MPS is not available; use --set train.device=cpu")
    return torch.device(name)


def load_data(recipe: Recipe) -> DataSplits:
    """Load the splits of the recipe's data set (the entry its validation built)."""
    return recipe.data.dataset.load()


def total_steps(recipe: Recipe, n: int) -> int:
    """The run's budget in optimisation steps."""
    if recipe.train.steps is not None:
        return recipe.train.steps
    return recipe.train.epochs * steps_per_epoch(n, recipe.train.batch_size)


def build_optimizer(recipe: Recipe, model: torch.nn.Module) -> tuple[torch.optim.Optimizer, Any]:
    """Adam or momentum SGD with an exponential per-epoch decay (PAPER.md, Architectures)."""
    t = recipe.train
    # one fused kernel over all parameters instead of a loop of small ops per tensor (CPU and CUDA)
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype == torch.float32 for p in model.parameters())
    if t.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay,
                                                      fused=fused or None)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay,
                              foreach=fused or None)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=t.lr_decay)
    return opt, sched
