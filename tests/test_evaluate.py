"""evaluate(): eval.json numbers against independent computations, report.md, settings, determinism."""

from __future__ import annotations

import itertools
import json
import math

import attrs
import pytest
import torch

from imae_kit.data.base import DataSplits, TensorImages
from imae_kit.data.toy import ToyShapes
from imae_kit.evaluation import evaluate
from imae_kit.metrics.settings import EvalSettings
from imae_kit.report import headline, report_markdown

from test_figures import small_model

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
