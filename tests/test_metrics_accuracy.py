"""Unsupervised accuracy (best one-to-one matching), confusion matrix and NMI against known answers."""

from __future__ import annotations

import itertools
import math

import torch

from imae_kit.metrics.accuracy import cluster_accuracy, confusion_matrix, normalized_mutual_information


def _brute_force_accuracy(pred: list[int], labels: list[int], k: int) -> float:
    """Best accuracy over every one-to-one map of k categories onto k labels, by enumeration."""
    best = 0
    for perm in itertools.permutations(range(k)):
        best = max(best, sum(perm[p] == l for p, l in zip(pred, labels)))
    return best / len(pred)


def test_accuracy_is_one_under_a_permutation_of_labels():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (500,), generator=g)
    perm = torch.randperm(10, generator=g)
    result = cluster_accuracy(perm[labels], labels, 10, 10)
    assert result.accuracy == 1.0
    assert abs(result.nmi - 1.0) < 1e-12
    # the matching undoes the permutation: category perm[l] -> label l
    for label in range(10):
        assert result.mapping[int(perm[label])] == label


def test_accuracy_agrees_with_brute_force_over_all_permutations():
    g = torch.Generator().manual_seed(1)
    for trial in range(20):
        k = 4
        labels = torch.randint(0, k, (60,), generator=g)
        noisy = torch.where(torch.rand(60, generator=g) < 0.5, torch.randint(0, k, (60,), generator=g), labels)
        pred = torch.randperm(k, generator=g)[noisy]
        got = cluster_accuracy(pred, labels, k, k).accuracy
        assert abs(got - _brute_force_accuracy(pred.tolist(), labels.tolist(), k)) < 1e-12


def test_unmatched_categories_count_as_wrong():
    # 4 categories for 2 labels: at most 2 categories can be matched
    pred = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    labels = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1])
    result = cluster_accuracy(pred, labels, 4, 2)
    assert result.accuracy == 0.5
    assert sorted(m for m in result.mapping if m >= 0) == [0, 1]
    assert result.mapping.count(-1) == 2


def test_confusion_matrix_counts_like_a_loop():
    g = torch.Generator().manual_seed(2)
    pred = torch.randint(0, 5, (300,), generator=g)
    labels = torch.randint(0, 3, (300,), generator=g)
    expected = [[0] * 3 for _ in range(5)]
    for p, l in zip(pred.tolist(), labels.tolist()):
        expected[p][l] += 1
    assert confusion_matrix(pred, labels, 5, 3).tolist() == expected


def test_nmi_matches_a_direct_computation():
    g = torch.Generator().manual_seed(3)
    a = torch.randint(0, 4, (400,), generator=g)
    b = (a + torch.randint(0, 2, (400,), generator=g)) % 5
    n = len(a)
    pa = {i: (a == i).sum().item() / n for i in range(4)}
    pb = {j: (b == j).sum().item() / n for j in range(5)}
    mi = 0.0
    for i in range(4):
        for j in range(5):
            pij = ((a == i) & (b == j)).sum().item() / n
            if pij > 0:
                mi += pij * math.log(pij / (pa[i] * pb[j]))
    ha = -sum(p * math.log(p) for p in pa.values() if p > 0)
    hb = -sum(p * math.log(p) for p in pb.values() if p > 0)
    assert abs(normalized_mutual_information(a, b) - mi / (0.5 * (ha + hb))) < 1e-12


def test_nmi_of_independent_labellings_is_near_zero():
    g = torch.Generator().manual_seed(4)
    a = torch.randint(0, 3, (20000,), generator=g)
    b = torch.randint(0, 3, (20000,), generator=g)
    assert normalized_mutual_information(a, b) < 1e-3
