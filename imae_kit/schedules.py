"""Weight schedules: a term's weight as a function of the optimisation step."""

from __future__ import annotations

import attrs

from imae_kit.params import choice_field, float_field, int_field

SCHEDULES = ("constant", "linear_warmup", "linear")


@attrs.frozen
class Schedule:
    """A term's weight as a function of the step.

    - ``constant``: ``value`` at every step;
    - ``linear_warmup``: 0 at step 0 rising linearly to ``value`` at ``steps``, then constant;
    - ``linear``: ``start`` until ``from_step``, linearly to ``end`` at ``to_step``, then ``end``.
    """

    kind: str = choice_field("constant", SCHEDULES, doc="constant, linear_warmup or linear")
    value: float = float_field(1.0, doc="the weight (constant, linear_warmup)")
    steps: int = int_field(0, min=0, doc="warm-up steps (linear_warmup)")
    start: float = float_field(0.0, doc="weight until from_step (linear)")
    end: float = float_field(0.0, doc="weight from to_step on (linear)")
    from_step: int = int_field(0, min=0, doc="first step of the ramp (linear)")
    to_step: int = int_field(0, min=0, doc="last step of the ramp (linear)")

    def at(self, step: int) -> float:
        """The weight at optimisation step ``step`` (counted from 0)."""
        if self.kind == "constant":
            return self.value
        if self.kind == "linear_warmup":
            if self.steps <= 0 or step >= self.steps:
                return self.value
            return self.value * step / self.steps
        if step <= self.from_step:
            return self.start
        if step >= self.to_step:
            return self.end
        frac = (step - self.from_step) / (self.to_step - self.from_step)
        return self.start + frac * (self.end - self.start)

    @property
    def always_zero(self) -> bool:
        """True when the weight is 0 at every step (the term is only monitored)."""
        if self.kind == "linear":
            return self.start == 0 and self.end == 0
        return self.value == 0

    def describe(self) -> str:
        """A short human-readable form, e.g. '4' or 'warmup(4, 1000 steps)'."""
        if self.kind == "constant":
            return f"{self.value:g}"
        if self.kind == "linear_warmup":
            return f"warmup({self.value:g}, {self.steps} steps)"
        return f"linear({self.start:g}->{self.end:g}, steps {self.from_step}-{self.to_step})"
