"""train.precision: bf16 networks under autocast with every term in fp32, VAT's product in bf16 (exact) or its
finite-difference probe in fp32, clear errors.

The bf16 tests run where the CPU has native bf16 (AMX-BF16 / AVX512-BF16, as this project's machines do)
and are skipped elsewhere; the error tests run everywhere.
"""

from __future__ import annotations

import json
import math

import attrs
import pytest
import torch

from imae_kit import precision as P
from imae_kit.denormals import denormal_mode
from imae_kit.errors import RecipeError, RunError
from imae_kit.evaluation import evaluate
from imae_kit.metrics.settings import EvalSettings
from imae_kit.recipe import load_recipe
from imae_kit.runs import RunDir
from imae_kit.training import Trainer

from conftest import RECIPES, TOY_OVERRIDES, invoke_cli

native = pytest.mark.skipif(not P.cpu_has_native_bf16(), reason="this CPU has no native bf16")


def _trainer(tmp_path, precision: str, steps: int = 50, name: str = "run", *extra: str) -> Trainer:
    recipe = load_recipe(RECIPES / "imae_mnist.toml",
                         overrides=[*TOY_OVERRIDES, f'train.precision="{precision}"', *extra], steps=steps)
    return Trainer(recipe, RunDir.create("t", out=tmp_path / name), progress=False)


def _same_weights(a: Trainer, b: Trainer) -> None:
    b.model.load_state_dict(a.model.state_dict())


@native
def test_every_term_agrees_between_fp32_and_bf16_on_the_same_batch(tmp_path, one_thread):
    """Same weights, same batch, same random draws: each term's value within bf16's rounding of the networks."""
    fp32, bf16 = _trainer(tmp_path, "fp32", name="a"), _trainer(tmp_path, "bf16", name="b")
    _same_weights(fp32, bf16)
    x = fp32.train_set.get_batch(torch.arange(49)).x
    outs = []
    for trainer in (fp32, bf16):
        torch.manual_seed(3)
        outs.append(trainer.forward(x, 100, log=True, index=torch.arange(49)).records)
    assert outs[0].keys() == outs[1].keys() and len(outs[0]) >= 6
    for label in outs[0]:
        a, b = outs[0][label].value, outs[1][label].value
        # networks in bf16 (8-bit mantissa): about 1% of a term's size; VAT is a KL at a perturbation whose
        # direction both find identically, so it differs only by the bf16 rounding of its final pass
        assert abs(a - b) <= 0.02 * abs(a) + 0.02, (label, a, b)
    posterior = bf16.make_step(x, 0).posterior
    assert posterior.mu.dtype == posterior.logits.dtype == torch.float32, "the terms read fp32 tensors"


@native
def test_the_encoder_head_runs_in_fp32_on_the_bf16_body(tmp_path, one_thread):
    """Under bf16 the posterior's parameters are the fp32 head applied to the bf16 body's output (the same
    product computed here outside autocast), not a bf16 head's output rounded to 8 bits."""
    trainer = _trainer(tmp_path, "bf16")
    encoder = trainer.model.encoder
    x = trainer.train_set.get_batch(torch.arange(49)).x
    with torch.no_grad(), P.step_autocast("cpu", torch.bfloat16):
        posterior = trainer.model.encode(x)
        body = encoder.body(x)
    assert body.dtype == torch.bfloat16, "the body itself runs in bf16"
    want = torch.nn.functional.linear(body.float(), encoder.head.weight, encoder.head.bias)
    k1 = encoder.latent_continuous
    assert torch.equal(posterior.mu, want[:, :k1])
    assert torch.allclose(posterior.sigma, want[:, k1:2 * k1].clamp(-9.0, 5.0).exp(), rtol=1e-6)
    assert torch.allclose(posterior.logits, torch.log_softmax(want[:, 2 * k1:], dim=-1), atol=1e-6)
    rounded = posterior.mu.bfloat16().float()
    assert (posterior.mu != rounded).float().mean() > 0.9, "a bf16 head's mu would all be representable in bf16"


