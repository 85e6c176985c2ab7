"""The command line: terms, show, compare, run; every user mistake is one clear line and exit status 2."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from imae_kit import registry

from conftest import MINIMAL_RECIPE, RECIPES, REPO, TOY_OVERRIDES

BUILTIN_TERMS = ("reconstruction", "discrete_mi", "vat", "marginal_kl", "total_correlation",
                 "posterior_kl", "aggregate_kl", "capacity_kl")


def _wide_env() -> dict[str, str]:
    return {**os.environ, "COLUMNS": "250", "TERM": "dumb"}


def test_terms_lists_every_registered_term_with_sense_and_params(cli_runner, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    result = cli_runner("terms")
    assert result.exit_code == 0
    out = result.output
    for name in BUILTIN_TERMS:
        assert name in out
        cls = registry.get("term", name)
        first_param = registry.describe_params(cls)
        if first_param:
            assert f"{first_param[0][0]}=" in out
    assert "maximize" in out and "minimize" in out
    assert "eps=1" in out  # VAT's radius, the paper's footnote 2


def test_show_prints_resolved_recipe_and_weighted_sum(cli_runner, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    result = cli_runner("show", RECIPES / "imae_mnist.toml", "--set", "vars.beta=3")
    assert result.exit_code == 0, result.output
    assert re.search(r"^weight = 3(\.0)?$", result.output, re.M) and re.search(r"^weight = 7\.5$", result.output, re.M)
    assert re.search(r"end = 6(\.0)?, from_epoch = 10", result.output)  # TC's ramp ends at 2 beta
    assert ("maximise  reconstruction + 3 * discrete_mi - 7.5 * vat - linear(0->3, epochs 10-20) * marginal_kl"
            " - linear(0->6, epochs 10-20) * total_correlation" in result.output)
    assert "monitored only  posterior_kl, aggregate_kl" in result.output


def test_the_readmes_show_example_is_what_show_prints(cli_runner, monkeypatch):
    """README quotes the end of `imae-kit show recipes/imae_mnist.toml`; a recipe change must update it."""
    monkeypatch.setenv("COLUMNS", "250")
    readme = (RECIPES.parent / "README.md").read_text(encoding="utf-8")
    quoted = [line.strip() for line in readme.splitlines()
              if line.strip().startswith(("objective  maximise", "monitored only"))]
    assert len(quoted) == 2, quoted
    result = cli_runner("show", RECIPES / "imae_mnist.toml")
    assert result.exit_code == 0, result.output
    printed = [line.strip() for line in result.output.splitlines()]
    assert all(line in printed for line in quoted), (quoted, printed[-4:])


def test_compare_recipes_term_by_term(cli_runner, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    items = [RECIPES / f"{m}_mnist.toml" for m in ("imae", "beta_vae", "infovae", "jointvae")]
    result = cli_runner("compare", *items)
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines()
            if line.startswith("│") and line.split("│")[1].strip()}
    # total correlation: ramped in to 2 beta = 10 in IMAE (from epoch 10 on MNIST), monitored in the baselines
    cells = [c.strip() for c in rows["total_correlation"].split("│")[2:-1]]
    assert cells == ["-linear(0->10, epochs 10-20) [estimator='batch']", "monitor", "monitor", "monitor"]
    cells = [c.strip() for c in rows["discrete_mi"].split("│")[2:-1]]
    assert cells == ["+5 [conditional_weight=0.25]", "monitor", "monitor", "monitor"]
    assert "capacity_kl" in rows and "posterior_kl" in rows


def test_compare_run_directories_shows_final_values(tmp_path, cli_runner, monkeypatch):
    from imae_kit.training import run

    monkeypatch.setenv("COLUMNS", "250")
    dirs = []
    for m in ("imae", "beta_vae"):
        out = run(str(RECIPES / f"{m}_mnist.toml"), overrides=TOY_OVERRIDES, steps=20, out=str(tmp_path / m),
                  evaluate=False, progress=False)
        dirs.append(out.train.run_dir)
    result = cli_runner("compare", *(d.path for d in dirs))
    assert result.exit_code == 0, result.output
    final = dirs[0].read_metrics()[-1]["terms"]["discrete_mi"]["value"]
    assert f"= {final:.4g}" in result.output


def test_run_from_cli_writes_run_directory(tmp_path, cli_runner, write_recipe, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    result = cli_runner("run", write_recipe(), "--out", tmp_path / "r", "--steps", "12", "--no-eval", "-q")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r" / "checkpoint.pt").is_file()
    assert "completed, step 12/12" in result.output


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda t: t.replace("lr = 0.003", "lr_decy = 0.9"), "unknown key 'lr_decy'"),
        (lambda t: t + "\n[broken\n", "TOML syntax error"),
        (lambda t: t.replace('name = "marginal_kl"', 'name = "marginal_k"'), "did you mean 'marginal_kl'"),
        (lambda t: t.replace('weight = "${beta}"', 'weight = 1.0\nparams = { scale = "x" }'), "scale"),
        (lambda t: t.replace("description", 'plugins = ["missing.py"]\ndescription'), "plugin file 'missing.py' not found"),
        (lambda t: t.replace("description", 'plugins = ["raises.py"]\ndescription'), "raised ZeroDivisionError on import"),
        (lambda t: t.replace("[traininig]", "") + "\n[traininig]\n", "did you mean 'train'"),
    ],
)
def test_bad_input_is_one_clear_line_with_exit_status_2(tmp_path, mutate, expected):
    (tmp_path / "raises.py").write_text("1 / 0\n")
    recipe = tmp_path / "bad.toml"
    recipe.write_text(mutate(MINIMAL_RECIPE))
    proc = subprocess.run([sys.executable, "-m", "imae_kit.cli", "run", str(recipe), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=tmp_path, env=_wide_env(), timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert expected in proc.stderr
    assert str(recipe.name) in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2
    assert not (tmp_path / "out").exists(), "nothing is written for a bad recipe"


def test_bad_override_and_missing_recipe(tmp_path):
    for args, expected in [
        (["run", str(RECIPES / "imae_mnist.toml"), "--set", "train.lr"], "expected PATH=VALUE"),
        (["run", str(tmp_path / "nope.toml")], "not found"),
        (["compare", str(tmp_path / "a.toml"), str(tmp_path / "b")], "neither a recipe file nor a run directory"),
    ]:
        proc = subprocess.run([sys.executable, "-m", "imae_kit.cli", *args], capture_output=True, text=True,
                              cwd=REPO, env=_wide_env(), timeout=120)
        assert proc.returncode == 2 and expected in proc.stderr and "Traceback" not in proc.stderr


def test_plugin_by_entry_point_is_loaded(tmp_path, monkeypatch):
    """A package declaring `imae_kit.terms` entry points gets its terms registered."""
    pkg = tmp_path / "site"
    (pkg / "my_terms_pkg").mkdir(parents=True)
    (pkg / "my_terms_pkg" / "__init__.py").write_text(
        "import attrs, torch\nfrom typing import ClassVar\nfrom imae_kit import register_term\n"
        "@register_term('ep_entropy')\n@attrs.frozen\nclass EpEntropy:\n"
        "    '''Mean entropy of p(y|x) (a test entry-point term).'''\n"
        "    sense: ClassVar[str] = 'minimize'\n"
        "    def __call__(self, step):\n        return step.posterior.y.entropy().mean()\n")
    dist = pkg / "my_terms_pkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-terms-pkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[imae_kit.terms]\nep_entropy = my_terms_pkg\n")
    code = ("import sys; sys.path.insert(0, %r); from imae_kit import registry; "
            "print(registry.get('term', 'ep_entropy').sense)" % str(pkg))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "minimize"
