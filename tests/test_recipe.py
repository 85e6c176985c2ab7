"""Recipe loading: vars, overrides, schedules, validation errors, TOML round trip, the shipped recipes."""

from __future__ import annotations

import itertools
import re

import pytest

from imae_kit.errors import PluginError, RecipeError
from imae_kit.recipe import Schedule, dump_toml, load_recipe, parse_recipe

from conftest import MINIMAL_RECIPE, RECIPES, TOY_OVERRIDES


def test_minimal_recipe_loads_with_vars_substituted(write_recipe):
    r = load_recipe(write_recipe())
    assert r.name == "toy"
    weights = {t.label: t.weight.at(0) for t in r.objective.terms}
    assert weights == {"reconstruction": 1.0, "marginal_kl": 2.0, "discrete_mi": 0.0}
    assert [t.monitored_only for t in r.objective.terms] == [False, False, True]
    assert r.train.steps == 30 and r.train.epochs is None
    assert r.model.encoder.params == {"hidden": [32]}


def test_arithmetic_vars_and_overrides_change_dependent_weights():
    text = MINIMAL_RECIPE.replace('weight = "${beta}"', 'weight = "${2 * beta + 1}"')
    r = parse_recipe(text)
    assert r.objective.terms[1].weight.value == 5.0
    r = parse_recipe(text, overrides=["vars.beta=4"])
    assert r.objective.terms[1].weight.value == 9.0


def test_override_by_term_label_index_and_new_key():
    r = parse_recipe(MINIMAL_RECIPE, overrides=["objective.terms.marginal_kl.weight=7",
                                                "objective.terms.0.weight=0.5", "train.seed=3",
                                                'objective.terms.marginal_kl.params={ estimator = "mss" }'])
    assert r.objective.terms[1].weight.value == 7.0
    assert r.objective.terms[0].weight.value == 0.5
    assert r.train.seed == 3
    assert r.objective.terms[1].params == {"estimator": "mss"}


def test_steps_replaces_epochs():
    text = MINIMAL_RECIPE.replace("steps = 30", "epochs = 2")
    r = parse_recipe(text, steps=11)
    assert r.train.steps == 11 and r.train.epochs is None


@pytest.mark.parametrize(
    "weight, expected",
    [
        ("3.0", [3.0, 3.0, 3.0, 3.0]),
        ('{ schedule = "linear_warmup", value = 4.0, steps = 100 }', [0.0, 2.0, 4.0, 4.0]),
        ('{ schedule = "linear", start = 1.0, end = 3.0, from_step = 50, to_step = 150 }', [1.0, 1.0, 3.0, 3.0]),
    ],
)
def test_weight_schedules(weight, expected):
    text = MINIMAL_RECIPE.replace('weight = "${beta}"', f"weight = {weight}")
    sched = parse_recipe(text).objective.terms[1].weight
    assert [sched.at(s) for s in (0, 50, 150, 1000)] == pytest.approx(expected)


def test_epoch_schedule_is_the_step_schedule_of_the_runs_own_epochs():
    """linear_epochs at 240 steps an epoch gives, at every step, the weight of linear at the same steps; at 96
    steps an epoch the same epochs; unresolved it refuses to guess."""
    text = MINIMAL_RECIPE.replace('weight = "${beta}"', 'weight = { schedule = "linear_epochs", start = 0.5, '
                                                          'end = 5.0, from_epoch = 10, to_epoch = 20 }')
    epochs = parse_recipe(text).objective.terms[1].weight
    assert epochs.describe() == "linear(0.5->5, epochs 10-20)" and not epochs.always_zero
    with pytest.raises(RuntimeError, match="in_steps"):
        epochs.at(0)
    steps = Schedule(kind="linear", start=0.5, end=5.0, from_step=2400, to_step=4800)
    at_240 = epochs.in_steps(240)
    assert [at_240.at(k) for k in range(0, 6001)] == [steps.at(k) for k in range(0, 6001)]
    at_96 = epochs.in_steps(96)
    assert [at_96.at(k) for k in (0, 960, 1440, 1920, 5000)] == pytest.approx([0.5, 0.5, 2.75, 5.0, 5.0])
    assert Schedule(kind="constant", value=2.0).in_steps(7) == Schedule(kind="constant", value=2.0)


