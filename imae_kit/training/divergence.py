"""Divergence forensics: when a step's loss, gradient or weights stop being finite, say which and where.

The trainer calls these only when something already failed, so they may cost a recomputation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from imae_kit.objective import NonFiniteTermError, ObjectiveOutput
from imae_kit.training.state import set_device_rng_state


def nonfinite_parameters(model: torch.nn.Module, step: int) -> NonFiniteTermError | None:
    """The first parameter or buffer that is not finite (an update overflowed), as an error; else None."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            value = float(tensor[~torch.isfinite(tensor)].flatten()[0])
            return NonFiniteTermError("(the parameters)", value, step, where=name)
    return None


def nonfinite_encoder_output(model: torch.nn.Module, x: torch.Tensor, step: int) -> NonFiniteTermError | None:
    """Finite weights so large that the encoder's output overflows, as an error; else None (called only when
    the run stops anyway, so the extra forward pass may touch BatchNorm statistics)."""
    encoder = model.encoder
    with torch.no_grad():
        h = encoder.head(encoder.body(x))
    if bool(torch.isfinite(h).all()):
        return None
    return NonFiniteTermError("(the encoder's output)", float(h[~torch.isfinite(h)].flatten()[0]), step)


def blame_gradient(forward: Callable[[torch.Tensor, int], ObjectiveOutput], parameters: list[torch.Tensor],
                   x: torch.Tensor, step: int, rng_before: dict[str, torch.Tensor]) -> str:
    """Recompute the failed step from the same random state and name the term whose gradient is not finite."""
    try:
        set_device_rng_state(rng_before)  # the run stops here: its random stream no longer matters
        out = forward(x, step)
        params = [p for p in parameters if p.requires_grad]
        for label, value in out.active_values.items():
            if not value.requires_grad:
                continue
            grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
            if any(g is not None and not bool(torch.isfinite(g).all()) for g in grads):
                return label
    except Exception:  # never let the diagnosis hide the divergence itself
        pass
    return "(the weighted sum)"


def divergence_message(exc: NonFiniteTermError, checkpoint_step: int | None, checkpoint_path: Path) -> str:
    """What the user reads: the step, the quantity and term, what is kept, what to change."""
    if checkpoint_step is not None:
        ckpt = f"the last good checkpoint (step {checkpoint_step}) is kept in {checkpoint_path}"
    else:
        ckpt = "no checkpoint had been written yet (set train.checkpoint_every to keep one)"
    is_term = not exc.label.startswith("(")
    what = f"term {exc.label!r}" if is_term else exc.label.strip("()")
    first = f" (first in {exc.where})" if exc.where else ""
    return (f"training diverged at step {exc.step}: the {exc.quantity} of {what} is {exc.value}{first}; {ckpt}. "
            f"Lower train.lr, set train.grad_clip{', or check that term' if is_term else ''}")
