"""Modularity and explicitness (Ridgeway & Mozer 2018, "Learning Deep Disentangled Embeddings with the
F-Statistic Loss", Sec. 3).

- Modularity: each code should carry information about one factor only. With m_ij = I(code_i; v_j) (codes cut
  into ``bins`` equal-width bins, as ``imae_kit.metrics.mig.histogram_discretize``; discrete MI from counts),
  theta_i = max_j m_ij and the template t_i that keeps only that largest entry,
  delta_i = sum_j (m_ij - t_ij)^2 / (theta_i^2 (F - 1)) and modularity = mean_i (1 - delta_i). A code with
  no information at all (theta_i = 0: a dead code) is undefined in the paper; it scores 0 here, as in
  disentanglement_lib, and is counted in the mean, so a dead code lowers modularity. A code independent of
  every factor is not near 0 either: the plug-in MI of an independent pair is biased up by about
  (bins - 1)(|v_j| - 1) / (2 N) (its chi-square limit), so its template fit is set by the factors' sizes.
- Explicitness: a one-vs-rest logistic regression per factor on all codes (standardised over the training
  points), scored by the ROC AUC of each factor value, averaged over values and factors. Chance is 0.5; a
  code that is any linear mix of the factors (a rotated pair included) is still explicit.

Defaults are disentanglement_lib's study: 10,000 training and 5,000 test points, 20 bins. The logistic
regressions run up to 1,000 iterations (scikit-learn's default of 100 stops short on large codes).
"""

from __future__ import annotations

from typing import ClassVar, Mapping

import attrs
import numpy as np

from imae_kit.metrics.base import FigureRequest, MetricContext, MetricResult, as_rows, factor_codes
from imae_kit.metrics.mig import code_factor_information, histogram_discretize
from imae_kit.params import bool_field, int_field
from imae_kit.registry import register_metric


def modularity_scores(information: np.ndarray) -> np.ndarray:
    """1 - delta_i per code of an information matrix [K, F] (0 for a code without information)."""
    squared = np.square(information)
    top = squared.max(axis=1)
    f = information.shape[1]
    out = np.zeros(len(top))
    ok = top > 0
    if f > 1:
        out[ok] = 1.0 - (squared[ok].sum(1) - top[ok]) / (top[ok] * (f - 1))
    else:
        out[ok] = 1.0
    return out


def explicitness_of(x_train, y_train, x_test, y_test, max_iter: int) -> tuple[float, float]:
    """Mean ROC AUC (train, test) over the values of one factor of a logistic regression on all codes."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    clf = LogisticRegression(max_iter=max_iter).fit(x_train, y_train)

    def auc(x, y) -> float:
        prob = clf.predict_proba(x)
        onehot = (y[:, None] == clf.classes_[None, :]).astype(int)
        keep = (onehot.sum(0) > 0) & (onehot.sum(0) < len(y))  # a value absent (or alone) has no AUC
        if len(clf.classes_) == 2:
            return float(roc_auc_score(onehot[:, 1], prob[:, 1]))
        return float(roc_auc_score(onehot[:, keep], prob[:, keep], average="macro")) if keep.any() else 0.5

    return auc(x_train, y_train), auc(x_test, y_test)


@attrs.frozen
class ModularityResult(MetricResult):
    """Modularity (per code), explicitness (per factor, train and test) and the information matrix."""

    modularity: float
    explicitness_train: float
    explicitness_test: float
    modularity_per_code: dict[str, float]
    explicitness_per_factor: dict[str, float]
    mutual_information: list[list[float]]
    codes: list[str]
    factors: list[str]
    bins: int

    def headline(self) -> list[tuple[str, float | str]]:
        """Modularity and test explicitness."""
        return [("modularity (Ridgeway & Mozer)", self.modularity),
                ("explicitness (test ROC AUC)", self.explicitness_test)]

    def figures(self, results: Mapping[str, MetricResult]) -> list[FigureRequest]:
        """The information matrix modularity is computed from."""
        return [FigureRequest("modularity_information", "Modularity: I(binned code; factor) in nats", "matrix",
                              {"matrix": self.mutual_information, "rows": self.codes, "columns": self.factors,
                               "title": f"I(code; factor), {self.bins} bins; modularity {self.modularity:.3f}"})]


@register_metric("modularity")
@attrs.frozen
class ModularityExplicitness:
    """Modularity and explicitness (Ridgeway & Mozer 2018): one factor per code, and factors linearly decodable."""

    needs: ClassVar = ("factors",)
    result_type: ClassVar = ModularityResult
    train_points: int = int_field(10000, min=2, doc="points of the information matrix and the regressions")
    test_points: int = int_field(5000, min=1, doc="held-out points of the explicitness")
    bins: int = int_field(20, min=2, doc="equal-width bins per code for the information matrix")
    max_iter: int = int_field(1000, min=1, doc="iterations of each logistic regression")
    label_factor: bool = bool_field(True, doc="count the factor identical to the labels (dSprites' shape)")

    def __call__(self, context: MetricContext) -> ModularityResult:
        """From the mean codes of the factor split, with this metric's own random generator."""
        fc = factor_codes(context, label_factor=self.label_factor)
        rng = context.rng()
        x_train, y_train, x_test, y_test = fc.train_test(rng, self.train_points, self.test_points)
        info = code_factor_information(histogram_discretize(x_train, self.bins), y_train)
        per_code = modularity_scores(info)
        mean, std = x_train.mean(0), x_train.std(0)
        std = np.where(std > 0, std, 1.0)
        z_train, z_test = (x_train - mean) / std, (x_test - mean) / std
        train, test = np.zeros(y_train.shape[1]), np.zeros(y_train.shape[1])
        for j in range(y_train.shape[1]):
            if len(np.unique(y_train[:, j])) < 2:
                train[j] = test[j] = 0.5
                continue
            train[j], test[j] = explicitness_of(z_train, y_train[:, j], z_test, y_test[:, j], self.max_iter)
        return ModularityResult(modularity=float(per_code.mean()), explicitness_train=float(train.mean()),
                                explicitness_test=float(test.mean()),
                                modularity_per_code=as_rows(fc.code_names, per_code),
                                explicitness_per_factor=as_rows(fc.factor_names, test),
                                mutual_information=info.tolist(), codes=list(fc.code_names),
                                factors=list(fc.factor_names), bins=self.bins)
