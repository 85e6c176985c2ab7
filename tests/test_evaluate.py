"""evaluate(): eval.json numbers against independent computations, report.md, settings, determinism."""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path

import attrs
import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch

from imae_kit.data.base import DataSplits, TensorImages
from imae_kit.data.toy import ToyShapes
from imae_kit.errors import RecipeError
from imae_kit.evaluation import evaluate
from imae_kit.metrics.settings import EvalSettings
from imae_kit.report import headline, report_markdown

from test_figures import K1, K2, small_model

FAST = dict(entropy_samples=300, mig_samples=300, figures=False)


@pytest.fixture(scope="module")
def toy():
    return ToyShapes(repeats=2).load()


@pytest.fixture(scope="module")
def bn_model_result(toy, tmp_path_factory):
    model = small_model(seed=1, batch_norm=True)
    model.train()  # evaluate must switch BatchNorm to eval mode itself, and switch back
    out = tmp_path_factory.mktemp("ev")
    ev = evaluate(model, toy, out_dir=out, settings=EvalSettings(**FAST), progress=False,
                  recipe_line="imae_toy: reconstruction + ...", train_seconds=12.5)
    assert model.training
    return model, out, ev


def test_eval_json_matches_independent_computations(toy, bn_model_result):
    model, out, ev = bn_model_result
    assert json.loads((out / "eval.json").read_text()) == json.loads(json.dumps(ev))
    model.eval()
    with torch.no_grad():
        post = model.encode(toy.test.get_batch(torch.arange(len(toy.test))).x)
    model.train()
    p = post.probs.double()
    marginal = p.mean(0)
    h_y = float(-(marginal * marginal.log()).sum())
    h_y_x = float(-(p * p.clamp_min(1e-300).log()).sum(1).mean())
    assert abs(ev["discrete"]["mutual_information"] - (h_y - h_y_x)) < 1e-6
    # accuracy: brute force over the 3! maps of categories to labels
    pred, labels = p.argmax(1).tolist(), toy.test.labels.tolist()
    best = max(sum(perm[a] == b for a, b in zip(pred, labels)) for perm in itertools.permutations(range(3)))
    assert abs(ev["accuracy"]["accuracy"] - best / len(labels)) < 1e-12
    # Prop. 1 statistics of dimension 0
    d0 = ev["continuous"]["dimensions"][0]
    assert abs(d0["variance_of_means"] - float(post.mu[:, 0].double().var(unbiased=False))) < 1e-6
    assert abs(d0["mean_posterior_variance"] - float((post.sigma[:, 0].double() ** 2).mean())) < 1e-6
    assert d0["upper_bound"] >= d0["lower_bound"] - 1e-12
    # posterior KL of z against N(0, I), closed form
    kl = 0.5 * (post.sigma.double() ** 2 + post.mu.double() ** 2 - 1 - 2 * post.sigma.double().log()).sum(1).mean()
    assert abs(ev["reconstruction"]["kl_z"] - float(kl)) < 1e-6
    assert ev["reconstruction"]["nll_sampled"] > 0 and ev["reconstruction"]["nll_mean_code"] > 0
    assert ev["total_correlation"]["samples"] == 300


def test_mig_block_over_the_training_split(bn_model_result, toy):
    _, _, ev = bn_model_result
    mig = ev["mig"]
    assert mig["split"] == "train" and mig["points"] == len(toy.train)
    assert mig["excluded_from_z_only"] == ["shape"]  # identical to the labels
    assert mig["z_only"]["factors"] == ["posY", "posX"]
    assert mig["with_y"]["factors"] == ["shape", "posY", "posX"]
    assert len(mig["mutual_information"]["nats"]) == 4 + 1
    assert mig["histogram"]["bins"] == 20
    for block in (mig["z_only"], mig["with_y"], mig["histogram"]["z_only"]):
        assert -1e-9 <= block["score"] <= 1.0


def test_report_and_headline(bn_model_result):
    _, out, ev = bn_model_result
    text = (out / "report.md").read_text()
    assert text.startswith("# Evaluation report")
    assert "Recipe: `imae_toy: reconstruction + ...`" in text
    assert "Training time: 12.5 s" in text
    rows = headline(ev)
    names = [n for n, _ in rows]
    assert names[0] == "accuracy of y (best matching)"
    assert "MIG z (sampled, Chen et al.)" in names and "TC(z) nats" in names
    assert all(isinstance(v, float) for _, v in rows)
    for name, value in rows:
        assert "| " + name.replace("|", "\\|") + " |" in text
    assert dict(rows)["I(x;y) nats"] == ev["discrete"]["mutual_information"]
    assert report_markdown(ev) == text