@native
def test_fp32_and_bf16_runs_learn_alike(tmp_path, one_thread):
    """Over 300 steps both losses fall by the same amount, to within a few percent of each other."""
    results = {}
    for precision in ("fp32", "bf16"):
        trainer = _trainer(tmp_path, precision, 300, precision, "train.log_every=300")
        result = trainer.run()
        first = trainer.rd.read_metrics()[0]["loss"]
        results[precision] = (first, result.final["loss"])
        assert trainer.rd.read_status()["precision"] == precision
    (f0, f1), (b0, b1) = results["fp32"], results["bf16"]
    assert f1 < 0.5 * f0 and b1 < 0.5 * b0, results
    assert abs(f1 - b1) <= 0.05 * abs(f1), results


@native
def test_vat_exact_product_in_bf16_finds_the_float64_direction(tmp_path, one_thread):
    """The default ``hvp = "exact"`` runs VAT's power method in bf16 (no fp32 pass): H d is a product of linear
    maps, so bf16 rounds it by about its own resolution. Its direction against the same product in float64:
    a median cosine above 0.99 per example, the same as the fp32 product's to within that rounding."""
    from imae_kit.terms.information import hessian_vector_product
    fp32, bf16 = _trainer(tmp_path, "fp32", name="a"), _trainer(tmp_path, "bf16", name="b")
    _same_weights(fp32, bf16)
    x = fp32.train_set.get_batch(torch.arange(49)).x  # training mode: BatchNorm's batch statistics, too
    d = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    with P.step_autocast("cpu", torch.bfloat16):
        got = hessian_vector_product(bf16.model.encode, x, d)
    fp32.model.double()
    truth = hessian_vector_product(fp32.model.encode, x.double(), d.double())
    cos = torch.nn.functional.cosine_similarity(got.double(), truth, dim=1)
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    assert cos.median() > 0.99 and cos.min() > 0.8, cos


@native
def test_vat_finite_difference_in_bf16_is_the_fp32_direction_and_a_bf16_probe_would_not_be(tmp_path, one_thread):
    """With ``hvp = "finite_difference"`` VAT's probe (xi = 1e-6) runs in fp32 under bf16: r_adv is the fp32
    model's. The control shows why: the same finite difference with bf16 networks loses much of the probe to
    rounding and finds another direction."""
    fp32, bf16 = _trainer(tmp_path, "fp32", name="a"), _trainer(tmp_path, "bf16", name="b")
    _same_weights(fp32, bf16)
    fp32.model.eval(), bf16.model.eval()
    x = fp32.train_set.get_batch(torch.arange(49)).x
    vat = fp32.objective.terms[[t.label for t in fp32.objective.terms].index("vat")].term
    vat = attrs.evolve(vat, hvp="finite_difference", xi=1e-6)  # Miyato's linearised probe (the MNIST recipe: xi = 10)
    with torch.no_grad(), P.step_autocast("cpu", torch.bfloat16):
        target_bf16 = bf16.model.encode(x).logits
    target_fp32 = fp32.model.encode(x).logits.detach()

    def direction(model, target, **kw):
        torch.manual_seed(9)
        with P.step_autocast("cpu", model.encoder.compute_dtype):
            r = vat.adversarial_perturbation(model.encode, x, target, **kw)
        return r / r.norm(dim=1, keepdim=True)

    want = direction(fp32.model, target_fp32)
    got = direction(bf16.model, target_bf16, exact_target=True)
    assert torch.allclose(got, want, atol=1e-5), "the fp32 probe gives the fp32 direction"
    torch.manual_seed(9)
    with P.step_autocast("cpu", torch.bfloat16):
        naive = vat._iterate(bf16.model.encode, x, target_bf16)  # the probe with bf16 networks
    naive = naive / naive.norm(dim=1, keepdim=True)
    agreement = (naive * want).sum(1).abs().mean()
    assert agreement < 0.8, float(agreement)  # the fp32 probe agrees to 1e-5; a random direction would to ~0.1


