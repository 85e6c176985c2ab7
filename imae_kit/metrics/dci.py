"""DCI: disentanglement, completeness and informativeness (Eastwood & Williams 2018, "A Framework for the
Quantitative Evaluation of Disentangled Representations").

A classifier per factor v_j predicts it from all K mean codes; its feature importances give column j of the
importance matrix R [K, F]. With P_ij = R_ij / sum_j R_ij and P~_ij = R_ij / sum_i R_ij:

    disentanglement  D = sum_i rho_i (1 - H_F(P_i.)),    rho_i = sum_j R_ij / sum_ij R_ij
    completeness     C = sum_j w_j (1 - H_K(P~_.j)),     w_j = sum_i R_ij / sum_ij R_ij
    informativeness  I_j = prediction error of classifier j on held-out points; I = mean_j I_j

(H_B: entropy in base B). Tree importances sum to 1 per classifier, so w_j = 1/F and C is the plain mean
over factors. The paper's informativeness is an error (lower is better); disentanglement_lib reports the
accuracy under the same name: both are in eval.json (``informativeness_*`` the error, ``accuracy_*`` the
accuracy). A code that predicts two factors lowers D; a factor spread over two codes (a duplicated code)
lowers C; a dead code has no importance and changes neither.

Defaults are disentanglement_lib's: scikit-learn's GradientBoostingClassifier (100 trees of depth 3 per
class) on 10,000 training and 5,000 test points. It is slow on factors with many values (dSprites'
orientation: 40 classes, 4,000 trees); ``regressor = "random_forest"`` (RandomForestClassifier, ``trees``
trees considering every code at each split, impurity importances, as Eastwood & Williams' random-forest
variant) is several times faster.
"""

from __future__ import annotations

from typing import ClassVar, Mapping

import attrs
import numpy as np

from imae_kit.metrics.base import FigureRequest, MetricContext, MetricResult, as_rows, factor_codes
from imae_kit.params import bool_field, choice_field, int_field
from imae_kit.registry import register_metric


def _entropy_rows(p: np.ndarray, base: int) -> np.ndarray:
    """Entropy in base ``base`` of each row of a non-negative matrix, normalised to sum to 1 (disentanglement_lib
    adds 1e-11 to every entry first, so an all-zero row is uniform)."""
    q = p + 1e-11
    q = q / q.sum(axis=1, keepdims=True)
    return -(q * np.log(q)).sum(axis=1) / np.log(base)


def disentanglement_scores(importance: np.ndarray) -> tuple[float, np.ndarray]:
    """D and the per-code D_i of an importance matrix [K, F]."""
    k, f = importance.shape
    per_code = np.ones(k) if f < 2 else 1.0 - _entropy_rows(importance, f)
    weights = importance.sum(1) / importance.sum() if importance.sum() > 0 else np.full(k, 1.0 / k)
    return float((per_code * weights).sum()), per_code


def completeness_scores(importance: np.ndarray) -> tuple[float, np.ndarray]:
    """C and the per-factor C_j of an importance matrix [K, F]."""
    k, f = importance.shape
    per_factor = np.ones(f) if k < 2 else 1.0 - _entropy_rows(importance.T, k)
    weights = importance.sum(0) / importance.sum() if importance.sum() > 0 else np.full(f, 1.0 / f)
    return float((per_factor * weights).sum()), per_factor


@attrs.frozen
class DciResult(MetricResult):
    """D, C and I (with the per-code, per-factor parts), the importance matrix and the classifiers' accuracies."""

    disentanglement: float
    completeness: float
    informativeness_train: float
    informativeness_test: float
    accuracy_train: float
    accuracy_test: float
    disentanglement_per_code: dict[str, float]
    completeness_per_factor: dict[str, float]
    informativeness_per_factor: dict[str, float]
    importance: list[list[float]]
    codes: list[str]
    factors: list[str]
    regressor: str

    def headline(self) -> list[tuple[str, float | str]]:
        """D, C and the test prediction error."""
        return [("DCI disentanglement", self.disentanglement), ("DCI completeness", self.completeness),
                ("DCI informativeness (test error)", self.informativeness_test)]

    def figures(self, results: Mapping[str, MetricResult]) -> list[FigureRequest]:
        """The importance matrix."""
        return [FigureRequest("dci_importance", "DCI: importance of each code (rows) for each factor (columns)",
                              "matrix", {"matrix": self.importance, "rows": self.codes, "columns": self.factors,
                                         "title": f"DCI importance ({self.regressor}); D {self.disentanglement:.3f}, "
                                                  f"C {self.completeness:.3f}"})]


@register_metric("dci")
@attrs.frozen
class DisentanglementCompletenessInformativeness:
    """DCI (Eastwood & Williams 2018) from tree classifiers' feature importances, as disentanglement_lib."""

    needs: ClassVar = ("factors",)
    result_type: ClassVar = DciResult
    train_points: int = int_field(10000, min=2, doc="points the classifiers are fitted on")
    test_points: int = int_field(5000, min=1, doc="held-out points of the informativeness")
    regressor: str = choice_field("gradient_boosting", ("gradient_boosting", "random_forest"),
                                  doc="scikit-learn's GradientBoostingClassifier (disentanglement_lib) or "
                                      "RandomForestClassifier (faster)")
    trees: int = int_field(100, min=1, doc="trees (boosting stages) per classifier")
    label_factor: bool = bool_field(True, doc="count the factor identical to the labels (dSprites' shape)")

    def classifier(self, seed: int):
        """A fresh scikit-learn classifier of the chosen kind."""
        from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier

        if self.regressor == "random_forest":
            return RandomForestClassifier(n_estimators=self.trees, max_features=None, random_state=seed,
                                          n_jobs=1)
        return GradientBoostingClassifier(n_estimators=self.trees, random_state=seed)

    def __call__(self, context: MetricContext) -> DciResult:
        """From the mean codes of the factor split, with this metric's own random generator."""
        fc = factor_codes(context, label_factor=self.label_factor)
        rng = context.rng()
        x_train, y_train, x_test, y_test = fc.train_test(rng, self.train_points, self.test_points)
        k, f = x_train.shape[1], y_train.shape[1]
        importance = np.zeros((k, f))
        acc_train, acc_test = np.zeros(f), np.zeros(f)
        for j in range(f):
            if len(np.unique(y_train[:, j])) < 2:  # a constant factor: nothing to predict, every code useless
                acc_train[j] = acc_test[j] = float(np.mean(y_test[:, j] == y_train[0, j]))
                continue
            model = self.classifier(int(rng.integers(2 ** 31 - 1))).fit(x_train, y_train[:, j])
            importance[:, j] = np.abs(model.feature_importances_)
            acc_train[j] = np.mean(model.predict(x_train) == y_train[:, j])
            acc_test[j] = np.mean(model.predict(x_test) == y_test[:, j])
        d, per_code = disentanglement_scores(importance)
        c, per_factor = completeness_scores(importance)
        return DciResult(disentanglement=d, completeness=c, informativeness_train=float(1 - acc_train.mean()),
                         informativeness_test=float(1 - acc_test.mean()), accuracy_train=float(acc_train.mean()),
                         accuracy_test=float(acc_test.mean()),
                         disentanglement_per_code=as_rows(fc.code_names, per_code),
                         completeness_per_factor=as_rows(fc.factor_names, per_factor),
                         informativeness_per_factor=as_rows(fc.factor_names, 1 - acc_test),
                         importance=importance.tolist(), codes=list(fc.code_names), factors=list(fc.factor_names),
                         regressor=self.regressor)
