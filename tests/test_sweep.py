"""Sweeps: a recipe over a grid of overrides, continued after a stop, collected into tables and figures."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest

import imae_kit.training.trainer as train_module
from imae_kit.errors import RecipeError
from imae_kit.sweep import GridAxis, band_series, grid_points, quantile, split_top_level

from conftest import MINIMAL_RECIPE, invoke_cli

NAN_TERM = Path(__file__).parent / "fixtures" / "nan_term.py"


# ----------------------------------------------------------------------------- grid parsing

def test_grid_values_split_at_top_level_commas_only():
    assert split_top_level("1,2.5,4") == ["1", "2.5", "4"]
    assert split_top_level("[64,64],[128]") == ["[64,64]", "[128]"]
    assert split_top_level('"a,b",{ x = 1, y = 2 }') == ['"a,b"', "{ x = 1, y = 2 }"]
    axis = GridAxis.parse(" vars.beta = 1, 3 ,5")
    assert axis == GridAxis("vars.beta", ("1", "3", "5"))


@pytest.mark.parametrize("spec, match", [
    ("vars.beta", "expected PATH=V1,V2"),
    ("=1,2", "expected PATH=V1,V2"),
    ("vars.beta=1,,2", "empty value"),
    ("vars.beta=1,2,1", "listed twice"),
])
def test_bad_grid_specs_say_what_to_write(spec, match):
    with pytest.raises(RecipeError, match=match):
        GridAxis.parse(spec)


def test_grid_points_are_every_combination_first_axis_slowest_with_safe_names():
    points = grid_points([GridAxis("vars.beta", ("1", "4")), GridAxis("train.seed", ("0", "1", "2"))])
    assert [p.overrides for p in points[:4]] == [("vars.beta=1", "train.seed=0"), ("vars.beta=1", "train.seed=1"),
                                                 ("vars.beta=1", "train.seed=2"), ("vars.beta=4", "train.seed=0")]
    assert len(points) == 6 and points[5].name == "005-beta=4-seed=2"
    odd = grid_points([GridAxis("model.encoder.hidden", ("[64, 64]",))])[0]
    assert odd.name == "000-hidden=_64_64_"


def test_quantile_matches_numpy_and_bands_group_over_the_other_axes():
    values = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6]
    for q in (0.0, 0.1, 0.5, 0.9, 1.0):
        assert quantile(values, q) == pytest.approx(float(np.quantile(values, q)))
    rows = [{"b": 1, "m": 1.0}, {"b": 1, "m": 3.0}, {"b": 1, "m": 2.0}, {"b": 2, "m": 5.0},
            {"b": 2, "m": float("nan")}, {"b": 2, "m": None}]
    assert band_series(rows, "b", "m") == [(1.0, 2.0, 1.2, 2.8, 3), (2.0, 5.0, 5.0, 5.0, 1)]


# ----------------------------------------------------------------------------- running sweeps

@pytest.fixture
def recipe_file(tmp_path):
    path = tmp_path / "toy.toml"
    path.write_text(MINIMAL_RECIPE.replace("[train]", "[eval]\nmax_points = 300\n\n[train]"))
    return path


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_sweep_trains_every_point_tabulates_it_and_a_second_call_keeps_it(tmp_path, recipe_file, one_thread):
    out = tmp_path / "sweep"
    args = ["sweep", recipe_file, "--grid", "vars.beta=0.5,4", "--grid", "train.seed=0,1", "--steps", "20",
            "--out", out, "-q"]
    result = invoke_cli(*args)
    assert result.exit_code == 0, result.output
    runs = sorted((out / "runs").iterdir())
    assert [r.name for r in runs] == ["000-beta=0.5-seed=0", "001-beta=0.5-seed=1", "002-beta=4-seed=0",
                                      "003-beta=4-seed=1"]
    table = _csv_rows(out / "sweep.csv")
    assert len(table) == 4
    for run_dir, row in zip(runs, table):
        resolved = tomllib.loads((run_dir / "recipe.toml").read_text())
        weights = {t["name"]: t["weight"] for t in resolved["objective"]["terms"]}
        assert weights["marginal_kl"] == float(row["vars.beta"])  # ${beta} substituted per point
        assert resolved["train"]["seed"] == int(row["train.seed"]) and resolved["train"]["steps"] == 20
        evaluation = json.loads((run_dir / "eval.json").read_text())
        assert float(row["I(x;y) nats"]) == pytest.approx(evaluation["discrete"]["mutual_information"])
        assert row["status"] == "evaluated"
    assert (out / "figures" / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "sweep.md").read_text()
    assert "| vars.beta | train.seed | status |" in md and "| H(y\\|x) nats |" in md and "budget: 20 steps" in md

    before = {r.name: (r / "run.json").read_bytes() for r in runs}
    again = invoke_cli(*args)
    assert again.exit_code == 0, again.output
    assert again.output.count("evaluated, kept") == 4
    assert {r.name: (r / "run.json").read_bytes() for r in runs} == before

    other = invoke_cli("sweep", recipe_file, "--grid", "vars.beta=1,2", "--steps", "20", "--out", out, "-q")
    assert other.exit_code == 2
    assert "holds a different sweep" in other.output and "grid" in other.output


@pytest.mark.slow
def test_a_stopped_sweep_continues_where_it_stopped(tmp_path, recipe_file, one_thread, monkeypatch):
    """A stop (Ctrl-C or SIGTERM) during point 2 ends the sweep with exit 130 and the point checkpointed;
    the same command then resumes that point from its checkpoint and runs the rest."""
    out = tmp_path / "sweep"
    args = ["sweep", recipe_file, "--grid", "train.seed=0,1,2", "--steps", "30", "--out", out, "-q", "--no-eval"]

    class StopAtStep12OfPoint2(train_module.StopFlag):
        def __init__(self):
            super().__init__()
            self.checks = 0
            self.armed = any((out / "runs").glob("000-*/summary.json"))

        @property
        def requested(self):
            self.checks += 1
            if self.armed and self.checks == 12:
                self.signum = signal.SIGTERM
            return self.signum is not None

    monkeypatch.setattr(train_module, "StopFlag", StopAtStep12OfPoint2)
    stopped = invoke_cli(*args)
    assert stopped.exit_code == 130, stopped.output
    status = json.loads((out / "runs" / "001-seed=1" / "run.json").read_text())
    assert status["status"] == "interrupted" and status["step"] == 12
    assert not (out / "runs" / "002-seed=2").exists()

    monkeypatch.setattr(train_module, "StopFlag", StopAtStep12OfPoint2.__mro__[1])
    resumed = invoke_cli(*args)
    assert resumed.exit_code == 0, resumed.output
    assert "completed, kept" in resumed.output and "interrupted, continuing" in resumed.output
    status = json.loads((out / "runs" / "001-seed=1" / "run.json").read_text())
    assert status["status"] == "completed" and status["resumed_at"] == [12] and status["step"] == 30
    rows = _csv_rows(out / "sweep.csv")
    assert [r["status"] for r in rows] == ["completed"] * 3
    assert all(r["reconstruction (last logged)"] for r in rows)  # training terms, since no evaluation


@pytest.mark.slow
def test_a_diverged_point_is_recorded_and_the_sweep_goes_on(tmp_path, one_thread):
    text = MINIMAL_RECIPE.replace('name = "toy"', f'name = "toy"\nplugins = ["{NAN_TERM}"]')
    text += '\n[[objective.terms]]\nname = "nan_at_step"\nweight = 0.01\nparams = { at_step = 1000 }\n'
    recipe = tmp_path / "nan.toml"
    recipe.write_text(text)
    out = tmp_path / "sweep"
    result = invoke_cli("sweep", recipe, "--grid", "objective.terms.nan_at_step.params.at_step=5,1000",
                        "--steps", "15", "--out", out, "-q", "--no-eval")
    assert result.exit_code == 0, result.output
    assert "diverged" in result.output and "step 5" in result.output
    rows = _csv_rows(out / "sweep.csv")
    assert [r["status"] for r in rows] == ["diverged", "completed"]


def test_a_recipe_edited_mid_sweep_is_refused_before_the_next_point(tmp_path, one_thread, monkeypatch):
    """Every point trains from the text the sweep began with (sweep.json's recipe_sha256): an edit after the
    first point stops the sweep before the second, with exit 2; restoring the text lets it continue."""
    import imae_kit.sweep.runner as runner

    recipe = tmp_path / "toy.toml"
    recipe.write_text(MINIMAL_RECIPE)
    out = tmp_path / "sweep"
    args = ["sweep", recipe, "--grid", "train.seed=0,1", "--steps", "5", "--out", out, "-q", "--no-eval"]
    real = runner.run_recipe

    def train_then_edit(*a, **k):
        outcome = real(*a, **k)
        recipe.write_text(MINIMAL_RECIPE + "\n# edited while the sweep ran\n")
        return outcome

    monkeypatch.setattr(runner, "run_recipe", train_then_edit)
    edited = invoke_cli(*args)
    assert edited.exit_code == 2, edited.output
    assert "has changed since the sweep" in edited.output and "another --out" in edited.output
    assert (out / "runs" / "000-seed=0" / "summary.json").is_file()
    assert not (out / "runs" / "001-seed=1").exists()
    assert json.loads((out / "sweep.json").read_text())["recipe_sha256"]

    monkeypatch.setattr(runner, "run_recipe", real)
    again = invoke_cli(*args)  # reopening the sweep with the edited text is refused too
    assert again.exit_code == 2 and "has changed since the sweep" in again.output
    recipe.write_text(MINIMAL_RECIPE)
    restored = invoke_cli(*args)
    assert restored.exit_code == 0, restored.output
    assert (out / "runs" / "001-seed=1" / "summary.json").is_file()


def test_a_bad_grid_path_is_refused_before_anything_is_written(tmp_path, recipe_file):
    out = tmp_path / "sweep"
    result = invoke_cli("sweep", recipe_file, "--grid", "train.seeed=0,1", "--out", out)
    assert result.exit_code == 2
    assert "seeed" in result.output and "seed" in result.output
    assert not out.exists()
    bad_value = invoke_cli("sweep", recipe_file, "--grid", "train.lr=0.001,fast", "--out", out)
    assert bad_value.exit_code == 2 and "lr" in bad_value.output and not out.exists()
    no_grid = invoke_cli("sweep", recipe_file, "--out", out)
    assert no_grid.exit_code == 2 and "--grid" in no_grid.output and not out.exists()
    twice = invoke_cli("sweep", recipe_file, "--grid", "vars.beta=1,2", "--grid", "vars.beta=3", "--out", out)
    assert twice.exit_code == 2 and "more than once" in twice.output and not out.exists()


def test_collect_needs_a_figure_path_for_several_sweeps_and_a_sweep_directory(tmp_path):
    result = invoke_cli("collect", tmp_path, tmp_path)
    assert result.exit_code == 2 and "--out" in result.output
    missing = invoke_cli("collect", tmp_path)
    assert missing.exit_code == 2 and "no sweep.json" in missing.output


def test_collect_pools_seeds_run_in_separate_sweeps_into_one_series_with_median_tables(tmp_path, recipe_file,
                                                                                      one_thread):
    """Three seeds of one experiment in three sweep directories are one series under --pool: the summary
    table's median and range at each beta are those of the three points' own sweep.csv rows (computed here
    by sorting), --metric picks the panels by short or full name, and a point held twice is refused."""
    sweeps = []
    for seed in (0, 1, 2):
        out = tmp_path / f"toy_s{seed}"
        result = invoke_cli("sweep", recipe_file, "--grid", "vars.beta=0.5,4", "--grid", f"train.seed={seed}",
                            "--steps", "6", "--out", out, "-q", "--no-eval")
        assert result.exit_code == 0, result.output
        sweeps.append(out)
    metric = "reconstruction (last logged)"
    table, figure = tmp_path / "summary.md", tmp_path / "pooled.png"
    result = invoke_cli("collect", *sweeps, "--pool", "--metric", metric, "--out", figure, "--table", table)
    assert result.exit_code == 0, result.output
    assert "series toy: 3 sweep(s), 6 points" in result.output
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = table.read_text().splitlines()
    assert lines[0] == f"| series | beta | n | {metric} |" and len(lines) == 4
    for line, beta in zip(lines[2:], ("0.5", "4")):
        values = sorted(float(r[metric]) for sw in sweeps for r in _csv_rows(sw / "sweep.csv")
                        if r["vars.beta"] == beta)
        assert len(values) == 3 and values[0] < values[-1]  # the seeds differ, so the range is a range
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[:3] == ["toy", beta, "3"]
        assert cells[3] == f"{values[1]:.3g} ({values[0]:.3g}-{values[2]:.3g})"

    unpooled = invoke_cli("collect", *sweeps, "--out", figure, "--table", table)
    assert unpooled.exit_code == 0, unpooled.output
    assert [line.split("|")[1].strip() for line in table.read_text().splitlines()[2:]][::2] == \
        ["toy_s0", "toy_s1", "toy_s2"]

    other = "marginal_kl (last logged)"  # one number against another, as PAPER.md Figure 5 draws MIG against NLL
    against = invoke_cli("collect", *sweeps, "--pool", "--x", other, "--metric", metric, "--out", figure,
                         "--table", table)
    assert against.exit_code == 0, against.output
    rows = [r for sw in sweeps for r in _csv_rows(sw / "sweep.csv")]
    assert table.read_text().splitlines()[0] == f"| series | {other} | n | {metric} |"
    assert len(table.read_text().splitlines()) == 2 + len({float(r[other]) for r in rows}) == 8
    bad_x = invoke_cli("collect", *sweeps, "--pool", "--x", "train.sead", "--out", figure)
    assert bad_x.exit_code == 2 and "neither a grid path" in bad_x.output and "vars.beta" in bad_x.output

    unknown = invoke_cli("collect", *sweeps, "--pool", "--metric", "acc(y)", "--out", figure)
    assert unknown.exit_code == 2 and "no number named 'acc(y)'" in unknown.output and metric in unknown.output
    twice = invoke_cli("collect", sweeps[0], sweeps[0], "--pool", "--out", figure)
    assert twice.exit_code == 2 and "both hold the point" in twice.output and "train.seed=0" in twice.output


def test_collect_pools_sweeps_of_one_beta_each_into_one_series_against_beta(tmp_path, recipe_file, one_thread):
    """A sweep run one beta per directory (as two queues split it) pools into one series named by the
    directories' common prefix up to a whole word, drawn against beta rather than the seed; each beta's median
    and range are those of its own directory's rows (sorted here). A different budget is another series."""
    dirs = {}
    for beta, name in (("0.5", "toy_s16_b0.5"), ("4", "toy_s17_b4")):
        dirs[beta] = tmp_path / name
        result = invoke_cli("sweep", recipe_file, "--grid", f"vars.beta={beta}", "--grid", "train.seed=0,1,2",
                            "--steps", "6", "--out", dirs[beta], "-q", "--no-eval")
        assert result.exit_code == 0, result.output
    metric = "reconstruction (last logged)"
    table, figure = tmp_path / "summary.md", tmp_path / "pooled.png"
    result = invoke_cli("collect", *dirs.values(), "--pool", "--metric", metric, "--out", figure, "--table", table)
    assert result.exit_code == 0, result.output
    assert "series toy: 2 sweep(s), 6 points" in result.output
    lines = table.read_text().splitlines()
    assert lines[0] == f"| series | beta | n | {metric} |" and len(lines) == 4
    for line, (beta, sweep) in zip(lines[2:], dirs.items()):
        values = sorted(float(r[metric]) for r in _csv_rows(sweep / "sweep.csv"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells == ["toy", beta, "3", f"{values[1]:.3g} ({values[0]:.3g}-{values[2]:.3g})"]

    longer = tmp_path / "toy_s18_b8"
    assert invoke_cli("sweep", recipe_file, "--grid", "vars.beta=8", "--grid", "train.seed=0", "--steps", "8",
                      "--out", longer, "-q", "--no-eval").exit_code == 0
    apart = invoke_cli("collect", *dirs.values(), longer, "--pool", "--metric", metric, "--out", figure)
    assert apart.exit_code == 0, apart.output
    assert "series toy: 2 sweep(s), 6 points" in apart.output and "series toy_s18_b8: 1 sweep(s), 1 points" in \
        apart.output

    # --only keeps the points with those grid values (seeds 0 and 2 here): medians of two, counted as two
    only = invoke_cli("collect", *dirs.values(), "--pool", "--only", "train.seed=0,2", "--metric", metric,
                      "--out", figure, "--table", table)
    assert only.exit_code == 0, only.output
    assert "series toy: 2 sweep(s), 4 points" in only.output
    for line, (beta, sweep) in zip(table.read_text().splitlines()[2:], dirs.items()):
        values = sorted(float(r[metric]) for r in _csv_rows(sweep / "sweep.csv") if r["train.seed"] in ("0", "2"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells == ["toy", beta, "2", f"{(values[0] + values[1]) / 2:.3g} ({values[0]:.3g}-{values[1]:.3g})"]
    for bad, words in ((["--only", "train.sed=0"], ["train.sed", "not a grid path", "train.seed"]),
                       (["--only", "train.seed"], ["PATH=V1,V2"]),
                       (["--only", "train.seed=0", "--only", "train.seed=1"], ["more than once"])):
        refused = invoke_cli("collect", *dirs.values(), "--pool", *bad, "--out", figure)
        assert refused.exit_code == 2 and all(w in refused.output for w in words), refused.output

    # a point not yet run (the other shard's) is not counted in n
    half = tmp_path / "toy_s19_b2"
    assert invoke_cli("sweep", recipe_file, "--grid", "vars.beta=2", "--grid", "train.seed=0,1,2", "--steps", "6",
                      "--out", half, "-q", "--no-eval", "--shard", "1/2").exit_code == 0
    none_yet = tmp_path / "toy_s19_b3"  # its only point is the other shard's: a sweep with nothing run
    assert invoke_cli("sweep", recipe_file, "--grid", "vars.beta=3", "--grid", "train.seed=0", "--steps", "6",
                      "--out", none_yet, "-q", "--no-eval", "--shard", "2/2").exit_code == 0
    partial = invoke_cli("collect", half, none_yet, "--pool", "--metric", metric, "--out", figure, "--table", table)
    assert partial.exit_code == 0, partial.output
    rows = [[c.strip() for c in line.strip("|").split("|")][:3] for line in table.read_text().splitlines()[2:]]
    assert rows == [["toy_s19", "2", "2"]]  # beta 3 has no row: none of its points has numbers


# ----------------------------------------------------------------------------- spreading a sweep

def test_shards_split_the_points_by_index_and_bad_shards_are_refused():
    from imae_kit.sweep import in_shard, parse_shard

    points = grid_points([GridAxis("train.seed", tuple(str(i) for i in range(7)))])
    shards = [[p.index for p in points if in_shard(p, parse_shard(f"{i}/3"))] for i in (1, 2, 3)]
    assert shards == [[0, 3, 6], [1, 4], [2, 5]]
    for bad in ("0/3", "4/3", "3", "a/b", "1/0"):
        with pytest.raises(RecipeError, match="I/N"):
            parse_shard(bad)


def _sweep_process(recipe: Path, out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "imae_kit", "sweep", str(recipe), "--grid", "train.seed=0,1,2,3", "--steps", "12",
           "--out", str(out), "-q", "--no-eval", "--threads", "1", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))


def _trained_once(run_dir: Path) -> bool:
    status = json.loads((run_dir / "run.json").read_text())
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return status["status"] == "completed" and "resumed_at" not in status and steps == sorted(set(steps))


@pytest.mark.slow
def test_two_shards_at_once_fill_one_directory_with_every_point_once(tmp_path, recipe_file):
    """Two workers started together (a SLURM array of 2) write one sweep directory; then two more started
    together on the same points with no shard at all divide them by the claims, never training one twice."""
    out = tmp_path / "sweep"
    procs = [_sweep_process(recipe_file, out, "--shard", "1/2"), _sweep_process(recipe_file, out, "--shard", "2/2")]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert [o.count("starting") for o in outputs] == [2, 2]
    assert "point 1/4 train.seed=0: starting" in outputs[0] and "point 2/4 train.seed=1: starting" in outputs[1]
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert runs == ["000-seed=0", "001-seed=1", "002-seed=2", "003-seed=3"]
    assert all(_trained_once(out / "runs" / r) for r in runs)
    rows = _csv_rows(out / "sweep.csv")  # whichever worker wrote it last saw the union
    assert [r["train.seed"] for r in rows] == ["0", "1", "2", "3"] and {r["status"] for r in rows} == {"completed"}

    both = tmp_path / "both"
    procs = [_sweep_process(recipe_file, both), _sweep_process(recipe_file, both)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert sum(o.count("starting") for o in outputs) == 4  # each point started by exactly one of them
    assert all(_trained_once(r) for r in (both / "runs").iterdir()) and len(list((both / "runs").iterdir())) == 4


@pytest.mark.slow
def test_jobs_2_gives_the_numbers_of_jobs_1(tmp_path, recipe_file, one_thread):
    args = ["sweep", recipe_file, "--grid", "vars.beta=0.5,4", "--grid", "train.seed=0,1", "--steps", "12", "-q",
            "--no-eval", "--threads", "1"]
    serial = invoke_cli(*args, "--out", tmp_path / "serial")
    assert serial.exit_code == 0, serial.output
    parallel = invoke_cli(*args, "--out", tmp_path / "parallel", "--jobs", "2")
    assert parallel.exit_code == 0, parallel.output
    assert "2 at once" in parallel.output and parallel.output.count("(pid ") == 4
    names = sorted(p.name for p in (tmp_path / "serial" / "runs").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "parallel" / "runs").iterdir()) and len(names) == 4
    for name in names:
        lines = [(tmp_path / d / "runs" / name / "metrics.jsonl").read_text() for d in ("serial", "parallel")]
        assert lines[0] == lines[1], name  # every logged loss and term, to the last digit
        assert (tmp_path / "parallel" / "logs" / f"{name}.log").is_file()
    assert _csv_rows(tmp_path / "serial" / "sweep.csv") == [
        dict(r, run=r["run"].replace("parallel", "serial")) for r in _csv_rows(tmp_path / "parallel" / "sweep.csv")]
    again = invoke_cli(*args, "--out", tmp_path / "parallel", "--jobs", "2")
    assert again.exit_code == 0 and again.output.count("completed, kept") == 4


@pytest.mark.slow
def test_a_stop_reaches_every_point_under_way_with_jobs_2(tmp_path, recipe_file):
    """SIGTERM to the sweep with --jobs 2: both points under way checkpoint and stop, no new one starts, exit 130."""
    out = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, "-m", "imae_kit", "sweep", str(recipe_file), "--grid", "train.seed=0,1,2",
                             "--steps", "100000", "--out", str(out), "-q", "--no-eval", "--jobs", "2", "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    logs = [out / "logs" / "000-seed=0.log", out / "logs" / "001-seed=1.log"]
    deadline = time.monotonic() + 60
    while not all((out / "runs" / name / "metrics.jsonl").is_file() for name in ("000-seed=0", "001-seed=1")):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, output
    for name in ("000-seed=0", "001-seed=1"):
        status = json.loads((out / "runs" / name / "run.json").read_text())
        assert status["status"] == "interrupted" and status["checkpoint_step"] == status["step"] > 0
    assert not (out / "runs" / "002-seed=2").exists() and all(log.is_file() for log in logs)