@native
def test_evaluation_in_bf16_moves_no_number_beyond_its_monte_carlo_spread(tmp_path, one_thread):
    """A trained toy model evaluated in fp32 (two evaluation seeds: their difference is the Monte-Carlo spread)
    and in bf16: every sampled number within 3 spreads (plus bf16 rounding), the exact ones within rounding."""
    trainer = _trainer(tmp_path, "fp32", 200, "run", "train.log_every=200")
    trainer.run()
    model, splits = trainer.model, trainer.splits
    settings = dict(entropy_samples=2000, mig_samples=1000, figures=False)
    runs = {}
    for name, precision, seed in (("a", "fp32", 0), ("b", "fp32", 1), ("c", "bf16", 0)):
        model.set_precision(precision)
        runs[name] = evaluate(model, splits, out_dir=tmp_path / name, settings=EvalSettings(seed=seed, **settings),
                              progress=False)
    model.set_precision("fp32")

    def numbers(ev):
        return {"nll_sampled": ev["reconstruction"]["nll_sampled"], "tc": ev["total_correlation"]["value"],
                "i_xz": ev["continuous"]["mutual_information_sum"], "mig": ev["mig"]["z_only"]["score"]}

    a, b, c = numbers(runs["a"]), numbers(runs["b"]), numbers(runs["c"])
    for key in a:
        spread = abs(a[key] - b[key])
        assert abs(c[key] - a[key]) <= 3 * spread + 0.01 * abs(a[key]) + 0.02, (key, a[key], b[key], c[key])
    exact = lambda ev: (ev["discrete"]["mutual_information"], ev["reconstruction"]["nll_mean_code"])  # noqa: E731
    for x32, x16 in zip(exact(runs["a"]), exact(runs["c"])):
        assert abs(x16 - x32) <= 0.01 * abs(x32) + 0.01
    assert abs(runs["c"]["accuracy"]["accuracy"] - runs["a"]["accuracy"]["accuracy"]) <= 0.02


def test_auto_picks_bf16_only_where_the_hardware_has_it(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: False)
    assert P.resolve_precision("auto", cpu) == "fp32"
    with pytest.raises(RunError, match=r"'bf16' but this CPU has neither AMX-BF16 nor AVX512-BF16.*auto.*fp32"):
        P.resolve_precision("bf16", cpu)
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: True)
    assert P.resolve_precision("auto", cpu) == "bf16" and P.resolve_precision("fp32", cpu) == "fp32"


def test_bf16_without_hardware_support_is_one_clear_line_and_exit_2(tmp_path, monkeypatch):
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: False)
    monkeypatch.chdir(tmp_path)
    result = invoke_cli("run", RECIPES / "imae_mnist.toml", *[a for o in TOY_OVERRIDES for a in ("--set", o)],
                        "--set", 'train.precision="bf16"', "--steps", "2", "--out", tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "auto" in result.output and "fp32" in result.output
    assert not (tmp_path / "run").exists(), "nothing written"


def test_an_unknown_precision_is_a_recipe_error_with_the_choices():
    with pytest.raises(RecipeError, match=r"\[train\].*'precision' must be one of \['fp32', 'bf16', 'auto'\]"):
        load_recipe(RECIPES / "imae_mnist.toml", overrides=['train.precision="fp16"'])


def test_show_and_run_json_say_which_precision_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: False)
    result = invoke_cli("show", RECIPES / "imae_dsprites.toml")
    assert result.exit_code == 0, result.output
    assert "precision" in result.output and "fp32 on this machine" in result.output
    trainer = _trainer(tmp_path, "auto", 3)
    trainer.run()
    status = json.loads((tmp_path / "run" / "run.json").read_text())
    assert status["precision"] == "fp32" and not math.isnan(trainer.step)
    assert status["denormals"] == denormal_mode()   # this process's (the CLI's own: tests/test_denormals.py)
