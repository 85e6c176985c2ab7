"""Mixed precision: the networks' matrix multiplies in bf16 where the hardware has native bf16, the rest in fp32.

``train.precision`` is ``"fp32"``, ``"bf16"`` or ``"auto"`` (bf16 where native, else fp32). Under bf16 the
encoder and decoder run inside ``torch.autocast`` and hand their outputs on as fp32, so every term's
log-densities, logsumexps and KLs, and the parameters and optimiser state, stay in fp32. The encoder's last
layer, which produces the posterior's parameters, runs in fp32 on the body's bf16 output
(``imae_kit.model.Encoder``). A computation that
needs the networks in fp32 too (VAT's finite-difference probe, whose step xi = 1e-6 is far below bf16's
resolution) runs inside ``full_precision()``.
"""

from __future__ import annotations

import contextlib
import contextvars
import platform
from functools import lru_cache
from typing import Iterator

import torch

from imae_kit.errors import RunError

PRECISIONS = ("fp32", "bf16", "auto")
_FULL = contextvars.ContextVar("imae_kit_full_precision", default=False)


@lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    """True where the CPU multiplies bf16 natively: AMX-BF16 or AVX512-BF16 on x86 (Linux /proc/cpuinfo)."""
    if platform.system() != "Linux":
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool({"amx_bf16", "avx512_bf16"} & flags)
    except OSError:
        return False
    return False


def has_native_bf16(device: torch.device) -> bool:
    """Whether ``device`` has native bf16 matrix multiplies (CUDA: compute capability >= 8)."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return False


def resolve_precision(name: str, device: torch.device) -> str:
    """'fp32' or 'bf16' for the recipe's ``train.precision`` on ``device``; bf16 without hardware support is an error."""
    if name == "auto":
        return "bf16" if has_native_bf16(device) else "fp32"
    if name == "bf16" and not has_native_bf16(device):
        what = "this CPU has neither AMX-BF16 nor AVX512-BF16" if device.type == "cpu" else (
            f"{device} has no native bf16")
        raise RunError(f"train.precision = 'bf16' but {what}; use --set train.precision='\"auto\"' (bf16 where "
                       f"the hardware has it, else fp32) or '\"fp32\"'")
    return name


def compute_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a resolved precision (None: plain fp32)."""
    return torch.bfloat16 if precision == "bf16" else None


@contextlib.contextmanager
def full_precision() -> Iterator[None]:
    """Within the block the networks run in fp32 whatever the recipe's precision."""
    token = _FULL.set(True)
    try:
        yield
    finally:
        _FULL.reset(token)


def networks_autocast(device_type: str, dtype: torch.dtype | None) -> torch.autocast:
    """The autocast region of a network's forward pass: ``dtype`` unless none is set or ``full_precision`` holds."""
    enabled = dtype is not None and not _FULL.get()
    return torch.autocast(device_type=device_type, dtype=dtype or torch.bfloat16, enabled=enabled)


def step_autocast(device_type: str, dtype: torch.dtype | None) -> torch.autocast:
    """An outer region around a whole step (or evaluation loop): under bf16 it keeps each weight's bf16 copy
    for every pass of the step (autocast's cast cache lives as long as the outermost region)."""
    return torch.autocast(device_type=device_type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def terms_autocast(device_type: str) -> torch.autocast:
    """The region a term is computed in: autocast off, so a term's own matrix products stay in fp32."""
    return torch.autocast(device_type=device_type, enabled=False)
