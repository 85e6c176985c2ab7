"""The SAP score, separated attribute predictability (Kumar et al. 2018, "Variational Inference of Disentangled
Latent Concepts from Unlabeled Observations", Sec. 3).

A score matrix S [K, F]: S_ij says how well code i alone predicts factor v_j, on held-out points. For each
factor the gap between its two best codes; SAP is the mean gap. A factor captured by one code gets the gap
between that code's score and the chance score of the others; one captured by two codes (a duplicated or a
rotated pair) gets a gap near 0.

- Discrete factors (the default, ``continuous_factors = false``): the paper fits thresholds on the single
  code (as many as the factor has values, minus one) and scores the balanced accuracy; here a
  ``DecisionTreeClassifier`` with one leaf per factor value, class-balanced, on the one code (``classifier =
  "thresholds"``). disentanglement_lib fits a ``LinearSVC(C=0.01, class_weight="balanced")`` instead and
  scores the plain accuracy (``classifier = "linear_svc"``): one-vs-rest linear rules on one number cannot
  isolate the middle values of an ordinal factor (a scale or a position), so it underrates a perfect code.
  Chance is 1/|v_j| for the balanced accuracy, so a perfect code scores mean_j (1 - 1/|v_j|), not 1.
- Continuous factors: S_ij = the R^2 of a linear fit, corr(z_i, v_j)^2 (0 for a code of variance < 1e-12);
  a perfect code scores 1.

Defaults: 10,000 training and 5,000 test points, as disentanglement_lib's study.
"""

from __future__ import annotations

from typing import ClassVar, Mapping

import attrs
import numpy as np

from imae_kit.metrics.base import (FigureRequest, MetricContext, MetricResult, as_rows, factor_codes,
                                   gap_of_top_two)
from imae_kit.params import bool_field, choice_field, int_field
from imae_kit.registry import register_metric


def linear_r2(code: np.ndarray, factor: np.ndarray) -> float:
    """R^2 of the least-squares line of ``factor`` on ``code``: their squared correlation."""
    cov = np.cov(code, factor, ddof=1)
    if cov[0, 0] <= 1e-12 or cov[1, 1] <= 0:
        return 0.0
    return float(cov[0, 1] ** 2 / (cov[0, 0] * cov[1, 1]))


def threshold_score(code_train, y_train, code_test, y_test, seed: int) -> float:
    """Balanced accuracy of thresholds on one code (a class-balanced tree with one leaf per factor value)."""
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.tree import DecisionTreeClassifier

    leaves = max(2, len(np.unique(y_train)))
    tree = DecisionTreeClassifier(max_leaf_nodes=leaves, class_weight="balanced", random_state=seed)
    tree.fit(code_train[:, None], y_train)
    return float(balanced_accuracy_score(y_test, tree.predict(code_test[:, None])))


def linear_svc_score(code_train, y_train, code_test, y_test, seed: int) -> float:
    """disentanglement_lib's score: accuracy of a LinearSVC(C=0.01, class_weight="balanced") on one code."""
    from sklearn.svm import LinearSVC

    clf = LinearSVC(C=0.01, class_weight="balanced", random_state=seed).fit(code_train[:, None], y_train)
    return float(np.mean(clf.predict(code_test[:, None]) == y_test))


@attrs.frozen
class SapResult(MetricResult):
    """SAP, its per-factor gaps and the score matrix [codes, factors]."""

    score: float
    gaps: dict[str, float]
    matrix: list[list[float]]
    codes: list[str]
    factors: list[str]
    classifier: str

    def headline(self) -> list[tuple[str, float | str]]:
        """The SAP score."""
        return [("SAP score (Kumar et al.)", self.score)]

    def figures(self, results: Mapping[str, MetricResult]) -> list[FigureRequest]:
        """The score matrix."""
        return [FigureRequest("sap_matrix", "SAP: how well each code alone predicts each factor", "matrix",
                              {"matrix": self.matrix, "rows": self.codes, "columns": self.factors, "vmax": 1.0,
                               "title": f"SAP score matrix ({self.classifier}); SAP {self.score:.3f}"})]


@register_metric("sap")
@attrs.frozen
class SeparatedAttributePredictability:
    """The SAP score (Kumar et al. 2018): mean over factors of the gap between the two codes that predict it best."""

    needs: ClassVar = ("factors",)
    result_type: ClassVar = SapResult
    train_points: int = int_field(10000, min=2, doc="points the per-code predictors are fitted on")
    test_points: int = int_field(5000, min=1, doc="held-out points the scores are measured on")
    continuous_factors: bool = bool_field(False, doc="treat factors as continuous: the score is a linear R^2")
    classifier: str = choice_field("thresholds", ("thresholds", "linear_svc"),
                                   doc="discrete factors: thresholds with balanced accuracy (the paper) or "
                                       "disentanglement_lib's LinearSVC with accuracy")
    label_factor: bool = bool_field(True, doc="count the factor identical to the labels (dSprites' shape)")

    def __call__(self, context: MetricContext) -> SapResult:
        """From the mean codes of the factor split, with this metric's own random generator."""
        fc = factor_codes(context, label_factor=self.label_factor)
        rng = context.rng()
        x_train, y_train, x_test, y_test = fc.train_test(rng, self.train_points, self.test_points)
        k, f = x_train.shape[1], y_train.shape[1]
        fit = threshold_score if self.classifier == "thresholds" else linear_svc_score
        matrix = np.zeros((k, f))
        for i in range(k):
            for j in range(f):
                if self.continuous_factors:
                    matrix[i, j] = linear_r2(x_train[:, i], y_train[:, j].astype(float))
                elif len(np.unique(y_train[:, j])) > 1:
                    matrix[i, j] = fit(x_train[:, i], y_train[:, j], x_test[:, i], y_test[:, j],
                                       int(rng.integers(2 ** 31 - 1)))
        gaps = gap_of_top_two(matrix)
        return SapResult(score=float(gaps.mean()), gaps=as_rows(fc.factor_names, gaps), matrix=matrix.tolist(),
                         codes=list(fc.code_names), factors=list(fc.factor_names),
                         classifier="r2" if self.continuous_factors else self.classifier)
