"""What a metric is: a registered attrs class, called with a ``MetricContext``, returning a ``MetricResult``.

A metric (built-in or plugin) is written as

    @register_metric("sap")
    @attrs.frozen
    class SeparatedAttributePredictability:
        '''One line on what it measures and where it comes from.'''
        needs: ClassVar = ("factors",)          # "labels" and/or "factors": what the data set must have
        result_type: ClassVar = SapResult       # how its eval.json block is read back (report, compare, sweep)
        train_points: int = int_field(10000, min=1, doc="...")
        def __call__(self, context: MetricContext) -> SapResult: ...

and its result is an attrs class that knows its eval.json block (``to_json`` / ``from_json``), its headline
rows (``headline``), its part of report.md (``report``) and the figures it asks for (``figures``: requests
that the evaluation draws, since a metric does not import the figures package). The evaluation runs the
recipe's ``[eval] metrics`` in order and writes each result's block under its label (the metric's name unless
the recipe gives a ``label``).

Randomness: the paper's measurements draw from ``context.generator``, the evaluation's one generator seeded
with ``[eval] seed``, in the order they run (so the default list reproduces the numbers it always gave); a
metric may instead take ``context.rng()``, a numpy generator of its own seeded from the seed and its label,
independent of which other metrics ran (the field's metrics do).
"""

from __future__ import annotations

import time
import zlib
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import attrs
import numpy as np
import torch

from imae_kit import registry
from imae_kit.data.base import DataSplits
from imae_kit.errors import RecipeError
from imae_kit.metrics.encodings import Encodings, encode_dataset
from imae_kit.metrics.information import AggregateEntropies, aggregate_entropies, subset_indices
from imae_kit.metrics.mig import label_factors
from imae_kit.metrics.settings import DEFAULT_METRICS, EvalSettings

NEEDS = ("labels", "factors")


@attrs.frozen(eq=False)
class FigureRequest:
    """A figure a result asks for: ``name`` (eval.json key and file stem), ``caption`` (report.md), ``kind``
    (one the evaluation knows how to draw: "information", "confusion", "mig_matrix", "matrix"; or "custom",
    drawn by ``draw(path) -> path or None``) and the ``data`` that kind is drawn from."""

    name: str
    caption: str
    kind: str
    data: Mapping[str, Any] = attrs.field(factory=dict)
    draw: Callable[[Path], Path | None] | None = None


class MetricResult:
    """Base of every metric's typed result. Subclasses are attrs classes; the defaults here store every field
    in eval.json, show no headline row, no report section and no figure."""

    def to_json(self) -> Any:
        """The eval.json block of this result (JSON-ready)."""
        return attrs.asdict(self, recurse=True)

    @classmethod
    def from_json(cls, block: Any) -> "MetricResult":
        """The result read back from its eval.json block."""
        return cls(**block)

    def headline(self) -> list[tuple[str, float | str]]:
        """(name, value) rows of the headline table (CLI, report.md, sweeps, comparisons)."""
        return []

    def report(self) -> list[str]:
        """Markdown lines of this result's section of report.md (none by default)."""
        return []

    def figures(self, results: Mapping[str, "MetricResult"]) -> list[FigureRequest]:
        """The figures to draw from this result (``results``: every result of the evaluation, by label)."""
        return []


def metric_label(spec: Any) -> str:
    """The label a built metric instance was requested under (its registered name by default)."""
    return getattr(spec, "label", None) or type(spec).registered_name