def test_same_seed_same_numbers(toy, tmp_path):
    runs = []
    for i in range(2):
        ev = evaluate(small_model(seed=2), toy, out_dir=tmp_path / str(i), settings=EvalSettings(**FAST),
                      progress=False)
        ev.pop("timings")
        runs.append(ev)
    assert runs[0] == runs[1]


def test_data_without_labels_or_factors(tmp_path):
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(60, 12, 12, generator=g) > 0.7)
    data = TensorImages(images=images)
    splits = DataSplits(train=data, test=data, description="random pixels")
    ev = evaluate(small_model(), splits, out_dir=tmp_path, settings=EvalSettings(entropy_samples=100),
                  progress=False)
    assert ev["accuracy"] is None and ev["mig"] is None
    assert set(ev["figures"]) == {"traversals", "prototypes", "reconstructions", "information"}
    assert "accuracy" not in dict(headline(ev))


def test_mig_on_the_test_split_reuses_its_encodings(toy, tmp_path):
    ev = evaluate(small_model(), toy, out_dir=tmp_path, settings=EvalSettings(**FAST, mig_split="test"),
                  progress=False)
    assert ev["mig"]["points"] == len(toy.test)
    assert ev["timings"]["mig_encode"] < 0.05


def test_settings_are_typed_and_documented():
    fields = attrs.fields(EvalSettings)
    assert all(f.metadata.get("doc") for f in fields)
    with pytest.raises(TypeError):
        EvalSettings(batch_size="big")
    with pytest.raises(ValueError):
        EvalSettings(mig_split="validation")
    with pytest.raises(ValueError):
        EvalSettings(entropy_samples=0)
    with pytest.raises(TypeError):
        EvalSettings(no_such_setting=1)
    s = EvalSettings(**{"mig_samples": 100, "traversal_span": 3})
    assert s.traversal_span == 3.0 and isinstance(s.traversal_span, float)
    assert math.isclose(EvalSettings().traversal_span, 2.0)


# -- every number of eval.json, recomputed from the encodings by an independent route -----------------
#
# The evaluation draws its random numbers from one torch.Generator seeded with settings.seed, in a fixed
# order; ``_replay_draws`` repeats that order with plain torch calls, so that every Monte-Carlo estimate can be
# recomputed from the same samples with dense float64 numpy/scipy (no imae_kit code). The draw order is
# part of what is pinned: an evaluation that draws differently changes its numbers, and fails here.

PIN = dict(entropy_samples=300, mig_samples=260, figures=False, seed=5)


def informative_model():
    """small_model with a sharpened head: informative, confident codes, so that every number is far from 0."""
    model = small_model(seed=3)
    with torch.no_grad():
        head = model.encoder.head
        head.weight[:K1] *= 25.0                 # mu
        head.bias[K1:2 * K1] = -1.5              # log sigma
        head.weight[K1:2 * K1] *= 0.3
        head.weight[2 * K1:] *= 60.0             # logits of y
        model.decoder.body[0].weight[:, :K2] *= 40.0   # a decoder that listens to y
    return model


@pytest.fixture(scope="module")
def pinned(toy, tmp_path_factory):
    model = informative_model()
    ev = evaluate(model, toy, out_dir=tmp_path_factory.mktemp("pin"), settings=EvalSettings(**PIN), progress=False)
    model.eval()
    with torch.no_grad():
        test = model.encode(toy.test.get_batch(torch.arange(len(toy.test))).x)
        train = model.encode(toy.train.get_batch(torch.arange(len(toy.train))).x)
    return model, ev, test, train


