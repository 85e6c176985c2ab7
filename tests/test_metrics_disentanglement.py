"""The field's disentanglement scores (FactorVAE, DCI, SAP, modularity and explicitness) against the limits their
definitions give, on synthetic codes of four factors: a code that is a permutation and rescaling of the factors,
an independent random code (each score's chance level), and a duplicated code, a rotated pair and a dead code,
each moving each score the way its definition says."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from imae_kit import registry
from imae_kit.metrics.base import MetricContext
from imae_kit.metrics.dci import completeness_scores, disentanglement_scores
from imae_kit.metrics.modularity import modularity_scores

SIZES = (3, 4, 5, 6)
N = 3000
CHANCE_ERROR = 1 - float(np.mean([1 / s for s in SIZES]))        # error of predicting the majority value
BALANCED_GAP = float(np.mean([1 - 1 / s for s in SIZES]))       # SAP of a perfect code: 1 - chance of the 2nd


@pytest.fixture(scope="module")
def codes():
    """Factor classes [N, 4] drawn uniformly, and codes built from them."""
    g = torch.Generator().manual_seed(0)
    f = torch.stack([torch.randint(0, s, (N,), generator=g) for s in SIZES], 1)
    unit = torch.stack([f[:, j].float() / (s - 1) * 2 - 1 for j, s in enumerate(SIZES)], 1)   # each in [-1, 1]
    noise = 0.01 * torch.randn(N, 4, generator=g)
    # a permutation, rescaling, sign flip and shift of the factors: code i carries factor PERM[i]
    perfect = torch.stack([3 + 0.7 * unit[:, 2], -2.0 * unit[:, 0], 0.1 * unit[:, 3], unit[:, 1]], 1) + noise
    c, s = math.cos(math.pi / 4), math.sin(math.pi / 4)
    rotated = perfect.clone()
    rotated[:, 1], rotated[:, 3] = c * unit[:, 0] - s * unit[:, 1], s * unit[:, 0] + c * unit[:, 1]  # factors 0, 1
    rotated[:, 1:4:2] += noise[:, :2]
    return {
        "factors": f,
        "perfect": perfect,
        "random": torch.rand(N, 4, generator=g),
        "duplicated": torch.cat([perfect, perfect[:, 1:2] * 1.5 + 0.01 * torch.randn(N, 1, generator=g)], 1),
        "rotated": rotated,
        "dead": torch.cat([perfect, torch.full((N, 1), 0.3)], 1),
    }


def run(name: str, code: torch.Tensor, factors: torch.Tensor, **params):
    return registry.build("metric", name, params)(MetricContext.for_codes(code, factors, label=name))


# -- FactorVAE -----------------------------------------------------------------------------------------------

FVAE = dict(train_votes=600, eval_votes=400, variance_points=2000)


def test_factor_vae_limits(codes):
    f = codes["factors"]
    perfect = run("factor_vae", codes["perfect"], f, **FVAE)
    assert perfect.eval_accuracy == 1.0 and perfect.train_accuracy == 1.0
    # a random code's argmin is a random code: the majority vote is right about 1 time in 4
    assert abs(run("factor_vae", codes["random"], f, **FVAE).eval_accuracy - 1 / len(SIZES)) < 0.06
    # a duplicate of a code: the copy ties with it, the vote still names the right factor
    assert run("factor_vae", codes["duplicated"], f, **FVAE).eval_accuracy == 1.0
    # a rotated pair: fixing factor 0 leaves both of its codes varying with factor 1; votes get confused
    assert run("factor_vae", codes["rotated"], f, **FVAE).eval_accuracy < 0.85
    # a dead code (std 0 < prune_threshold) takes no part
    dead = run("factor_vae", codes["dead"], f, **FVAE)
    assert dead.eval_accuracy == 1.0 and dead.active_codes == ["z0", "z1", "z2", "z3"]


def test_factor_vae_votes_are_reproducible_and_json_round_trips(codes):
    a = run("factor_vae", codes["rotated"], codes["factors"], **FVAE)
    b = run("factor_vae", codes["rotated"], codes["factors"], **FVAE)
    assert a == b
    assert type(a).from_json(a.to_json()) == a
    assert sum(map(sum, a.votes)) == FVAE["train_votes"]


# -- DCI -----------------------------------------------------------------------------------------------------

DCI_GB = dict(train_points=600, test_points=400, trees=40)
DCI_RF = dict(train_points=1000, test_points=500, regressor="random_forest", trees=30)


def test_dci_limits_with_gradient_boosting(codes):
    f = codes["factors"]
    perfect = run("dci", codes["perfect"], f, **DCI_GB)
    assert perfect.disentanglement > 0.95 and perfect.completeness > 0.95
    assert perfect.informativeness_test < 0.02 and perfect.accuracy_test > 0.98
    # importance sits on the permutation: code 0 carries factor 2, code 1 factor 0, ...
    assert np.argmax(np.array(perfect.importance), axis=0).tolist() == [1, 3, 0, 2]
    random = run("dci", codes["random"], f, **DCI_GB)
    assert random.disentanglement < 0.1 and random.completeness < 0.1
    assert abs(random.informativeness_test - CHANCE_ERROR) < 0.06


def test_dci_moves_the_way_its_definition_says(codes):
    f = codes["factors"]
    perfect = run("dci", codes["perfect"], f, **DCI_RF)
    assert perfect.disentanglement > 0.95 and perfect.completeness > 0.95
    # a duplicated code: factor 0 spread over two codes lowers completeness, each code still has one factor
    dup = run("dci", codes["duplicated"], f, **DCI_RF)
    assert dup.disentanglement > 0.9
    assert dup.completeness < perfect.completeness - 0.05
    assert dup.completeness_per_factor["v0"] < 0.8 and dup.completeness_per_factor["v1"] > 0.95
    # a rotated pair: two codes each about two factors lowers both
    rot = run("dci", codes["rotated"], f, **DCI_RF)
    assert rot.disentanglement < perfect.disentanglement - 0.1 and rot.completeness < perfect.completeness - 0.1
    # a dead code has no importance: nothing changes
    dead = run("dci", codes["dead"], f, **DCI_RF)
    assert abs(dead.disentanglement - perfect.disentanglement) < 0.02
    assert abs(dead.completeness - perfect.completeness) < 0.02
    assert dead.disentanglement_per_code["z4"] == pytest.approx(0.0, abs=1e-6)


def test_dci_scores_of_known_importance_matrices():
    # one code per factor, permuted: D = C = 1; every code equally important for every factor: D = C = 0
    assert disentanglement_scores(np.eye(3)[[2, 0, 1]])[0] == pytest.approx(1.0, abs=1e-8)
    assert completeness_scores(np.eye(3)[[2, 0, 1]])[0] == pytest.approx(1.0, abs=1e-8)
    assert disentanglement_scores(np.ones((4, 3)))[0] == pytest.approx(0.0, abs=1e-8)
    assert completeness_scores(np.ones((4, 3)))[0] == pytest.approx(0.0, abs=1e-8)
    # a factor split evenly over 2 of 4 codes: C_j = 1 - log 2 / log 4 = 0.5
    r = np.array([[0.5, 0.0], [0.5, 0.0], [0.0, 1.0], [0.0, 0.0]])
    assert completeness_scores(r)[1][0] == pytest.approx(0.5, abs=1e-8)
    assert disentanglement_scores(r)[1][:3] == pytest.approx([1.0, 1.0, 1.0], abs=1e-8)


# -- SAP -----------------------------------------------------------------------------------------------------

SAP = dict(train_points=1000, test_points=600)


def test_sap_limits(codes):
    f = codes["factors"]
    perfect = run("sap", codes["perfect"], f, **SAP)
    # each factor: its code's balanced accuracy 1, the best other code at chance 1/|v|
    assert abs(perfect.score - BALANCED_GAP) < 0.03
    assert run("sap", codes["random"], f, **SAP).score < 0.04
    # continuous factors: R^2, 1 for the code that carries the factor, ~0 for the others
    assert run("sap", codes["perfect"], f, continuous_factors=True, **SAP).score > 0.97
    # disentanglement_lib's LinearSVC cannot cut the middle values of a factor out of one code
    assert run("sap", codes["perfect"], f, classifier="linear_svc", **SAP).score < perfect.score - 0.2


def test_sap_moves_the_way_its_definition_says(codes):
    f = codes["factors"]
    perfect = run("sap", codes["perfect"], f, **SAP)
    dup = run("sap", codes["duplicated"], f, **SAP)
    assert dup.gaps["v0"] < 0.03                       # two codes predict factor 0 equally well
    assert abs(dup.gaps["v2"] - perfect.gaps["v2"]) < 0.02
    assert abs(dup.score - (perfect.score - perfect.gaps["v0"] / 4)) < 0.02
    rot = run("sap", codes["rotated"], f, **SAP)
    assert rot.gaps["v0"] < 0.15 and rot.gaps["v1"] < 0.15 and rot.score < perfect.score - 0.2
    dead = run("sap", codes["dead"], f, **SAP)        # a constant code scores chance: no gap changes
    assert abs(dead.score - perfect.score) < 0.01


# -- modularity and explicitness -----------------------------------------------------------------------------

MOD = dict(train_points=2000, test_points=1000)


def test_modularity_and_explicitness_limits(codes):
    f = codes["factors"]
    perfect = run("modularity", codes["perfect"], f, **MOD)
    assert perfect.modularity > 0.97 and perfect.explicitness_test > 0.99
    random = run("modularity", codes["random"], f, **MOD)
    assert abs(random.explicitness_test - 0.5) < 0.04
    # an independent code's plug-in MI is biased up by (bins - 1)(|v| - 1) / (2 n) (its chi-square limit), so
    # its modularity is that of a template fit to (|v_j| - 1): 1 - sum_{j != max} b_j^2 / (b_max^2 (F - 1))
    b = np.array(SIZES, dtype=float) - 1
    chance = 1 - (np.sum(b ** 2) - b.max() ** 2) / (b.max() ** 2 * (len(SIZES) - 1))
    assert abs(random.modularity - chance) < 0.1, (random.modularity, chance)
    assert np.all(np.array(random.mutual_information) < 0.05)


def test_modularity_and_explicitness_move_the_way_their_definitions_say(codes):
    f = codes["factors"]
    perfect = run("modularity", codes["perfect"], f, **MOD)
    dup = run("modularity", codes["duplicated"], f, **MOD)    # a copy is just as modular
    assert dup.modularity > 0.97 and dup.explicitness_test > 0.99
    rot = run("modularity", codes["rotated"], f, **MOD)       # two codes about two factors each; still linear
    assert rot.modularity_per_code["z1"] < 0.9 and rot.modularity_per_code["z3"] < 0.9
    assert rot.modularity_per_code["z0"] > 0.97
    assert rot.modularity < perfect.modularity - 0.05
    assert rot.explicitness_test > 0.97
    dead = run("modularity", codes["dead"], f, **MOD)         # a code without information scores 0 and counts
    assert dead.modularity_per_code["z4"] == 0.0
    assert dead.modularity == pytest.approx(perfect.modularity * 4 / 5, abs=0.01)
    assert dead.explicitness_test > 0.99


def test_modularity_of_known_information_matrices():
    assert modularity_scores(np.array([[0.0, 2.0, 0.0], [1.0, 0.0, 0.0]])).tolist() == [1.0, 1.0]
    # equal information about every factor: delta = 1, modularity 0; no information: 0 by convention
    assert modularity_scores(np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])).tolist() == [0.0, 0.0]
    # (1, 0.5, 0): delta = 0.25 / (1 * 2)
    assert modularity_scores(np.array([[1.0, 0.5, 0.0]]))[0] == pytest.approx(1 - 0.125)