def test_epoch_schedule_errors():
    bad = '{ schedule = "linear_epochs", start = 0.0, end = 3.0, from_epoch = 5, to_epoch = 5 }'
    assert "'to_epoch' (5) must be greater than 'from_epoch' (5)" in _error(
        MINIMAL_RECIPE.replace('weight = "${beta}"', f"weight = {bad}"))
    steps_key = '{ schedule = "linear_epochs", start = 0.0, end = 3.0, from_step = 5, to_epoch = 9 }'
    assert "from_step" in _error(MINIMAL_RECIPE.replace('weight = "${beta}"', f"weight = {steps_key}"))
    hidden = '{ schedule = "linear_epochs", start = 0.0, end = 3.0, from_epoch = 1, to_epoch = 2, steps_per_epoch = 3 }'
    assert "steps_per_epoch" in _error(MINIMAL_RECIPE.replace('weight = "${beta}"', f"weight = {hidden}"))


def test_linear_schedule_midpoint_is_exact():
    s = Schedule(kind="linear", start=0.0, end=10.0, from_step=100, to_step=200)
    assert s.at(125) == pytest.approx(2.5)
    assert not s.always_zero and Schedule(kind="constant", value=0.0).always_zero


def test_resolved_recipe_round_trips_through_toml(write_recipe):
    r = load_recipe(write_recipe(), overrides=["vars.beta=3"])
    again = parse_recipe(dump_toml(r.resolved))
    assert again.resolved == r.resolved
    assert again.objective.terms[1].weight.value == 3.0


# --------------------------------------------------------------------------- errors that name place and fix

def _error(text: str, **kw) -> str:
    with pytest.raises(RecipeError) as info:
        parse_recipe(text, source="r.toml", **kw)
    return str(info.value)


def test_unknown_key_names_section_line_and_nearest():
    msg = _error(MINIMAL_RECIPE.replace("lr = 0.003", "lr_decy = 0.9"))
    assert msg.startswith("r.toml: [train]")
    line = MINIMAL_RECIPE.splitlines().index("lr = 0.003") + 1
    assert f"(line {line})" in msg
    assert "did you mean 'lr_decay'" in msg and "valid keys:" in msg


def test_unknown_section():
    msg = _error(MINIMAL_RECIPE + "\n[traning]\nx = 1\n")
    assert "unknown key 'traning'" in msg and "did you mean 'train'" in msg


def test_unknown_term_suggests_nearest():
    msg = _error(MINIMAL_RECIPE.replace('name = "marginal_kl"', 'name = "marginal_k"'))
    assert "[[objective.terms]] #2" in msg and "unknown term 'marginal_k'" in msg
    assert "did you mean 'marginal_kl'" in msg


def test_term_param_of_wrong_type_and_unknown_param():
    msg = _error(MINIMAL_RECIPE.replace('weight = "${beta}"', 'weight = 1.0\nparams = { scale = "wide" }'))
    assert "marginal_kl" in msg and "scale" in msg
    msg = _error(MINIMAL_RECIPE.replace('weight = "${beta}"', 'weight = 1.0\nparams = { scal = 2.0 }'))
    assert "has no parameter 'scal'" in msg and "did you mean 'scale'" in msg


def test_wrong_types_in_sections():
    assert "'batch_size' must be an integer" in _error(MINIMAL_RECIPE.replace("batch_size = 49", 'batch_size = "big"'))
    assert "'weight' must be a number" in _error(MINIMAL_RECIPE.replace('weight = "${beta}"', "weight = true"))
    assert "expected a list of integers" in _error(MINIMAL_RECIPE.replace("hidden = [32]", 'hidden = "wide"', 1))
    assert "'optimizer' must be one of" in _error(MINIMAL_RECIPE.replace('"adam"', '"adamw"'))
    assert "'latent_discrete' must be >= 2" in _error(MINIMAL_RECIPE.replace("latent_discrete = 3", "latent_discrete = 1"))


