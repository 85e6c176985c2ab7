"""The probe scripts in benchmarks/ (rotation, learning curves) run end to end on a small toy run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import RECIPES, REPO, TOY_OVERRIDES
from imae_kit.training import run


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("probe") / "toy"
    overrides = TOY_OVERRIDES + ("train.batch_size=49", "train.eval_every=10", "train.eval_points=147",
                                 "train.eval_samples=147", 'train.precision="fp32"')
    run(str(RECIPES / "imae_dsprites.toml"), overrides=overrides, steps=20, out=str(out), evaluate=False,
        progress=False)
    return out


def _script(name: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / name), *args], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_plot_curves_prints_each_eval_record_and_draws(toy_run, tmp_path):
    figure = tmp_path / "curves.png"
    out = _script("plot_curves.py", f"{toy_run}@toy", "--keys", "mig_z,active_dimensions,gap:posX", "--epoch",
                  "147", "--out", str(figure))
    assert "toy (batch 49):" in out and "| mig_z | active_dimensions | gap:posX" in out
    rows = [line for line in out.splitlines() if line.startswith("  10 |") or line.startswith("  20 |")]
    assert [r.split("|")[1].strip() for r in rows] == ["3.33", "6.67"]  # steps x 49 / 147 epochs
    assert all(0.0 <= float(r.split("|")[-1]) <= 1.0 for r in rows)  # the posX gap of each record
    assert figure.stat().st_size > 0


def test_plot_curves_refuses_a_directory_without_a_run(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "plot_curves.py"), str(tmp_path),
                           "--out", str(tmp_path / "f.png")], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "no metrics.jsonl" in done.stderr


def test_rotation_probe_prints_a_row_per_angle_and_zero_change_at_zero(toy_run):
    out = _script("rotation.py", str(toy_run), "--angles", "0,45,90", "--batches", "2", "--dims", "0,1")
    table = out.split("differences from theta = 0")[1].split("\n\n")[0].splitlines()[1:]
    head, rows = table[0].split(" | "), [line.split(" | ") for line in table[1:]]
    assert [r[0] for r in rows] == ["0", "45", "90"]
    changes = [i for i, name in enumerate(head) if name.startswith("d ")]
    assert "d loss" in head and len(changes) >= 3
    assert all(rows[0][i] in ("+0.000", "-0.000") for i in changes)  # theta = 0 against itself
    assert {"MIG z", "TC pair", "TC all"} <= set(head)
    assert "rotating z0 and z1" in out and "MIG gaps by factor" in out


def test_tc_estimator_bias_reads_zero_for_one_active_dimension_and_grows_with_more():
    # one active dimension, the rest identical for every example: the batch estimate is exactly 0
    out = _script("tc_estimator_bias.py", "--reps", "2", "--sigma", "0.05", "--batch", "128", "--threads", "1")
    rows = {line.split(" | ")[1].split(" ")[0]: line.split(" | ") for line in out.splitlines()
            if line.startswith("0.05 | ")}
    assert abs(float(rows["1"][2])) < 1e-4
    assert float(rows["4"][2]) > float(rows["2"][2]) > 0.0  # the bias the docstring describes


def test_mig_speed_prints_the_kernel_against_the_exp_bound():
    out = _script("mig_speed.py", "--points", "7372", "--samples", "500", "--kernel", "eager", "--synthetic")
    line = next(line for line in out.splitlines() if line.startswith("bound: torch.exp alone"))
    share = float(line.split("reaches ")[1].split("%")[0])
    assert share > 0  # the kernel's evaluations per second over exp's exponentials per second
    eager = next(line for line in out.splitlines() if line.strip().startswith("eager:"))
    assert float(eager.split("MIG z only ")[1].split(",")[0]) > 0.1  # four synthetic dimensions follow factors


def _fake_run(root, name: str, seed: int, mig: float, nll: float, dims: list[float]):
    """A run directory with just what run_table.py reads: recipe.toml (the seed) and eval.json."""
    run = root / "runs" / name
    run.mkdir(parents=True)
    (run / "recipe.toml").write_text(f'name = "toy"\n[train]\nseed = {seed}\n')
    (run / "eval.json").write_text(json.dumps({
        "mig": {"z_only": {"score": mig, "gaps": {"scale": mig, "posX": 0.0}}},
        "reconstruction": {"nll_sampled": nll},
        "continuous": {"dimensions": [{"mutual_information": d} for d in dims]},
    }))


def test_run_table_prints_rows_medians_and_an_exact_test(tmp_path):
    for seed, (mig, nll) in enumerate([(0.1, 100.0), (0.3, 90.0), (0.2, 95.0)]):
        _fake_run(tmp_path / "a", f"{seed:03d}", seed, mig, nll, [2.0, 0.05, 1.0])
    for seed, (mig, nll) in enumerate([(0.5, 80.0), (0.4, 85.0), (0.6, 70.0)]):
        _fake_run(tmp_path / "b", f"{seed:03d}", seed, mig, nll, [3.0])
    out = _script("run_table.py", f"{tmp_path / 'a'}@A", f"{tmp_path / 'b'}@B", "--versus", "A,B")
    per_run = out.split("\n\n")[0]  # the per-run table, before the series' medians
    rows = [line.split(" | ") for line in per_run.splitlines() if line.startswith("| A | ")]
    assert [r[1] for r in rows] == ["0", "1", "2"] and rows[0][2] == "0.100"
    assert rows[0][-3] == "2.00, 1.00"  # I(x;z_k) > 0.1 nats, largest first
    assert rows[0][3] == "-"  # a number the evaluation did not measure
    summary = next(line for line in out.splitlines() if line.startswith("| B | 3 |")).split(" | ")
    assert summary[2] == "0.500 (0.400-0.600)" and summary[4] == "80.0 (70.0-85.0)"
    # every B above every A on MIG: U = 9 of 9; exact two-sided p = 2 / C(6, 3) = 0.1
    assert "MIG z: U = 9 of 9, p = 0.1" in out and "NLL: U = 0 of 9, p = 0.1" in out


def test_run_table_names_a_missing_series(tmp_path):
    _fake_run(tmp_path / "a", "000", 0, 0.1, 100.0, [1.0])
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run_table.py"), f"{tmp_path / 'a'}@A",
                           "--versus", "A,C"], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "no series named 'C'" in done.stderr


def test_plot_runs_median_reduces_the_runs_of_one_label_to_their_medians(tmp_path):
    for seed, (mig, nll) in enumerate([(0.1, 100.0), (0.3, 90.0), (0.2, 97.0)]):
        _fake_run(tmp_path, f"{seed:03d}", seed, mig, nll, [1.0])
    _fake_run(tmp_path, "lone", 0, 0.4, 80.0, [1.0])
    runs = [f"{tmp_path / 'runs' / f'{seed:03d}'}@A:b4" for seed in range(3)] + [f"{tmp_path / 'runs' / 'lone'}@A:b8"]
    figure = tmp_path / "f.png"
    out = _script("plot_runs.py", "--x", "reconstruction.nll_sampled", "--y", "mig.z_only.score", "--median",
                  "--out", str(figure), *runs)
    assert ("A:b4: median of 3 run(s): reconstruction.nll_sampled = 97 (90-100), "
            "mig.z_only.score = 0.2 (0.1-0.3)") in out
    assert "A:b8: median of 1 run(s): reconstruction.nll_sampled = 80 (80-80)" in out
    assert figure.stat().st_size > 0


def test_select_runs_scores_the_pick_of_every_k_subset_against_a_hand_count(tmp_path):
    # (TC, MIG) of four seeds; the 3-subsets and what the lowest TC picks, by hand:
    # {0,1,2} -> 0.4 (median 0.3, best 0.4), {0,1,3} -> 0.4 (0.2, 0.4), {0,2,3} -> 0.4 (0.3, 0.4),
    # {1,2,3} -> 0.1 (0.2, 0.3): picked median 0.4, mean 0.325; medians' median 0.25; bests' median 0.4
    def write(root, seed, tc, mig):
        run = root / "runs" / f"{seed:03d}"
        run.mkdir(parents=True)
        (run / "recipe.toml").write_text(f'name = "toy"\n[train]\nseed = {seed}\n')
        (run / "eval.json").write_text(json.dumps({"mig": {"z_only": {"score": mig}},
                                                   "total_correlation": {"value": tc}}))

    for seed, (tc, mig) in enumerate([(0.1, 0.4), (0.2, 0.1), (0.3, 0.3), (0.4, 0.2)]):
        write(tmp_path, seed, tc, mig)
    out = _script("select_runs.py", f"{tmp_path}@A", "--by", "TC", "--score", "MIG z", "--k", "3")
    row = next(line for line in out.splitlines() if line.startswith("| A | 4 |")).split(" | ")
    # ranks of MIG against TC's 1, 2, 3, 4: 4, 1, 3, 2, sum d^2 = 14, rho = 1 - 6 * 14 / (4 * 15) = -0.4;
    # of the 24 orderings of four, 18 have sum d^2 <= 6 or >= 14 (Spearman's null for n = 4): p = 0.75
    assert row[2:] == ["-0.40", "0.75", "4", "0.400 (0.325)", "0.250", "0.400", "3 of 4 |"]
    assert "at least its subset's median in 3 of 4 subsets" in out
    assert "A: seed 0, TC 0.1, MIG z 0.4" in out

    # the criterion from the same seeds stopped early (TC 0.4, 0.3, 0.2, 0.1: the order reversed; seed 4 only
    # early): {0,1,2} -> seed 2 (0.3), the three subsets with seed 3 -> 0.2; rho of ranks 4,3,2,1 against
    # 4,1,3,2: sum d^2 = 6, rho = +0.4, p = 0.75 again
    for seed, tc in enumerate([0.4, 0.3, 0.2, 0.1, 0.0]):
        write(tmp_path / "early", seed, tc, 0.0)
    out = _script("select_runs.py", f"{tmp_path}@A", "--by-from", f"{tmp_path / 'early'}@A", "--k", "3")
    row = next(line for line in out.splitlines() if line.startswith("| A | 4 |")).split(" | ")
    assert row[2:] == ["0.40", "0.75", "4", "0.200 (0.225)", "0.250", "0.400", "0 of 4 |"]
    assert "A: seed 3, TC 0.1, MIG z 0.2" in out
    # --by-step: the eval_every record at step 2 of the early runs, whose TC there is in the first order again
    for seed, tc in enumerate([0.1, 0.2, 0.3, 0.4, 0.5]):
        records = [{"step": 1, "eval": {"total_correlation": 9.0}}, {"step": 2, "eval": {"total_correlation": tc}}]
        (tmp_path / "early" / "runs" / f"{seed:03d}" / "metrics.jsonl").write_text(
            "\n".join(json.dumps(r) for r in records) + "\n")
    out = _script("select_runs.py", f"{tmp_path}@A", "--by-from", f"{tmp_path / 'early'}@A", "--by-step", "2")
    row = next(line for line in out.splitlines() if line.startswith("| A | 4 |")).split(" | ")
    assert row[2:] == ["-0.40", "0.75", "4", "0.400 (0.325)", "0.250", "0.400", "3 of 4 |"]
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "select_runs.py"), str(tmp_path), "--by", "NLL",
                           "--by-step", "2"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "not in the eval_every records" in done.stderr
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "select_runs.py"), str(tmp_path), "--k", "1"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "at least 2 runs" in done.stderr
