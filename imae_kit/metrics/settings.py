"""The evaluation settings: a recipe's [eval] table, validated here so the recipe layer needs no evaluation code.

``metrics`` chooses the metrics (registered with ``imae_kit.register_metric``) and their parameters:

    [eval]
    metrics = ["accuracy", "discrete", "continuous", "total_correlation", "reconstruction", "mig",
               { name = "dci", params = { regressor = "random_forest" } }]

Each entry is a registered name or a table with ``name``, optional ``label`` (its eval.json key; default the
name) and optional ``params``. Absent, the defaults (``DEFAULT_METRICS``) run, each skipped silently where
the data lacks what it needs; a metric listed explicitly that the data cannot serve is an error.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

import attrs

from imae_kit import registry
from imae_kit.errors import ImaeKitError
from imae_kit.params import bool_field, choice_field, float_field, int_field, show_value

# nats: below this provable bound on I(x; z_k) the sampled MIG bounds a dimension instead of estimating it (the
# default of [eval] mig_bound_below, and the training monitor's)
DEFAULT_BOUND_BELOW = 0.01

# what [eval] runs when it names no metrics: the paper's measurements, as eval.json has always held them
DEFAULT_METRICS = ("accuracy", "discrete", "continuous", "total_correlation", "reconstruction", "mig")
_REQUEST_KEYS = ("name", "label", "params")
# eval.json keys that are not metric results
RESERVED_KEYS = ("settings", "data", "model", "environment", "metrics", "figures", "timings", "train_seconds",
                 "recipe_line")


@attrs.frozen
class MetricRequest:
    """One entry of [eval] metrics: the registered ``name``, the ``label`` its result is stored under, the
    ``params`` given, and the ``metric`` instance built from them (by the registry, once)."""

    name: str
    label: str
    params: dict = attrs.field(factory=dict, hash=False)
    metric: Any = attrs.field(default=None, eq=False, hash=False, repr=False)


def _request(entry: Any, position: int) -> MetricRequest:
    where = f"metrics[{position}]"
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, dict):
        raise TypeError(f"{where} must be a metric name or a table {{ name = ..., params = {{ ... }} }}, "
                        f"got {show_value(entry)}")
    unknown = [k for k in entry if k not in _REQUEST_KEYS]
    if unknown:
        close = difflib.get_close_matches(unknown[0], _REQUEST_KEYS, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"{where} has no key {unknown[0]!r}; {hint}valid keys: {', '.join(_REQUEST_KEYS)}")
    name = entry.get("name")
    if not isinstance(name, str):
        raise TypeError(f"{where} needs a 'name' (a string), got {show_value(name)}")
    label = entry.get("label", name)
    if not isinstance(label, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", label):
        raise ValueError(f"{where} ({name}): 'label' must be letters, digits, '_', '-' or '.', got {label!r}")
    params = entry.get("params", {})
    if not isinstance(params, dict):
        raise TypeError(f"{where} ({name}): 'params' must be a table, got {show_value(params)}")
    try:
        metric = registry.build("metric", name, dict(params))
    except ImaeKitError as exc:  # unknown name (with the nearest ones), unknown or refused parameter
        raise ValueError(f"{where}: {exc}") from None
    return MetricRequest(name=name, label=label, params=dict(params), metric=metric)


def metric_requests(value: Any) -> tuple[MetricRequest, ...] | None:
    """[eval] metrics as MetricRequests (None: the defaults); labels must be unique."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)) and all(isinstance(v, MetricRequest) for v in value):
        return tuple(value)
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"'metrics' must be a list of metric names or tables, got {show_value(value)}")
    out = tuple(_request(entry, i) for i, entry in enumerate(value))
    labels = [r.label for r in out]
    reserved = next((lab for lab in labels if lab in RESERVED_KEYS), None)
    if reserved is not None:
        raise ValueError(f"a metric cannot be labelled {reserved!r}: eval.json uses that key; give it another label")
    twice = next((lab for lab in labels if labels.count(lab) > 1), None)
    if twice is not None:
        raise ValueError(f"two metrics are labelled {twice!r}; give one of them label = \"{twice}_2\"")
    return out


