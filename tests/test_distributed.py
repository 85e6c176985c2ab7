"""One run over several processes (torchrun, DDP, gloo on the CPU): the same numbers as one process."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

import distributed_terms
from conftest import MINIMAL_RECIPE, invoke_cli
from imae_kit import distributed
from imae_kit.estimators import BatchAggregate


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_process_terms(tmp_path_factory):
    out = tmp_path_factory.mktemp("terms") / "two.pt"
    mp.start_processes(distributed_terms.worker, args=(2, free_port(), str(out)), nprocs=2, start_method="spawn")
    return torch.load(out, weights_only=False)


def test_every_term_and_its_gradients_over_two_processes_equal_one_process(two_process_terms):
    """For each built-in term and the MMD plugin: 2 processes x 4 examples give the value and, after DDP's
    average, the gradient of every parameter that 1 process gives on the same 8 (float64, BatchNorm included)."""
    one = distributed_terms.compute(distributed.ProcessContext())
    assert set(one) == set(two_process_terms) and len(one) == 16
    for label, (value, grads) in one.items():
        value2, grads2 = two_process_terms[label]
        assert math.isfinite(value) and value2 == pytest.approx(value, rel=1e-10, abs=1e-12), label
        assert any(float(g.abs().max()) > 1e-6 for g in grads), label  # every term moves some parameter
        for g1, g2 in zip(grads, grads2):
            torch.testing.assert_close(g2, g1, rtol=1e-9, atol=1e-12, msg=lambda m: f"{label}: {m}")


@pytest.mark.parametrize("estimator", ["batch", "mws", "mss"])
def test_the_aggregate_on_a_slice_of_rows_is_those_rows_of_the_full_batch(estimator):
    """One process's rectangle (its samples against the whole batch's posteriors, its rows of the weights)."""
    g = torch.Generator().manual_seed(1)
    mu, sigma = torch.randn(6, 3, generator=g, dtype=torch.float64), torch.rand(6, 3, generator=g).double() + 0.3
    z = mu + sigma * torch.randn(6, 3, generator=g, dtype=torch.float64)
    full = BatchAggregate(z, mu, sigma, estimator, 20)
    for offset in (0, 2, 3):
        part = BatchAggregate(z[offset:offset + 3], mu, sigma, estimator, 20, row_offset=offset)
        torch.testing.assert_close(part.log_joint, full.log_joint[offset:offset + 3])
        torch.testing.assert_close(part.log_marginals, full.log_marginals[offset:offset + 3])
    with pytest.raises(ValueError, match="rows 4 on"):
        BatchAggregate(z[:3], mu, sigma, estimator, 20, row_offset=4)


# ----------------------------------------------------------------------------- whole runs

FIXTURES = Path(__file__).parent / "fixtures"
RUN_RECIPE = MINIMAL_RECIPE.replace("batch_size = 49", "batch_size = 50").replace("steps = 30", "steps = 40").replace(
    'name = "toy"', f'name = "toy"\nplugins = ["{FIXTURES / "nan_term.py"}", '
                                                    f'"{FIXTURES / "signal_term.py"}"]').replace(
    "[model.encoder]\nhidden = [32]", "[model.encoder]\nhidden = [32]\nbatch_norm = true").replace(
    'monitor = ["discrete_mi"]', 'monitor = ["posterior_kl"]') + textwrap.dedent("""\
    checkpoint_every = 20

    [[objective.terms]]
    name = "discrete_mi"
    weight = 1.0

    [[objective.terms]]
    name = "total_correlation"
    weight = 2.0

    [[objective.terms]]
    name = "vat"
    weight = 1.0

    [[objective.terms]]
    name = "fail_at_step"
    weight = 1.0
    """)


def launch(args: list, n: int = 2, env: dict | None = None) -> list[subprocess.Popen]:
    """``python -m imae_kit ARGS`` as the N processes torchrun would start (RANK, WORLD_SIZE, MASTER_*)."""
    port = free_port()
    procs = []
    for rank in range(n):
        e = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(n), LOCAL_WORLD_SIZE=str(n),
                 MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1", **(env or {}))
        procs.append(subprocess.Popen([sys.executable, "-m", "imae_kit", *map(str, args)], stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, env=e))
    return procs


def finish(procs: list[subprocess.Popen], timeout: float = 90) -> tuple[list[int], list[str]]:
    outputs = [p.communicate(timeout=timeout)[0] for p in procs]
    return [p.returncode for p in procs], outputs


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_processes_under_torchrun_train_like_one(tmp_path, write_recipe, one_thread):
    """torchrun, 2 processes x 25 examples, 200 steps: the first step measures exactly what one process measures
    on the same 50 (posterior KL: no random draw; BatchNorm over the global batch), the end is within 10% of
    one process's (the processes draw their own noise), rank 0 alone wrote the run directory."""
    recipe = write_recipe(RUN_RECIPE.replace("steps = 40", "steps = 200").replace("log_every = 10", "log_every = 50")
                          .replace("checkpoint_every = 20", "checkpoint_every = 0"))
    two = tmp_path / "two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "imae_kit",
           "run", recipe, "--out", two, "--no-eval", "-q"]
    proc = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (proc.stdout + proc.stderr).count("completed, step 200/200") == 2  # both processes, the same numbers
    one = invoke_cli("run", recipe, "--out", tmp_path / "one", "--no-eval", "-q")
    assert one.exit_code == 0, one.output
    m1, m2 = metrics(tmp_path / "one"), metrics(two)
    assert [r["step"] for r in m2] == [r["step"] for r in m1] == [1, 50, 100, 150, 200]
    first1, first2 = m1[0]["terms"]["posterior_kl"]["value"], m2[0]["terms"]["posterior_kl"]["value"]
    assert first2 == pytest.approx(first1, rel=1e-5)
    for key in ("reconstruction", "posterior_kl"):
        assert m2[-1]["terms"][key]["value"] == pytest.approx(m1[-1]["terms"][key]["value"], rel=0.1), key
    assert m2[-1]["loss"] == pytest.approx(m1[-1]["loss"], rel=0.1)
    status = json.loads((two / "run.json").read_text())
    assert status["processes"] == 2 and status["status"] == "completed"
    state = torch.load(two / "checkpoint.pt", weights_only=True)
    assert state["processes"] == 2 and len(state["rng_ranks"]) == 2