def test_budget_and_schedule_errors():
    assert "set a budget" in _error(MINIMAL_RECIPE.replace("steps = 30\n", ""))
    assert "not both" in _error(MINIMAL_RECIPE.replace("steps = 30", "steps = 30\nepochs = 2"))
    bad = '{ schedule = "linear", start = 1.0, end = 3.0, from_step = 50, to_step = 10 }'
    assert "'to_step' (10) must be greater" in _error(MINIMAL_RECIPE.replace('weight = "${beta}"', f"weight = {bad}"))
    assert "must be one of" in _error(MINIMAL_RECIPE.replace('weight = "${beta}"', 'weight = { schedule = "cosine" }'))


def test_syntax_error_and_missing_section():
    assert "TOML syntax error" in _error(MINIMAL_RECIPE + "\n[broken\n")
    assert "missing section [train]" in _error(MINIMAL_RECIPE.split("[train]")[0])


def test_undefined_var_and_bad_expression():
    msg = _error(MINIMAL_RECIPE.replace("${beta}", "${betta}"))
    assert "undefined var 'betta'" in msg and "did you mean 'beta'" in msg
    assert "only var names, numbers" in _error(MINIMAL_RECIPE.replace("${beta}", "${__import__('os')}"))


def test_duplicate_labels_are_refused():
    msg = _error(MINIMAL_RECIPE.replace('monitor = ["discrete_mi"]', 'monitor = ["marginal_kl"]'))
    assert "two terms are labelled 'marginal_kl'" in msg


def test_override_errors():
    with pytest.raises(RecipeError, match="expected PATH=VALUE"):
        parse_recipe(MINIMAL_RECIPE, overrides=["train.lr"])
    with pytest.raises(RecipeError, match="did you mean 'marginal_kl'"):
        parse_recipe(MINIMAL_RECIPE, overrides=["objective.terms.marginal.weight=1"])


def test_missing_and_raising_plugins(tmp_path, write_recipe):
    p = write_recipe(MINIMAL_RECIPE.replace('description', 'plugins = ["nowhere.py"]\ndescription'))
    with pytest.raises(RecipeError, match=r"plugin file 'nowhere.py' not found"):
        load_recipe(p)
    (tmp_path / "boom.py").write_text("x = 1\nraise RuntimeError('boom at import')\n")
    p = write_recipe(MINIMAL_RECIPE.replace('description', 'plugins = ["boom.py"]\ndescription'))
    with pytest.raises(PluginError) as info:
        load_recipe(p)
    assert "boom.py" in str(info.value) and "RuntimeError" in str(info.value) and "(line 2)" in str(info.value)


def test_missing_recipe_file(tmp_path):
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "nope.toml")


# --------------------------------------------------------------------------- the shipped recipes

METHODS = ("imae", "beta_vae", "infovae", "jointvae")
DATASETS = ("mnist", "fashion_mnist", "dsprites")


def test_twelve_recipes_exist_and_load():
    for method, data in itertools.product(METHODS, DATASETS):
        r = load_recipe(RECIPES / f"{method}_{data}.toml")
        assert r.name == f"{method}_{data}"
        labels = [t.label for t in r.objective.terms]
        assert "vat" in labels and "reconstruction" in labels
        assert any(t.name == "vat" and not t.weight.always_zero for t in r.objective.terms), "VAT on y everywhere"


@pytest.mark.parametrize("data", DATASETS)
def test_recipes_of_a_dataset_differ_only_in_objective(data):
    resolved = {m: dict(load_recipe(RECIPES / f"{m}_{data}.toml").resolved) for m in METHODS}
    for m in METHODS:
        for key in ("objective", "name", "description", "plugins"):
            resolved[m].pop(key, None)
    first = resolved[METHODS[0]]
    for m in METHODS[1:]:
        assert resolved[m] == first, f"{m}_{data} differs from imae_{data} outside [objective]"