def _randperm_cycle(n: int, count: int, g: torch.Generator) -> np.ndarray:
    reps = -(-count // n)
    return torch.cat([torch.randperm(n, generator=g) for _ in range(reps)])[:count].numpy()


def _replay_draws(seed: int, n_test: int, n_mig: int, k1: int, k2: int, samples: int, mig_samples: int) -> dict:
    """The evaluation's draws, in its order: reconstruction noise and Gumbel uniforms of the one encoding batch,
    then the aggregate-entropy sample points and noise, then the MIG's."""
    g = torch.Generator().manual_seed(seed)
    out = {"eps": torch.randn((n_test, k1), generator=g).double().numpy(),
           "u": torch.rand((n_test, k2), generator=g).clamp_(1e-10, 1.0 - 1e-7).double().numpy()}
    out["picks"] = _randperm_cycle(n_test, samples, g)
    out["noise"] = torch.randn((samples, k1), generator=g, dtype=torch.float32).double().numpy()
    out["mig_picks"] = _randperm_cycle(n_mig, mig_samples, g)
    out["mig_noise"] = torch.randn((mig_samples, k1), generator=g, dtype=torch.float32).double().numpy()
    return out


def _log_normal(z, mu, sigma):
    return scipy.stats.norm.logpdf(z, loc=mu, scale=sigma)


def _entropy(p) -> float:
    p = np.asarray(p, dtype=np.float64)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _count_information(a: np.ndarray, b: np.ndarray) -> float:
    """I(a; b) in nats of two integer labellings, by a loop over the cells of their contingency table."""
    n = len(a)
    total = 0.0
    for va in set(a.tolist()):
        pa = np.mean(a == va)
        for vb in set(b.tolist()):
            pab = np.sum((a == va) & (b == vb)) / n
            if pab > 0:
                total += pab * math.log(pab / (pa * np.mean(b == vb)))
    return total


def _histogram_codes(values: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bins over the range, by a loop: the last edge at or below the value (max: last bin)."""
    lo, hi = values.min(), values.max()
    width = (hi - lo) / bins
    return np.array([max(e for e in range(bins) if v >= lo + e * width) for v in values])


def _gap_block(matrix: dict[str, list[float]], entropies: dict[str, float], clamp: bool) -> dict:
    """MIG by hand: for each factor, (largest - second largest) I(l; v) / H(v) over the latents; their mean."""
    gaps, top, second = {}, {}, {}
    for f, h in entropies.items():
        normalized = sorted(((max(v, 0.0) if clamp else v) / h, name) for name, v in matrix[f].items())
        (a, name_a), (b, name_b) = normalized[-1], normalized[-2]
        gaps[f], top[f], second[f] = a - b, name_a, name_b
    return {"score": sum(gaps.values()) / len(gaps), "gaps": gaps, "top_latent": top, "second_latent": second}


def _check_gap_block(got: dict, want: dict, atol: float) -> None:
    assert got["score"] == pytest.approx(want["score"], abs=atol)
    assert set(got["gaps"]) == set(want["gaps"])
    for f, g in want["gaps"].items():
        assert got["gaps"][f] == pytest.approx(g, abs=atol), f
    assert got["top_latent"] == want["top_latent"]
    assert got["second_latent"] == want["second_latent"]


def test_pinned_model_is_informative(pinned):
    """The pinning tests below are only as sharp as the numbers are large: check they are."""
    _, ev, _, _ = pinned
    assert ev["discrete"]["mutual_information"] > 0.3
    assert ev["continuous"]["mutual_information_sum"] > 2.0
    assert ev["mig"]["z_only"]["score"] > 0.02 and ev["mig"]["with_y"]["score"] > 0.02
    # the two reconstruction NLLs differ by far more than the tolerance that tells them apart
    assert abs(ev["reconstruction"]["nll_sampled"] - ev["reconstruction"]["nll_mean_code"]) > 0.5


def test_pinned_discrete_code_and_accuracy(pinned, toy):
    _, ev, test, _ = pinned
    p = test.probs.double().numpy()
    marginal = p.mean(0)
    h_y = _entropy(marginal)
    h_y_x = float(np.mean([_entropy(row) for row in p]))
    d = ev["discrete"]
    assert d["entropy"] == pytest.approx(h_y, abs=1e-9)
    assert d["conditional_entropy"] == pytest.approx(h_y_x, abs=1e-9)
    assert d["mutual_information"] == pytest.approx(h_y - h_y_x, abs=1e-9)
    assert d["log_k"] == pytest.approx(math.log(K2), abs=1e-15)
    assert d["category_frequencies"] == pytest.approx(marginal.tolist(), abs=1e-9)
    pred, labels = p.argmax(1), toy.test.labels.numpy()
    confusion = [[int(np.sum((pred == c) & (labels == l))) for l in range(3)] for c in range(3)]
    assert ev["accuracy"]["confusion"] == confusion
    best = max(itertools.permutations(range(3)), key=lambda m: sum(confusion[c][m[c]] for c in range(3)))
    assert ev["accuracy"]["accuracy"] == pytest.approx(sum(confusion[c][best[c]] for c in range(3)) / len(labels))
    assert ev["accuracy"]["matching"] == list(best)
    mi = _count_information(pred, labels)
    assert ev["accuracy"]["nmi"] == pytest.approx(mi / (0.5 * (_entropy(np.bincount(pred) / len(pred))
                                                                 + _entropy(np.bincount(labels) / len(labels)))))


def test_pinned_reconstruction_and_posterior_kls(pinned, toy):
    model, ev, test, _ = pinned
    n = len(toy.test)
    draws = _replay_draws(PIN["seed"], n, len(toy.train), K1, K2, PIN["entropy_samples"], PIN["mig_samples"])
    x = toy.test.get_batch(torch.arange(n)).x.double().numpy()
    mu, sigma = test.mu.double().numpy(), test.sigma.double().numpy()
    logits = test.logits.double().numpy()

    def nll(y: np.ndarray, z: np.ndarray) -> float:
        with torch.no_grad():
            l = model.decoder.head(model.decoder.body(torch.cat([torch.tensor(y), torch.tensor(z)], 1).float()))
        l = l.double().numpy()
        # -log Bernoulli(x; sigmoid(l)) = log(1 + e^l) - x l, summed over pixels, averaged over images
        return float(np.mean(np.sum(np.logaddexp(0.0, l) - x * l, axis=1)))

    gumbel = -np.log(-np.log(draws["u"]))
    y_relaxed = scipy.special.softmax((logits + gumbel) / model.temperature, axis=1)
    r = ev["reconstruction"]
    assert r["nll_sampled"] == pytest.approx(nll(y_relaxed, mu + sigma * draws["eps"]), rel=1e-6)
    y_star = np.eye(K2)[logits.argmax(1)]
    assert r["nll_mean_code"] == pytest.approx(nll(y_star, mu), rel=1e-6)
    s = r["prior_scale"]
    kl_z = np.mean(np.sum(np.log(s / sigma) + (sigma ** 2 + mu ** 2) / (2 * s * s) - 0.5, axis=1))
    assert r["kl_z"] == pytest.approx(kl_z, rel=1e-7)
    p = np.exp(logits)
    kl_y = np.mean([sum(pc * math.log(pc * K2) for pc in row if pc > 0) for row in p])  # KL(p(y|x) || U(K2))
    assert r["kl_y"] == pytest.approx(kl_y, rel=1e-6, abs=1e-9)


def test_pinned_continuous_information_and_total_correlation(pinned, toy):
    _, ev, test, _ = pinned
    n = len(toy.test)
    draws = _replay_draws(PIN["seed"], n, len(toy.train), K1, K2, PIN["entropy_samples"], PIN["mig_samples"])
    mu, sigma = test.mu.double().numpy(), test.sigma.double().numpy()
    picks, noise = draws["picks"], draws["noise"]
    z = mu[picks] + sigma[picks] * noise                                   # [S, K]
    own = _log_normal(z, mu[picks], sigma[picks])                          # log q(z_sk | x_s)
    dens = _log_normal(z[:, None, :], mu[None], sigma[None])              # [S, M, K]
    log_qk = scipy.special.logsumexp(dens, axis=1) - math.log(n)          # log q(z_sk)
    log_q = scipy.special.logsumexp(dens.sum(-1), axis=1) - math.log(n)   # log q(z_s)
    h_k = -log_qk.mean(0)
    info_k = (own - log_qk).mean(0)
    h_joint = -log_q.mean()
    c = ev["continuous"]
    assert c["samples"] == PIN["entropy_samples"] and c["mixture_size"] == n
    for k, d in enumerate(c["dimensions"]):
        assert d["index"] == k
        assert d["mutual_information"] == pytest.approx(info_k[k], abs=2e-5), k
        assert d["entropy"] == pytest.approx(h_k[k], abs=2e-5), k
        assert d["conditional_entropy"] == pytest.approx(np.mean(0.5 * np.log(2 * np.pi * np.e * sigma[:, k] ** 2)),
                                                         abs=1e-9)
        e_var, var_mu = np.mean(sigma[:, k] ** 2), np.var(mu[:, k])
        assert d["mean_posterior_variance"] == pytest.approx(e_var, rel=1e-9)
        assert d["variance_of_means"] == pytest.approx(var_mu, rel=1e-9)
        assert d["lower_bound"] == pytest.approx(0.5 * math.log(1 + var_mu / e_var), rel=1e-9)        # eq. 5
        assert d["upper_bound"] == pytest.approx(0.5 * math.log(e_var + var_mu)
                                                 - 0.5 * np.mean(np.log(sigma[:, k] ** 2)), rel=1e-9)  # eq. 4
    assert c["order"] == sorted(range(K1), key=lambda k: -info_k[k])
    assert c["mutual_information_sum"] == pytest.approx(info_k.sum(), abs=1e-4)
    assert c["mutual_information_joint"] == pytest.approx(np.mean(own.sum(1) - log_q), abs=1e-4)
    assert c["lower_bound_sum"] == pytest.approx(sum(d["lower_bound"] for d in c["dimensions"]), rel=1e-12)
    assert c["upper_bound_sum"] == pytest.approx(sum(d["upper_bound"] for d in c["dimensions"]), rel=1e-12)
    tc = ev["total_correlation"]
    assert tc["joint_entropy"] == pytest.approx(h_joint, abs=1e-4)
    assert tc["sum_of_marginal_entropies"] == pytest.approx(h_k.sum(), abs=1e-4)
    assert tc["value"] == pytest.approx(h_k.sum() - h_joint, abs=1e-4)
    assert abs(tc["value"]) > 0.05  # a real correlation, so the check above is sharp
    assert tc["samples"] == PIN["entropy_samples"] and tc["mixture_size"] == n


def test_pinned_migs(pinned, toy):
    _, ev, _, train = pinned
    n = len(toy.train)
    draws = _replay_draws(PIN["seed"], len(toy.test), n, K1, K2, PIN["entropy_samples"], PIN["mig_samples"])
    mu, sigma = train.mu.double().numpy(), train.sigma.double().numpy()
    probs = train.probs.double().numpy()
    factors = toy.train.factors.numpy()
    names = list(toy.train.factor_names)
    picks = draws["mig_picks"]
    z = mu[picks] + sigma[picks] * draws["mig_noise"]
    dens = _log_normal(z[:, None, :], mu[None], sigma[None])              # [S, N, K]
    h_k = -(scipy.special.logsumexp(dens, axis=1) - math.log(n)).mean(0)
    entropies = {f: _entropy(np.bincount(factors[:, j]) / n) for j, f in enumerate(names)}
    sampled: dict[str, dict[str, float]] = {f: {} for f in names}
    for j, f in enumerate(names):
        cond = np.zeros(K1)
        for s in range(len(picks)):                   # each sample against the points sharing its factor value
            same = factors[:, j] == factors[picks[s], j]
            cond -= scipy.special.logsumexp(dens[s, same, :], axis=0) - math.log(same.sum())
        for k in range(K1):
            sampled[f][f"z{k}"] = h_k[k] - cond[k] / len(picks)
        cond_y = sum(np.mean(factors[:, j] == v) * _entropy(probs[factors[:, j] == v].mean(0))
                     for v in set(factors[:, j].tolist()))
        sampled[f]["y"] = _entropy(probs.mean(0)) - cond_y                # exact I(y; v_j)
    m = ev["mig"]
    assert m["points"] == n and m["samples"] == PIN["mig_samples"] and m["split"] == "train"
    assert m["mutual_information"]["factor_entropies"] == pytest.approx([entropies[f] for f in names], abs=1e-12)
    assert m["marginal_entropies"] == pytest.approx(h_k.tolist(), abs=2e-5)
    latents = m["mutual_information"]["latents"]
    assert latents == [f"z{k}" for k in range(K1)] + ["y"]
    for li, name in enumerate(latents):
        for j, f in enumerate(names):
            assert m["mutual_information"]["nats"][li][j] == pytest.approx(sampled[f][name], abs=2e-5), (name, f)
    z_only = ["posY", "posX"]   # shape is the label: left out of the z-only MIG, with y
    _check_gap_block(m["z_only"], _gap_block({f: {k: v for k, v in sampled[f].items() if k != "y"} for f in z_only},
                                             {f: entropies[f] for f in z_only}, clamp=True), atol=5e-5)
    _check_gap_block(m["with_y"], _gap_block(sampled, entropies, clamp=True), atol=5e-5)

    bins = m["histogram"]["bins"]
    codes = {f"z{k}": _histogram_codes(train.mu[:, k].double().numpy(), bins) for k in range(K1)}
    codes["y"] = probs.argmax(1)
    hist = {f: {name: _count_information(codes[name], factors[:, j]) for name in codes} for j, f in enumerate(names)}
    h = m["histogram"]
    for li, name in enumerate(h["mutual_information"]["latents"]):
        for j, f in enumerate(names):
            assert h["mutual_information"]["nats"][li][j] == pytest.approx(hist[f][name], abs=1e-9), (name, f)
    _check_gap_block(h["z_only"], _gap_block({f: {k: v for k, v in hist[f].items() if k != "y"} for f in z_only},
                                             {f: entropies[f] for f in z_only}, clamp=False), atol=1e-9)
    _check_gap_block(h["with_y"], _gap_block(hist, entropies, clamp=False), atol=1e-9)


# -- [eval] metrics: the registry route, validation, and metrics the data cannot serve ----------------------

NO_FACTORS_PLUGIN = '''
import attrs
from imae_kit import register_dataset
from imae_kit.data.base import DataSplits, TensorImages
from imae_kit.data.toy import render_toy

@register_dataset("toy_no_factors")
@attrs.frozen
class ToyNoFactors:
    """The toy glyphs with their labels but no ground-truth factors (as MNIST)."""
    def load(self):
        images, factors = render_toy()
        data = TensorImages(images=images, labels=factors[:, 0], num_classes=3)
        return DataSplits(train=data, test=data, description="toy glyphs without factors")
'''


@pytest.fixture(scope="module")
def no_factors_plugin(tmp_path_factory) -> Path:
    """One file for the whole module: a plugin registers its entries once per path."""
    path = tmp_path_factory.mktemp("plugins") / "no_factors.py"
    path.write_text(NO_FACTORS_PLUGIN)
    return path


def _recipe_with_eval(tmp_path, plugin: Path, eval_text: str, data: str = "toy_shapes") -> Path:
    from conftest import MINIMAL_RECIPE

    text = MINIMAL_RECIPE.replace('description = "a small recipe for tests"',
                                  f'description = "a small recipe for tests"\nplugins = ["{plugin}"]')
    text = text.replace('name = "toy_shapes"', f'name = "{data}"') + "\n[eval]\n" + eval_text + "\n"
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    return path


def test_default_metrics_are_the_paper_measurements_and_keep_every_key(bn_model_result):
    _, _, ev = bn_model_result
    from imae_kit.metrics.settings import DEFAULT_METRICS

    assert list(ev["metrics"]) == list(DEFAULT_METRICS) and ev["settings"]["metrics"] is None
    for key in ("settings", "data", "model", "environment", "discrete", "accuracy", "continuous",
                "total_correlation", "reconstruction", "mig", "figures", "timings", "train_seconds", "recipe_line"):
        assert key in ev, key


def test_metrics_run_in_the_order_listed_with_their_params(toy, tmp_path):
    settings = EvalSettings(**FAST, metrics=["discrete", {"name": "factor_vae", "label": "fvae_small",
                                                           "params": {"train_votes": 50, "eval_votes": 20}}])
    ev = evaluate(small_model(), toy, out_dir=tmp_path, settings=settings, progress=False)
    assert ev["metrics"] == {"discrete": "discrete", "fvae_small": "factor_vae"}
    assert "continuous" not in ev and "mig" not in ev
    assert sum(map(sum, ev["fvae_small"]["votes"])) == 50
    assert ev["settings"]["metrics"][1] == {"name": "factor_vae", "label": "fvae_small",
                                            "params": {"train_votes": 50, "eval_votes": 20}}
    assert [n for n, _ in headline(ev)] == ["I(x;y) nats", "H(y) nats", "H(y|x) nats",
                                            "FactorVAE score (Kim & Mnih)", "evaluation seconds"]


@pytest.mark.parametrize("metrics, expected", [
    (["dcii"], "unknown metric 'dcii'; did you mean 'dci'?"),
    ([{"name": "sap", "params": {"train_pionts": 5}}], "has no parameter 'train_pionts'; did you mean 'train_points'?"),
    ([{"name": "sap", "params": {"classifier": "svm"}}], "must be one of ['thresholds', 'linear_svc']"),
    (["mig", "mig"], "two metrics are labelled 'mig'"),
    ([{"name": "dci", "label": "figures"}], "cannot be labelled 'figures'"),
    ([3], "metric name or a table"),
])
def test_bad_metric_requests_are_refused(metrics, expected):
    with pytest.raises((TypeError, ValueError), match=re.escape(expected)):
        EvalSettings(metrics=metrics)


def test_unknown_metric_in_a_recipe_is_a_placed_error_with_exit_2_and_nothing_written(tmp_path, no_factors_plugin):
    from conftest import invoke_cli

    recipe = _recipe_with_eval(tmp_path, no_factors_plugin, 'metrics = ["accuracy", "dcii"]')
    result = invoke_cli("run", recipe, "--out", tmp_path / "out", "-q")
    assert result.exit_code == 2, result.output
    assert "recipe.toml: [eval]" in result.output and "'metrics'" in result.output
    assert "unknown metric 'dcii'; did you mean 'dci'?" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_mig_false_contradicting_an_explicit_mig_is_refused():
    with pytest.raises(ValueError, match="'mig' = false but 'metrics' lists"):
        EvalSettings(mig=False, metrics=["mig"])
    assert EvalSettings(mig=False).requests()[-1].name == "mig"   # the default keeps its (null) block


def test_a_factor_metric_asked_for_on_data_without_factors_is_refused(tmp_path, no_factors_plugin):
    from conftest import invoke_cli

    recipe = _recipe_with_eval(tmp_path, no_factors_plugin, 'metrics = ["accuracy", { name = "dci", params = { trees = 5 } }]',
                               data="toy_no_factors")
    trained = invoke_cli("run", recipe, "--out", tmp_path / "run", "--steps", "3", "--no-eval", "-q")
    assert trained.exit_code == 0, trained.output
    before = sorted(p.name for p in (tmp_path / "run").iterdir())
    result = invoke_cli("eval", tmp_path / "run", "-q")
    assert result.exit_code == 2, result.output
    assert "[eval] metrics asks for 'dci', which needs ground-truth factors" in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == before   # no eval.json, report.md, figures/
    # the defaults skip the factor metrics silently on the same data
    (tmp_path / "run" / "recipe.toml").write_text(
        (tmp_path / "run" / "recipe.toml").read_text().replace("[eval]", "[eval_unused]").split("[eval_unused]")[0])
    ok = invoke_cli("eval", tmp_path / "run", "-q")
    assert ok.exit_code == 0, ok.output
    ev = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert ev["mig"] is None and ev["accuracy"] is not None


def test_run_refuses_an_unservable_metric_before_training(tmp_path, no_factors_plugin):
    """`imae-kit run` checks the [eval] metrics against the data before the run directory exists."""
    from conftest import invoke_cli

    recipe = _recipe_with_eval(tmp_path, no_factors_plugin, 'metrics = ["accuracy", { name = "dci", params = { trees = 5 } }]',
                               data="toy_no_factors")
    result = invoke_cli("run", recipe, "--out", tmp_path / "run", "--steps", "3", "-q")
    assert result.exit_code == 2, result.output
    assert "[eval] metrics asks for 'dci', which needs ground-truth factors" in " ".join(result.output.split())
    assert not (tmp_path / "run").exists()


def test_evaluate_refuses_before_writing_anything(tmp_path):
    images = torch.rand(30, 12, 12) > 0.5
    data = TensorImages(images=images)
    splits = DataSplits(train=data, test=data, description="random pixels")
    with pytest.raises(RecipeError, match="needs class labels"):
        evaluate(small_model(), splits, out_dir=tmp_path / "ev", settings=EvalSettings(metrics=["accuracy"]),
                 progress=False)
    assert not (tmp_path / "ev").exists()