@pytest.mark.slow
def test_a_nan_on_rank_1_stops_both_processes_with_the_divergence_message(tmp_path, write_recipe):
    text = RUN_RECIPE + '\n[[objective.terms]]\nname = "nan_at_step"\nweight = 0.01\nparams = { at_step = 5, rank = 1 }\n'
    out = tmp_path / "run"
    codes, outputs = finish(launch(["run", write_recipe(text), "--out", out, "--no-eval", "-q"]))
    assert codes == [2, 2], outputs
    for output in outputs:
        assert "training diverged at step 5: the value of term 'nan_at_step' is nan" in output, output
        assert "Traceback" not in output
    status = json.loads((out / "run.json").read_text())
    assert status["status"] == "diverged" and status["diverged_term"] == "nan_at_step"


@pytest.mark.slow
def test_sigterm_on_one_process_stops_both_after_the_same_step_and_resumes_with_two_or_one(tmp_path, write_recipe,
                                                                                         one_thread):
    """SIGTERM to rank 1 alone: both finish the step, rank 0 checkpoints, both exit 143. Resumed with 2 processes
    the run ends bit for bit where an uninterrupted 2-process run ends; resumed with 1 process it completes."""
    recipe = write_recipe(RUN_RECIPE)
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    codes, outputs = finish(launch(["run", recipe, "--out", whole, "--no-eval", "-q"]))
    assert codes == [0, 0], outputs
    codes, outputs = finish(launch(["run", recipe, "--out", stopped, "--no-eval", "-q"],
                                   env={"IMAE_TEST_FAIL": "1:12:SIGTERM"}))
    assert codes == [143, 143], outputs
    assert all("stopped at step 13 of 40; continue with:" in o and "imae-kit run --resume" in o for o in outputs)
    status = json.loads((stopped / "run.json").read_text())
    assert status["status"] == "interrupted" and status["checkpoint_step"] == 13
    alone = tmp_path / "alone"
    shutil.copytree(stopped, alone)
    codes, outputs = finish(launch(["run", "--resume", stopped]))
    assert codes == [0, 0], outputs
    assert metrics(stopped) == metrics(whole)
    resumed = invoke_cli("run", "--resume", alone)
    assert resumed.exit_code == 0, resumed.output
    status = json.loads((alone / "run.json").read_text())
    assert status["status"] == "completed" and status["step"] == 40 and status["resumed_at"] == [13]
    assert [r["step"] for r in metrics(alone)] == [1, 10, 20, 30, 40]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGKILL", "raise"])
