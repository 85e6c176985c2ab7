"""Unsupervised accuracy of the discrete code y against true labels (PAPER.md, Figure 3).

Accuracy is that of the best one-to-one matching of learnt categories to labels: the assignment that
maximises the number of agreeing points, found by the Hungarian algorithm
(``scipy.optimize.linear_sum_assignment``) on the confusion matrix. When there are more categories than
labels (or fewer), the unmatched ones count as wrong. The normalised mutual information uses the arithmetic
mean of the two entropies, NMI = I(y; label) / ((H(y) + H(label)) / 2), as scikit-learn does by default.
"""

from __future__ import annotations

import attrs
import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def confusion_matrix(predicted: torch.Tensor, labels: torch.Tensor, num_clusters: int | None = None,
                     num_classes: int | None = None) -> torch.Tensor:
    """Counts [num_clusters, num_classes]: entry (c, l) = number of points in category c with label l."""
    predicted, labels = predicted.long().reshape(-1), labels.long().reshape(-1)
    if predicted.shape != labels.shape:
        raise ValueError(f"predicted {tuple(predicted.shape)} and labels {tuple(labels.shape)} differ in length")
    kc = int(num_clusters if num_clusters is not None else (int(predicted.max()) + 1 if len(predicted) else 0))
    kl = int(num_classes if num_classes is not None else (int(labels.max()) + 1 if len(labels) else 0))
    flat = torch.bincount(predicted * kl + labels, minlength=kc * kl)
    return flat.reshape(kc, kl)


def _contingency_mutual_information(counts: np.ndarray) -> tuple[float, float, float]:
    """I(a;b), H(a), H(b) in nats from a contingency table of counts."""
    counts = counts.astype(np.float64)
    n = counts.sum()
    if n == 0:
        return 0.0, 0.0, 0.0
    pab = counts / n
    pa, pb = pab.sum(1), pab.sum(0)
    nz = pab > 0
    mi = float((pab[nz] * np.log(pab[nz] / np.outer(pa, pb)[nz])).sum())
    ha = float(-(pa[pa > 0] * np.log(pa[pa > 0])).sum())
    hb = float(-(pb[pb > 0] * np.log(pb[pb > 0])).sum())
    return max(mi, 0.0), ha, hb


def normalized_mutual_information(a: torch.Tensor, b: torch.Tensor) -> float:
    """NMI(a, b) = I(a;b) / mean(H(a), H(b)) of two integer labellings (1 if both are constant)."""
    counts = confusion_matrix(a, b).numpy()
    mi, ha, hb = _contingency_mutual_information(counts)
    denom = 0.5 * (ha + hb)
    if denom <= 0:
        return 1.0
    return float(mi / denom)


@attrs.frozen(eq=False)
class ClusterAccuracy:
    """Best-matching accuracy, the matching (category -> label, -1 if unmatched), confusion matrix and NMI."""

    accuracy: float
    mapping: list[int]
    confusion: torch.Tensor
    nmi: float


def cluster_accuracy(predicted: torch.Tensor, labels: torch.Tensor, num_clusters: int | None = None,
                     num_classes: int | None = None) -> ClusterAccuracy:
    """Accuracy of the best one-to-one matching of learnt categories ``predicted`` [N] to ``labels`` [N]."""
    conf = confusion_matrix(predicted, labels, num_clusters, num_classes)
    counts = conf.numpy()
    rows, cols = linear_sum_assignment(counts, maximize=True)
    mapping = [-1] * counts.shape[0]
    for r, c in zip(rows, cols):
        mapping[int(r)] = int(c)
    n = max(int(counts.sum()), 1)
    acc = float(counts[rows, cols].sum()) / n
    mi, ha, hb = _contingency_mutual_information(counts)
    nmi = 1.0 if ha + hb <= 0 else float(mi / (0.5 * (ha + hb)))
    return ClusterAccuracy(accuracy=acc, mapping=mapping, confusion=conf, nmi=nmi)
