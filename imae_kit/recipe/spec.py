"""The validated recipe: frozen attrs classes, one per section, built once and handed on.

Section fields are typed with ``imae_kit.params`` (the one validation system, shared with every
registered entry). The registered entries a recipe names (terms, networks, the data set) are built
during validation and carried here (``TermSpec.term``, ``NetworkSpec.network``, ``DataSpec.dataset``),
so the model, the objective and the trainer use those objects instead of building them again.
"""

from __future__ import annotations

from typing import Any, Mapping

import attrs

from imae_kit.params import bool_field, choice_field, float_field, int_field, str_field
from imae_kit.precision import PRECISIONS
from imae_kit.schedules import Schedule

TOP_LEVEL_KEYS = ("name", "description", "plugins", "vars", "data", "model", "objective", "train", "eval")
DEVICE_PATTERN = r"cpu|cuda(:\d+)?|mps|auto"


def _built() -> Any:
    return attrs.field(default=None, eq=False, repr=False)


@attrs.frozen
class DataSpec:
    """[data]: a registered data set name, its parameters, and the data-set entry built from them."""

    name: str
    params: Mapping[str, Any] = attrs.Factory(dict)
    dataset: Any = _built()


@attrs.frozen
class NetworkSpec:
    """[model.encoder] / [model.decoder]: a registered network body, its parameters, and the built body."""

    body: str = "mlp"
    params: Mapping[str, Any] = attrs.Factory(dict)
    network: Any = _built()


@attrs.frozen
class ModelSpec:
    """[model]: latent sizes K1 (continuous) and K2 (categories), Gumbel temperature, y's initial logit scale,
    likelihood."""

    latent_continuous: int = int_field(min=1, doc="K1, continuous dimensions of z")
    latent_discrete: int = int_field(min=2, doc="K2, categories of y")
    encoder: NetworkSpec = attrs.field(factory=NetworkSpec)
    decoder: NetworkSpec = attrs.field(factory=NetworkSpec)
    temperature: float = float_field(0.67, min=0.0, min_exclusive=True, doc="Gumbel-softmax temperature")
    logits_init_scale: float = float_field(1.0, min=0.0, min_exclusive=True,
                                           doc="factor on the initial weights and biases of y's logits "
                                               "(IMSAT: 1e-4, so y starts uniform)")
    likelihood: str = choice_field("bernoulli", ("bernoulli",), doc="pixel likelihood of the decoder")


@attrs.frozen
class TermSpec:
    """One [[objective.terms]] entry: a registered term, its label, weight schedule, params and the built term."""

    name: str
    label: str
    weight: Schedule
    params: Mapping[str, Any] = attrs.Factory(dict)
    monitored_only: bool = False
    term: Any = _built()


@attrs.frozen
class ObjectiveSpec:
    """[objective]: the weighted terms (monitor-only ones have weight 0)."""

    terms: tuple[TermSpec, ...]

    def in_steps(self, steps_per_epoch: int) -> ObjectiveSpec:
        """The same objective with every weight schedule counted in steps (``Schedule.in_steps``)."""
        return attrs.evolve(self, terms=tuple(attrs.evolve(t, weight=t.weight.in_steps(steps_per_epoch))
                                              for t in self.terms))


@attrs.frozen
class TrainSpec:
    """[train]: optimiser, schedule, batch size, budget, seed and bookkeeping."""

    optimizer: str = choice_field("adam", ("adam", "sgd"), doc="adam, or sgd with momentum")
    lr: float = float_field(1e-3, min=0.0, min_exclusive=True, doc="learning rate")
    momentum: float = float_field(0.9, min=0.0, doc="SGD momentum")
    lr_decay: float = float_field(1.0, doc="learning-rate multiplier per epoch, in (0, 1]")
    weight_decay: float = float_field(0.0, min=0.0, doc="L2 weight decay")
    batch_size: int = int_field(64, min=2, doc="examples per step")
    epochs: int | None = int_field(optional=True, min=1, doc="budget in epochs (or steps)")
    steps: int | None = int_field(optional=True, min=1, doc="budget in steps (or epochs)")
    seed: int = int_field(0, min=0, doc="seed of the run")
    device: str = str_field("cpu", pattern=DEVICE_PATTERN, rule="'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'",
                            doc="where to train")
    log_every: int = int_field(50, min=1, doc="steps between logged lines")
    checkpoint_every: int = int_field(0, min=0, doc="steps between checkpoints (0: only at the end)")
    grad_clip: float = float_field(0.0, min=0.0, doc="clip the gradient's L2 norm (0: off)")
    eval_every: int = int_field(0, min=0, doc="steps between evaluations on a fixed subset (0: off)")
    eval_points: int = int_field(20000, min=10, doc="images of that subset of the evaluation split")
    eval_samples: int = int_field(2000, min=10, doc="samples of q(z|x) for that MIG and TC")
    eval_split: str = choice_field("test", ("test", "train"), doc="the split those curves are measured on: "
                                   "'train' to choose defaults without looking at the test split")
    sync_batch_norm: bool = bool_field(True, doc="over several processes (torchrun), BatchNorm normalises by "
                                       "the global batch's statistics, as one process does; false: each process "
                                       "by its own slice's")
    tensorboard: bool = bool_field(False, doc="also write TensorBoard events into RUN_DIR/tensorboard")
    precision: str = choice_field("fp32", PRECISIONS, doc="the networks' arithmetic: fp32, bf16, or auto (bf16 "
                                                          "where the hardware has it natively)")


@attrs.frozen
class Recipe:
    """A validated recipe. ``resolved`` is the plain dict after overrides and ${vars} (written to runs)."""

    name: str
    description: str
    plugins: tuple[str, ...]
    vars: Mapping[str, Any]
    data: DataSpec
    model: ModelSpec
    objective: ObjectiveSpec
    train: TrainSpec
    eval: Mapping[str, Any]
    source: str
    resolved: Mapping[str, Any]

    def objective_formula(self) -> str:
        """The objective as a weighted sum to maximise, e.g. 'maximise  reconstruction + 4 * discrete_mi - ...'."""
        parts = []
        for t in self.objective.terms:
            if t.weight.always_zero:
                continue
            sign = "+" if type(t.term).sense == "maximize" else "-"
            w = t.weight.describe()
            parts.append(f"{sign} {t.label}" if w == "1" else f"{sign} {w} * {t.label}")
        text = " ".join(parts).lstrip("+ ").strip()
        return f"maximise  {text}" if text else "maximise  (no term weighted in)"