def test_a_process_killed_or_failing_ends_the_other_and_resume_continues(tmp_path, write_recipe, one_thread, how):
    recipe = write_recipe(RUN_RECIPE)
    out = tmp_path / "run"
    procs = launch(["run", recipe, "--out", out, "--no-eval", "-q"], env={"IMAE_TEST_FAIL": f"1:30:{how}"})
    procs[1].wait(timeout=90)
    gone = time.monotonic()
    codes, outputs = finish(procs)
    assert time.monotonic() - gone < 15  # the survivor stops within seconds, it does not hang
    assert codes[1] == (-9 if how == "SIGKILL" else 1), outputs
    assert codes[0] == 2, outputs
    assert "another process of this run stopped" in outputs[0] and "Traceback" not in outputs[0]
    assert "continue with: imae-kit run --resume" in " ".join(outputs[0].split())
    status = json.loads((out / "run.json").read_text())
    assert status["status"] == "stopped" and status["checkpoint_step"] == 20
    if how == "raise":
        assert "fail_at_step: raised on process 1 at step 30" in outputs[1]
        return
    resumed = invoke_cli("run", "--resume", out)  # one process continues what two wrote
    assert resumed.exit_code == 0, resumed.output
    assert [r["step"] for r in metrics(out)] == [1, 10, 20, 30, 40]
    assert json.loads((out / "run.json").read_text())["resumed_at"] == [20]


def test_under_torchrun_auto_and_cuda_mean_the_gpu_of_local_rank(monkeypatch):
    from imae_kit.errors import RunError
    from imae_kit.training.setup import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert resolve_device("auto") == torch.device("cuda")  # one process: torch's current GPU
    monkeypatch.setattr(distributed, "_current", distributed.ProcessContext(rank=5, world_size=8, local_rank=1))
    assert resolve_device("auto") == resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")  # gloo workers on the CPU
    with pytest.raises(RunError, match="LOCAL_RANK"):
        resolve_device("cuda:0")


def test_a_signal_relayed_by_the_launcher_is_not_a_second_stop(monkeypatch):
    """torchrun (or srun) passes the terminal's Ctrl-C or the scheduler's SIGTERM on to processes that got it
    already: a repeat within 2 s is the same request; a later one stops at once, as in one process."""
    import signal as signals

    from imae_kit.training import signals as module

    clock = [100.0]
    monkeypatch.setattr(module.time, "monotonic", lambda: clock[0])
    flag = module.StopFlag()
    flag.handler(signals.SIGINT, None)
    clock[0] += 0.5
    flag.handler(signals.SIGTERM, None)  # relayed: ignored
    assert flag.signum == signals.SIGINT and flag.name == "Ctrl-C"
    clock[0] += 3.0
    with pytest.raises(KeyboardInterrupt):
        flag.handler(signals.SIGINT, None)