@attrs.define(eq=False)
class MetricContext:
    """What a metric computes from: the encodings of the evaluation split (``encodings``), the settings, the
    model and data (for metrics that encode more), the evaluation's generator, the results so far by label, and
    shared, cached intermediate results (``aggregate_entropies``, ``factor_encodings``)."""

    model: Any
    splits: DataSplits
    settings: EvalSettings
    encodings: Encodings
    generator: torch.Generator
    progress: bool = False
    label: str = ""
    results: dict[str, MetricResult] = attrs.field(factory=dict)
    timings: dict[str, float] = attrs.field(factory=dict)
    _entropies: AggregateEntropies | None = None
    _factor_encodings: Encodings | None = None
    _factor_encoded: bool = False

    @classmethod
    def for_codes(cls, mu: torch.Tensor, factors: torch.Tensor | None = None, *,
                  factor_names: Sequence[str] | None = None, sigma: torch.Tensor | None = None,
                  probs: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                  settings: EvalSettings | None = None, label: str = "") -> "MetricContext":
        """A context over given codes, no model or images: mu [N, K] (sigma default 1e-3, p(y|x) default
        uniform over 2), factor classes [N, F] with their names, labels [N]; the same points serve as the
        evaluation split and the factor split. For testing a metric on synthetic codes."""
        n = int(mu.shape[0])
        if factors is not None and factor_names is None:
            factor_names = [f"v{j}" for j in range(factors.shape[1])]
        enc = Encodings(mu=mu.float(), sigma=torch.full_like(mu.float(), 1e-3) if sigma is None else sigma.float(),
                        probs=torch.full((n, 2), 0.5) if probs is None else probs.float(), labels=labels,
                        factors=None if factors is None else factors.long(), index=torch.arange(n))
        data = _Codes(n, tuple(factor_names or ()), None if labels is None else int(labels.max()) + 1)
        return cls(model=None, splits=DataSplits(train=data, test=data, description="given codes"),
                   settings=settings or EvalSettings(mig_split="test"), encodings=enc,
                   generator=torch.Generator().manual_seed((settings or EvalSettings()).seed), label=label)

    def rng(self) -> np.random.Generator:
        """A numpy generator of this metric's own: seeded from [eval] seed and the metric's label."""
        return np.random.default_rng([self.settings.seed, zlib.crc32(self.label.encode())])

    def aggregate_entropies(self) -> AggregateEntropies:
        """H(z_k), H(z), H(z_k|x) of the evaluation split's aggregate posterior (computed once, shared by the
        continuous information and the total correlation, so both use the same samples)."""
        if self._entropies is None:
            s, enc = self.settings, self.encodings
            self._entropies = aggregate_entropies(
                enc.mu, enc.sigma, num_samples=s.entropy_samples, mixture_size=s.mixture_size,
                generator=self.generator, chunk_elements=s.chunk_elements, kernel=s.mixture_kernel, joint=True,
                progress=self.progress)
        return self._entropies

    @property
    def factor_split(self):
        """The split the factor metrics use ([eval] mig_split)."""
        return self.splits.train if self.settings.mig_split == "train" else self.splits.test

    def factor_names(self) -> tuple[str, ...]:
        """Ground-truth factor names of the factor split (empty if it has none)."""
        return tuple(getattr(self.factor_split, "factor_names", ()) or ())

    def factor_encodings(self) -> Encodings | None:
        """Encodings of the factor split (``mig_split``, ``mig_max_points``), encoded once for every factor
        metric; the evaluation split's own when it is the same set in full; None without factors."""
        if not self._factor_encoded:
            self._factor_encoded = True
            self._factor_encodings = self._encode_factor_split()
        return self._factor_encodings

    def _encode_factor_split(self) -> Encodings | None:
        start = time.perf_counter()
        s, dataset, test = self.settings, self.factor_split, self.splits.test
        try:
            if not self.factor_names():
                return None
            test_all = s.max_points == 0 or s.max_points >= len(test)
            every_point = s.mig_max_points == 0 or s.mig_max_points >= len(dataset)
            if dataset is test and test_all and every_point and self.encodings.factors is not None:
                return self.encodings  # e.g. dSprites, whose evaluation set is its training set: encode it once
            idx = subset_indices(len(dataset), s.mig_max_points, self.generator)
            return encode_dataset(self.model, dataset, batch_size=s.batch_size, indices=idx, progress=self.progress,
                                  description=f"encoding {s.mig_split} split for the factor metrics")
        finally:
            self.timings["mig_encode"] = round(time.perf_counter() - start, 3)


@attrs.frozen
class _Codes:
    """The data-set stand-in of ``MetricContext.for_codes``: a size, factor names and a class count."""

    size: int
    factor_names: tuple[str, ...]
    num_classes: int | None
    image_shape: tuple[int, int, int] = (1, 1, 1)

    def __len__(self) -> int:
        return self.size


