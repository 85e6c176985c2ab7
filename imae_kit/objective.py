"""The objective: a weighted sum of registered terms (PAPER.md eq. 10 and the baselines of Figure 1).

    loss = - sum_i sign_i * weight_i(step) * value_i,   sign = +1 to maximise, -1 to minimise

Terms whose weight is 0 at a step (monitor-only ones included) are not optimised; they are computed
only on logging steps, so monitoring costs nothing on the other steps.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import attrs
import torch

from imae_kit.precision import terms_autocast
from imae_kit.recipe.spec import ObjectiveSpec
from imae_kit.schedules import Schedule
from imae_kit.step import Step


@attrs.frozen(eq=False)
class WeightedTerm:
    """A term with its label, weight schedule and sense (+1 maximise, -1 minimise)."""

    label: str
    name: str
    term: Callable[[Step], torch.Tensor]
    weight: Schedule
    sign: float
    monitored_only: bool = False

    @property
    def sense(self) -> str:
        """'maximize' or 'minimize'."""
        return "maximize" if self.sign > 0 else "minimize"


@attrs.frozen(eq=False)
class TermRecord:
    """What one term measured at one step: raw value (nats), weight, and its contribution to the loss."""

    value: float
    weight: float
    contribution: float
    sense: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for metrics.jsonl."""
        return {"value": self.value, "weight": self.weight, "contribution": self.contribution, "sense": self.sense}


@attrs.frozen(eq=False)
class ObjectiveOutput:
    """The loss to minimise and, for logging steps, every term's record (else an empty dict)."""

    loss: torch.Tensor
    records: dict[str, TermRecord]
    active_values: dict[str, torch.Tensor]


class NonFiniteTermError(ArithmeticError):
    """Raised when a term's value (or gradient) is NaN or infinite at a step; names the term.

    ``label`` is a term's label, or a description in parentheses ("(the weighted sum)", "(the
    parameters)") when no single term is to blame; ``where`` names the first tensor affected."""

    def __init__(self, label: str, value: float, step: int, quantity: str = "value", where: str = ""):
        super().__init__(f"the {quantity} of {label!r} is {value} at step {step}")
        self.label = label
        self.value = value
        self.step = step
        self.quantity = quantity
        self.where = where


class Objective:
    """A weighted sum of terms built from a recipe's [objective]."""

    def __init__(self, terms: list[WeightedTerm]):
        if not terms:
            raise ValueError("an objective needs at least one term")
        self.terms = terms

    @classmethod
    def from_spec(cls, spec: ObjectiveSpec) -> "Objective":
        """The objective of a validated recipe's [objective], from the terms its validation built."""
        terms = []
        for t in spec.terms:
            sign = 1.0 if type(t.term).sense == "maximize" else -1.0
            terms.append(WeightedTerm(label=t.label, name=t.name, term=t.term, weight=t.weight, sign=sign,
                                      monitored_only=t.monitored_only))
        return cls(terms)

    def __call__(self, step: Step, *, log: bool = False) -> ObjectiveOutput:
        """Compute the loss at ``step.step``; with ``log`` also every other term's value (no gradient kept).

        Terms weighted 0 at this step are measured under a forked random generator, so logging
        (whose frequency is a bookkeeping setting) never changes the random draws of training."""
        loss: torch.Tensor | None = None
        measured: dict[str, TermRecord] = {}
        active: dict[str, torch.Tensor] = {}
        idle: list[WeightedTerm] = []
        device_type = step.x.device.type
        for wt in self.terms:
            w = wt.weight.at(step.step)
            if w != 0.0:
                with terms_autocast(device_type):  # a term's own arithmetic is fp32 (imae_kit.precision)
                    value = wt.term(step)
                contribution = -wt.sign * w * value
                loss = contribution if loss is None else loss + contribution
                active[wt.label] = value
                if log:
                    v = float(value.detach())
                    measured[wt.label] = TermRecord(v, w, -wt.sign * w * v, wt.sense)
            elif log:
                idle.append(wt)
        if idle:
            with _forked_rng(step.x.device), terms_autocast(device_type):
                for wt in idle:
                    measured[wt.label] = TermRecord(float(wt.term(step).detach()), 0.0, 0.0, wt.sense)
        records = {wt.label: measured[wt.label] for wt in self.terms if wt.label in measured}
        if loss is None:
            loss = step.x.new_zeros(())
        return ObjectiveOutput(loss=loss, records=records, active_values=active)

    def check_finite(self, out: ObjectiveOutput, step: int) -> None:
        """Raise NonFiniteTermError naming the first optimised term whose value is not finite."""
        if math.isfinite(float(out.loss.detach())):
            return
        for label, value in out.active_values.items():
            v = float(value.detach())
            if not math.isfinite(v):
                raise NonFiniteTermError(label, v, step)
        raise NonFiniteTermError("(the weighted sum)", float(out.loss.detach()), step)


def _forked_rng(device: torch.device) -> Any:
    """A context in which random draws on ``device`` (and the CPU) leave the global generators as they were."""
    if device.type != "cuda":
        return torch.random.fork_rng(devices=[])
    return torch.random.fork_rng(devices=[device.index if device.index is not None else torch.cuda.current_device()])
