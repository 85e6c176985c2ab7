"""Weight schedules: a term's weight as a function of the optimisation step."""

from __future__ import annotations

import attrs

from imae_kit.params import choice_field, float_field, int_field

SCHEDULES = ("constant", "linear_warmup", "linear", "linear_epochs")


@attrs.frozen
class Schedule:
    """A term's weight as a function of the step.

    - ``constant``: ``value`` at every step;
    - ``linear_warmup``: 0 at step 0 rising linearly to ``value`` at ``steps``, then constant;
    - ``linear``: ``start`` until ``from_step``, linearly to ``end`` at ``to_step``, then ``end``;
    - ``linear_epochs``: the same with ``from_epoch`` and ``to_epoch`` counted in epochs of the run's own
      data set and batch size, so the schedule stays where it is in the data when the batch size changes; the
      trainer resolves them (``in_steps``) before the first step.
    """

    kind: str = choice_field("constant", SCHEDULES, doc="constant, linear_warmup or linear")
    value: float = float_field(1.0, doc="the weight (constant, linear_warmup)")
    steps: int = int_field(0, min=0, doc="warm-up steps (linear_warmup)")
    start: float = float_field(0.0, doc="weight until from_step (linear)")
    end: float = float_field(0.0, doc="weight from to_step on (linear)")
    from_step: int = int_field(0, min=0, doc="first step of the ramp (linear)")
    to_step: int = int_field(0, min=0, doc="last step of the ramp (linear)")
    from_epoch: float = float_field(0.0, min=0.0, doc="first epoch of the ramp (linear_epochs)")
    to_epoch: float = float_field(0.0, min=0.0, doc="last epoch of the ramp (linear_epochs)")
    steps_per_epoch: int = 0  # set by in_steps, never by a recipe (linear_epochs)

    def in_steps(self, steps_per_epoch: int) -> Schedule:
        """This schedule for a run of ``steps_per_epoch`` steps an epoch (only ``linear_epochs`` depends on it)."""
        if self.kind != "linear_epochs":
            return self
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        return attrs.evolve(self, steps_per_epoch=steps_per_epoch)

    def at(self, step: int) -> float:
        """The weight at optimisation step ``step`` (counted from 0)."""
        if self.kind == "constant":
            return self.value
        if self.kind == "linear_warmup":
            if self.steps <= 0 or step >= self.steps:
                return self.value
            return self.value * step / self.steps
        first, last = self.from_step, self.to_step
        if self.kind == "linear_epochs":
            if self.steps_per_epoch < 1:
                raise RuntimeError("a linear_epochs schedule needs the run's steps per epoch: call in_steps first")
            first, last = self.from_epoch * self.steps_per_epoch, self.to_epoch * self.steps_per_epoch
        if step <= first:
            return self.start
        if step >= last:
            return self.end
        frac = (step - first) / (last - first)
        return self.start + frac * (self.end - self.start)

    @property
    def always_zero(self) -> bool:
        """True when the weight is 0 at every step (the term is only monitored)."""
        if self.kind in ("linear", "linear_epochs"):
            return self.start == 0 and self.end == 0
        return self.value == 0

    def describe(self) -> str:
        """A short human-readable form, e.g. '4' or 'warmup(4, 1000 steps)'."""
        if self.kind == "constant":
            return f"{self.value:g}"
        if self.kind == "linear_warmup":
            return f"warmup({self.value:g}, {self.steps} steps)"
        if self.kind == "linear_epochs":
            return f"linear({self.start:g}->{self.end:g}, epochs {self.from_epoch:g}-{self.to_epoch:g})"
        return f"linear({self.start:g}->{self.end:g}, steps {self.from_step}-{self.to_step})"