def default_requests() -> tuple[MetricRequest, ...]:
    """The default metrics, each with its default parameters."""
    return tuple(MetricRequest(name=n, label=n, metric=registry.build("metric", n, {})) for n in DEFAULT_METRICS)


@attrs.frozen
class EvalSettings:
    """What the evaluation computes and how hard it tries: a recipe's [eval] table (benchmarks/mig_speed.py
    times the full-grid dSprites MIG)."""

    batch_size: int = int_field(500, min=1, doc="images per encoder/decoder batch")
    seed: int = int_field(0, min=0, doc="seed of every random draw of the evaluation")
    max_points: int = int_field(0, min=0, doc="evaluate on a random subset of this many test points (0: all)")
    entropy_samples: int = int_field(
        10000, min=1, doc="Monte-Carlo samples for H(z_k), H(z), I(x;z_k) and the total correlation")
    mixture_size: int = int_field(
        10000, min=0, doc="evaluation points in the aggregate-posterior mixture (0: all; else a random subset)")
    mig: bool = bool_field(True, doc="compute the MIGs when the data set has ground-truth factors")
    mig_split: str = choice_field("train", ("train", "test"),
                                  doc="split the MIG is computed over (dSprites: train is the full grid)")
    mig_max_points: int = int_field(0, min=0, doc="points of the MIG split used (0: all, as Chen et al.)")
    mig_samples: int = int_field(10000, min=1, doc="samples of q(z|x) for the MIG entropies (Chen et al.: 10,000)")
    mig_bound_below: float = float_field(
        DEFAULT_BOUND_BELOW, min=0.0,
        doc="sampled MIG: a z_k whose I(x;z_k) is provably below this many nats (eq. 4's upper bound) is bounded, "
            "not estimated; eval.json says by how much that can move the MIG (0: estimate every z_k)")
    mixture_kernel: str = choice_field("auto", ("auto", "eager", "compiled"),
                                      doc="mixture kernel: eager torch, torch.compile'd, or auto (compile if large)")
    histogram_bins: int = int_field(20, min=2, doc="bins of the histogram MIG (disentanglement_lib: 20)")
    chunk_elements: int = int_field(1 << 21, min=4096,
                                    doc="floats per work buffer of the mixture kernels (memory bound)")
    prior_scale: float = float_field(1.0, min=0.0, min_exclusive=True,
                                     doc="scale s of the N(0, s^2) prior in the reported KL(p(z|x)||r(z))")
    figures: bool = bool_field(True, doc="draw figures/*.png")
    traversal_steps: int = int_field(11, min=2, doc="values of each z_k in a traversal row")
    traversal_span: float = float_field(2.0, min=0.0, min_exclusive=True, doc="traversals sweep [-span, span]")
    traversal_dims: int = int_field(10, min=1, doc="most informative dimensions shown in the traversals")
    reconstruction_images: int = int_field(32, min=1, doc="images in the reconstruction figure")
    metrics: tuple[MetricRequest, ...] | None = attrs.field(
        default=None, converter=metric_requests,
        metadata={"doc": "metrics to compute, in order: names or { name, label, params } tables (absent: "
                         + ", ".join(DEFAULT_METRICS) + ", each skipped where the data lacks what it needs)"})

    def __attrs_post_init__(self):
        if self.metrics is not None and not self.mig and any(r.name == "mig" for r in self.metrics):
            raise ValueError("'mig' = false but 'metrics' lists \"mig\"; drop one of them")

    @property
    def explicit(self) -> bool:
        """True when [eval] names its metrics (then each must apply to the data)."""
        return self.metrics is not None

    def requests(self) -> tuple[MetricRequest, ...]:
        """The metrics to run: those named, else the defaults (whose "mig" is skipped, its block null, when
        mig = false)."""
        return self.metrics if self.metrics is not None else default_requests()

    def as_json(self) -> dict:
        """The settings as eval.json records them (each metric as name, label and params)."""
        out = attrs.asdict(self, filter=lambda a, v: a.name != "metrics")
        out["metrics"] = None if self.metrics is None else [
            {"name": r.name, "label": r.label, "params": dict(r.params)} for r in self.metrics]
        return out