@attrs.frozen(eq=False)
class FactorCodes:
    """The mean codes mu [N, K] of the factor split with its factor classes [N, F] and names, as the field's
    metrics (FactorVAE, DCI, SAP, modularity) take them: numpy, float64 / int64."""

    codes: np.ndarray
    factors: np.ndarray
    code_names: tuple[str, ...]
    factor_names: tuple[str, ...]

    def sample(self, rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
        """``count`` points drawn uniformly with replacement (a full factor grid: factors drawn uniformly, as
        disentanglement_lib samples them): (codes [count, K], factors [count, F])."""
        idx = rng.integers(0, len(self.codes), size=count)
        return self.codes[idx], self.factors[idx]

    def train_test(self, rng: np.random.Generator, train: int, test: int) -> tuple[np.ndarray, ...]:
        """(codes, factors) of ``train`` and of ``test`` points: disjoint uniform draws without replacement when
        the split holds both, else each drawn with replacement (disentanglement_lib's way; then the test points
        can repeat training ones, which flatters a predictor on a small split)."""
        n = len(self.codes)
        if train + test <= n:
            idx = rng.permutation(n)
            a, b = idx[:train], idx[train:train + test]
        else:
            a, b = rng.integers(0, n, size=train), rng.integers(0, n, size=test)
        return self.codes[a], self.factors[a], self.codes[b], self.factors[b]


def factor_codes(context: MetricContext, *, label_factor: bool = True) -> FactorCodes:
    """The factor split's mean codes and factors; ``label_factor=False`` leaves out the factor columns identical
    to the class labels (dSprites' shape, which y is meant to carry)."""
    enc = context.factor_encodings()
    if enc is None or enc.factors is None:
        raise RecipeError("no ground-truth factors to compute this metric from")
    names = context.factor_names()
    keep = list(range(len(names)))
    if not label_factor:
        excluded = set(label_factors(enc.factors, enc.labels))
        keep = [j for j in keep if j not in excluded] or keep
    codes = enc.mu.double().numpy()
    return FactorCodes(codes=codes, factors=enc.factors[:, keep].long().numpy(),
                       code_names=tuple(f"z{k}" for k in range(codes.shape[1])),
                       factor_names=tuple(names[j] for j in keep))


def needs_of(metric: Any) -> tuple[str, ...]:
    """What a metric needs of the data ("labels", "factors"), from its class attribute ``needs``."""
    return tuple(getattr(type(metric), "needs", ()) or ())


def missing_needs(metric: Any, splits: DataSplits, settings: EvalSettings) -> list[str]:
    """The needs of ``metric`` the data set does not meet: labels on the evaluation split, factors on the
    factor split (``mig_split``)."""
    factor_split = splits.train if settings.mig_split == "train" else splits.test
    have = {"labels": getattr(splits.test, "num_classes", None) is not None
            or getattr(splits.test, "labels", None) is not None,
            "factors": bool(getattr(factor_split, "factor_names", ()))}
    return [n for n in needs_of(metric) if not have.get(n, False)]


def gap_of_top_two(matrix: np.ndarray) -> np.ndarray:
    """Per column, the largest minus the second largest entry of ``matrix`` [L, F] (0 with fewer than 2 rows)."""
    if matrix.shape[0] < 2:
        return np.zeros(matrix.shape[1])
    ordered = np.sort(matrix, axis=0)
    return ordered[-1] - ordered[-2]


def as_rows(names: Sequence[str], values: Sequence[float]) -> dict[str, float]:
    """A {name: float} dict for eval.json."""
    return {str(n): float(v) for n, v in zip(names, values)}


def read_results(evaluation: Mapping[str, Any]) -> dict[str, MetricResult]:
    """The typed results of an eval.json dict, by label, in the order they ran: its ``metrics`` table (label ->
    registered name; an eval.json without one holds the default metrics). A null block (not applicable) and a
    metric that is not registered here (a plugin not loaded) are left out."""
    names = evaluation.get("metrics") or {n: n for n in DEFAULT_METRICS}
    out: dict[str, MetricResult] = {}
    for label, name in names.items():
        block = evaluation.get(label)
        if block is None or name not in registry.names("metric"):
            continue
        out[label] = registry.get("metric", name).result_type.from_json(block)
    return out
