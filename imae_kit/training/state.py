"""Random state and seeding: a run is a function of (recipe, seed), and a checkpoint holds every RNG state."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

CHECKPOINT_FORMAT = 1


def rng_state() -> dict[str, Any]:
    """Every RNG state a step may touch, as tensors and plain values (loadable with weights_only)."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": list(random.getstate()[1]),
        "python_version": int(random.getstate()[0]),
        "python_gauss_next": random.getstate()[2],
    }
    if torch.cuda.is_available():
        state["cuda"] = [s for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the states saved by ``rng_state``."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    random.setstate((state["python_version"], tuple(state["python"]), state.get("python_gauss_next")))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def device_rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """The generator states a step on ``device`` draws from (the CPU's, and the GPU's on CUDA)."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_device_rng_state(state: dict[str, torch.Tensor]) -> None:
    """Restore the states saved by ``device_rng_state``."""
    torch.set_rng_state(state["cpu"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and python's random."""
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    random.seed(seed)