def test_conv_recipes_differ_only_in_objective_which_is_the_mlp_recipes_own():
    """recipes/conv/: the four methods on dSprites with the conv pair; among themselves they differ only in
    [objective], and each one's [objective] (and everything but [model]) is its recipes/*_dsprites.toml's."""
    conv = {m: dict(load_recipe(RECIPES / "conv" / f"{m}_dsprites.toml").resolved) for m in METHODS}
    mlp = {m: dict(load_recipe(RECIPES / f"{m}_dsprites.toml").resolved) for m in METHODS}
    for m in METHODS:
        assert conv[m]["name"] == f"{m}_dsprites_conv"
        assert conv[m]["model"]["encoder"]["body"] == conv[m]["model"]["decoder"]["body"] == "conv"
        assert conv[m]["objective"] == mlp[m]["objective"], f"conv/{m}_dsprites has another objective"
        for key in ("vars", "data", "train", "eval"):
            assert conv[m].get(key) == mlp[m].get(key), f"conv/{m}_dsprites differs from {m}_dsprites in [{key}]"
        for key in ("objective", "name", "description", "plugins"):
            conv[m].pop(key, None)
    for m in METHODS[1:]:
        assert conv[m] == conv[METHODS[0]], f"conv/{m}_dsprites differs from conv/imae_dsprites outside [objective]"


@pytest.mark.parametrize("data", DATASETS)
def test_imae_weights_tc_at_twice_beta(data):
    r = load_recipe(RECIPES / f"imae_{data}.toml")
    w = {t.name: t.weight.in_steps(240).at(10**6) for t in r.objective.terms if not t.weight.always_zero}
    beta = r.vars["beta"]
    vat = 2.5 * beta if data == "mnist" else beta  # MNIST weights VAT as IMSAT does (README, "Defaults ...")
    assert w == pytest.approx({"reconstruction": 1.0, "discrete_mi": beta, "vat": vat,
                               "marginal_kl": beta, "total_correlation": 2 * beta})
    if data == "mnist":  # the z terms start late on MNIST: 0 for 10 epochs, ramped in over the next 10
        z = {t.name: t.weight.in_steps(240) for t in r.objective.terms  # 60,000 images, batch 250
             if t.name in ("marginal_kl", "total_correlation")}
        assert [z["marginal_kl"].at(s) for s in (0, 2400, 3600, 4800)] == pytest.approx([0, 0, beta / 2, beta])
        assert [z["total_correlation"].at(s) for s in (0, 2400, 3600, 4800)] == pytest.approx([0, 0, beta, 2 * beta])
    mi = next(t for t in r.objective.terms if t.name == "discrete_mi").term
    assert mi.conditional_weight == (0.25 if data == "mnist" else 1.0)


def test_recipe_formula_reads_as_paper_eq10():
    r = load_recipe(RECIPES / "imae_fashion_mnist.toml", overrides=["vars.beta=5"])
    formula = r.objective_formula()
    assert re.sub(r"\s+", " ", formula) == (
        "maximise reconstruction + 5 * discrete_mi - 5 * vat - 5 * marginal_kl - 10 * total_correlation")
    mnist = load_recipe(RECIPES / "imae_mnist.toml", overrides=["vars.beta=5"]).objective_formula()
    assert re.sub(r"\s+", " ", mnist) == (
        "maximise reconstruction + 5 * discrete_mi - 12.5 * vat - linear(0->5, epochs 10-20) * marginal_kl"
        " - linear(0->10, epochs 10-20) * total_correlation")


def test_toy_overrides_apply_to_every_recipe():
    for method, data in itertools.product(METHODS, DATASETS):
        r = load_recipe(RECIPES / f"{method}_{data}.toml", overrides=TOY_OVERRIDES)
        assert r.data.name == "toy_shapes" and r.model.encoder.params["hidden"] == [64]


@pytest.mark.parametrize("data", ["dsprites", "mnist"])
def test_beta_tcvae_recipes_differ_from_imae_only_in_objective_and_weight_tc_at_beta(data):
    resolved = {m: dict(load_recipe(RECIPES / f"{m}_{data}.toml").resolved) for m in ("imae", "beta_tcvae")}
    for m in resolved:
        for key in ("objective", "name", "description", "plugins", "vars"):
            resolved[m].pop(key, None)
    assert resolved["beta_tcvae"] == resolved["imae"]
    r = load_recipe(RECIPES / f"beta_tcvae_{data}.toml")
    w = {t.name: t.weight.at(0) for t in r.objective.terms if not t.weight.always_zero}
    assert w == {"reconstruction": 1.0, "posterior_kl": 1.0, "total_correlation": 5.0, "vat": 6.0}
    assert [t.params for t in r.objective.terms if t.name == "total_correlation"] == [{"estimator": "mss"}]
