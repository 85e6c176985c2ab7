"""The FactorVAE disentanglement score (Kim & Mnih 2018, "Disentangling by Factorising", Sec. 4).

One vote: choose a factor v_j uniformly, fix it at one value, draw ``batch_size`` points with that value (the
other factors varying as in the data); take the variance of each mean code over the batch, divided by its
variance over the data (so the vote is invariant to rescaling each code), and vote (argmin code, j). The
classifier is the majority vote: each code predicts the factor it was voted with most often on
``train_votes`` votes; the score is its accuracy on ``eval_votes`` fresh votes. Codes whose standard
deviation over the data is below ``prune_threshold`` have "collapsed to the prior" and take no part (Kim &
Mnih prune them without giving a threshold; 0.05 is disentanglement_lib's unsupervised study). Chance is
about 1 / (number of factors).

Defaults are disentanglement_lib's study: batch 64, 10,000 training and 5,000 evaluation votes, variances
over 10,000 points. Points are drawn from the encoded factor split ([eval] mig_split): on a full factor grid
(dSprites' training split) that is drawing the other factors uniformly, as disentanglement_lib renders them.
The majority-vote classifier is the paper's and disentanglement_lib's alike.
"""

from __future__ import annotations

from typing import ClassVar, Mapping

import attrs
import numpy as np

from imae_kit.metrics.base import FigureRequest, MetricContext, MetricResult, factor_codes
from imae_kit.params import bool_field, float_field, int_field
from imae_kit.registry import register_metric


@attrs.frozen
class FactorVaeResult(MetricResult):
    """Majority-vote accuracy on the training and evaluation votes, the active codes and the training votes
    [codes, factors]."""

    train_accuracy: float
    eval_accuracy: float
    active_codes: list[str]
    votes: list[list[int]]
    codes: list[str]
    factors: list[str]

    def headline(self) -> list[tuple[str, float | str]]:
        """The score: the evaluation votes' accuracy."""
        return [("FactorVAE score (Kim & Mnih)", self.eval_accuracy)]

    def figures(self, results: Mapping[str, MetricResult]) -> list[FigureRequest]:
        """The training votes, code against fixed factor."""
        return [FigureRequest("factor_vae_votes", "FactorVAE score: votes (argmin code, fixed factor)", "matrix",
                              {"matrix": self.votes, "rows": self.codes, "columns": self.factors,
                               "title": f"FactorVAE votes; score {self.eval_accuracy:.3f}"})]


def majority_vote_accuracy(votes: np.ndarray, classifier: np.ndarray) -> float:
    """Share of the ``votes`` [codes, factors] that the classifier (code -> factor) gets right."""
    total = votes.sum()
    return float(votes[np.arange(len(classifier)), classifier].sum() / total) if total else 0.0


@register_metric("factor_vae")
@attrs.frozen
class FactorVaeScore:
    """The FactorVAE score (Kim & Mnih 2018): accuracy of the majority vote from the least varying code, over
    batches with one factor fixed, to that factor."""

    needs: ClassVar = ("factors",)
    result_type: ClassVar = FactorVaeResult
    batch_size: int = int_field(64, min=2, doc="points per vote, sharing the fixed factor's value")
    train_votes: int = int_field(10000, min=1, doc="votes the majority-vote classifier is fitted on")
    eval_votes: int = int_field(5000, min=1, doc="fresh votes the score is the accuracy on")
    variance_points: int = int_field(10000, min=2, doc="points for each code's variance over the data")
    prune_threshold: float = float_field(0.05, min=0.0, doc="codes with a standard deviation below this "
                                                            "over the data are left out (collapsed)")
    label_factor: bool = bool_field(True, doc="count the factor identical to the labels (dSprites' shape)")

    def __call__(self, context: MetricContext) -> FactorVaeResult:
        """From the mean codes of the factor split, with this metric's own random generator."""
        fc = factor_codes(context, label_factor=self.label_factor)
        rng = context.rng()
        codes, factors = fc.codes, fc.factors
        k, f = codes.shape[1], factors.shape[1]
        sample, _ = fc.sample(rng, self.variance_points)
        global_var = np.var(sample, axis=0, ddof=1)
        active = np.flatnonzero(np.sqrt(global_var) >= self.prune_threshold)
        names = dict(codes=list(fc.code_names), factors=list(fc.factor_names))
        if len(active) == 0:
            return FactorVaeResult(train_accuracy=0.0, eval_accuracy=0.0, active_codes=[],
                                   votes=np.zeros((k, f), dtype=int).tolist(), **names)
        groups = [{int(v): np.flatnonzero(factors[:, j] == v) for v in np.unique(factors[:, j])} for j in range(f)]

        def cast(count: int) -> np.ndarray:
            votes = np.zeros((k, f), dtype=np.int64)
            for _ in range(count):
                j = int(rng.integers(f))
                members = groups[j][int(factors[rng.integers(len(factors)), j])]
                batch = codes[members[rng.integers(0, len(members), self.batch_size)]][:, active]
                local = np.var(batch, axis=0, ddof=1) / global_var[active]
                votes[active[int(np.argmin(local))], j] += 1
            return votes

        train = cast(self.train_votes)
        classifier = np.argmax(train, axis=1)   # each code predicts the factor it was voted with most
        evaluation = cast(self.eval_votes)
        return FactorVaeResult(train_accuracy=majority_vote_accuracy(train, classifier),
                               eval_accuracy=majority_vote_accuracy(evaluation, classifier),
                               active_codes=[fc.code_names[i] for i in active], votes=train.tolist(), **names)
