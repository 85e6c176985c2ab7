"""Runs that survive: SIGKILL at random moments and Ctrl-C, then --resume, reach the uninterrupted run
bit for bit; a resume refuses a changed recipe unless the change is allowed; --steps extends a run.

The subprocess tests run the real command line (``python -m imae_kit.cli run``) with one thread
(OMP_NUM_THREADS=1, the same for every process, so that the runs compare bit for bit) on a toy recipe
that has every piece of state a resume must restore: Adam's moments, a per-epoch learning-rate decay,
BatchNorm running statistics, a warm-up weight schedule, random Gumbel and Gaussian draws, and a
monitored term (VAT) that draws random numbers on logging steps.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from imae_kit.precision import cpu_has_native_bf16
from imae_kit.runs import RunDir, load_checkpoint

from conftest import REPO, invoke_cli as _invoke


FIXTURES = Path(__file__).parent / "fixtures"
TOTAL = 150
CHECKPOINT_EVERY = 7

RESUME_RECIPE = textwrap.dedent(
    f"""\
    name = "toy-resume"
    description = "every piece of state a resume must restore, on the toy data set"

    [vars]
    beta = 2.0

    [data]
    name = "toy_shapes"

    [model]
    latent_continuous = 4
    latent_discrete = 3

    [model.encoder]
    hidden = [32]
    batch_norm = true

    [model.decoder]
    hidden = [32]

    [objective]
    monitor = ["discrete_mi", "vat"]

    [[objective.terms]]
    name = "reconstruction"
    weight = 1.0

    [[objective.terms]]
    name = "marginal_kl"
    weight = {{ schedule = "linear_warmup", value = "${{beta}}", steps = 30 }}

    [train]
    optimizer = "adam"
    lr = 0.003
    lr_decay = 0.9
    batch_size = 49
    steps = {TOTAL}
    log_every = 1
    checkpoint_every = {CHECKPOINT_EVERY}

    [eval]
    """
)

# One thread in every process: fast on a busy 2-core machine, and the same reduction order everywhere.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "COLUMNS": "200", "TERM": "dumb",
       "PYTHONPATH": str(REPO)}
SAFETY_TIMEOUT = 900.0  # seconds; only so that a broken build fails instead of hanging the suite


# ----------------------------------------------------------------------------- helpers

def _command(*args: object, paused_write: int | None = None) -> list[str]:
    if paused_write is None:
        return [sys.executable, "-m", "imae_kit.cli", *map(str, args)]
    return [sys.executable, str(FIXTURES / "paused_checkpoint_write.py"), *map(str, args)]


def _launch(tmp: Path, *args: object, paused_write: int | None = None, marker: Path | None = None):
    env = dict(ENV)
    if paused_write is not None:
        env.update(IMAE_TEST_PAUSE_WRITE=str(paused_write), IMAE_TEST_PAUSE_MARKER=str(marker))
    out = open(tmp / f"out-{time.monotonic_ns()}.txt", "w+")
    proc = subprocess.Popen(_command(*args, paused_write=paused_write), stdout=out, stderr=subprocess.STDOUT,
                            env=env, cwd=tmp)
    proc.log = out  # type: ignore[attr-defined]
    return proc


def _output(proc) -> str:
    proc.log.seek(0)
    return proc.log.read()


def _run_to_end(tmp: Path, *args: object) -> tuple[int, str]:
    proc = _launch(tmp, *args)
    proc.wait(timeout=SAFETY_TIMEOUT)
    return proc.returncode, _output(proc)


def _wait_for(predicate, proc, what: str) -> bool:
    """Poll ``predicate`` until it holds (True) or ``proc`` exits first (False)."""
    deadline = time.monotonic() + SAFETY_TIMEOUT
    while not predicate():
        if proc.poll() is not None:
            return predicate()
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"gave up waiting for {what}:\n{_output(proc)}")
        time.sleep(0.005)
    return True


def _kill(proc, sig: int = signal.SIGKILL) -> None:
    proc.send_signal(sig)
    proc.wait(timeout=SAFETY_TIMEOUT)


def _status(run_dir: Path) -> dict:
    return RunDir(run_dir).read_status()


def _last_logged_step(run_dir: Path) -> int:
    records = RunDir(run_dir).read_metrics()
    return records[-1]["step"] if records else 0


def _training_past(run_dir: Path, proc, step: int):
    """True once *this* process (run.json names its pid after the resume's truncation) logged ``step``."""
    return lambda: _status(run_dir).get("pid") == proc.pid and _last_logged_step(run_dir) >= step


def _checkpoint_step(run_dir: Path) -> int:
    path = run_dir / "checkpoint.pt"
    return int(load_checkpoint(path)["step"]) if path.is_file() else 0


def _temp_files(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob(".*.tmp"))


def assert_same_state(a, b, where: str = "") -> None:
    """Nested checkpoint contents are equal, tensors bit for bit (torch.equal)."""
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_run(run_dir: Path, reference: Path) -> None:
    """Final checkpoint (model, optimiser, scheduler, RNG, step) and metrics.jsonl equal the reference's."""
    got, want = load_checkpoint(run_dir / "checkpoint.pt"), load_checkpoint(reference / "checkpoint.pt")
    assert got["step"] == want["step"] == TOTAL
    for key in ("model", "optimizer", "scheduler", "rng"):
        assert_same_state(got[key], want[key], key)
    records, expected = RunDir(run_dir).read_metrics(), RunDir(reference).read_metrics()
    assert [r["step"] for r in records] == list(range(1, TOTAL + 1)), "each step logged exactly once"
    assert records == expected, "every logged value equals the uninterrupted run's"
    assert _status(run_dir)["status"] == "completed"
    assert _temp_files(run_dir) == [], "a resume removes the temp files of writes that a kill cut short"


# ----------------------------------------------------------------------------- fixtures

def _recipe_file(tmp_path_factory, precision: str) -> Path:
    path = tmp_path_factory.mktemp("recipe") / f"toy_resume_{precision}.toml"
    path.write_text(RESUME_RECIPE.replace("[eval]", f'precision = "{precision}"\n\n[eval]'))
    return path


def _reference_run(recipe_file: Path, tmp_path_factory) -> Path:
    """The same recipe and seed, trained without interruption by the same command line."""
    tmp = tmp_path_factory.mktemp("reference")
    rc, out = _run_to_end(tmp, "run", recipe_file, "--out", tmp / "ref", "-q", "--no-eval")
    assert rc == 0, out
    assert load_checkpoint(tmp / "ref" / "checkpoint.pt")["step"] == TOTAL
    return tmp / "ref"


@pytest.fixture(scope="module")
def recipe_file(tmp_path_factory) -> Path:
    return _recipe_file(tmp_path_factory, "fp32")


@pytest.fixture(scope="module")
def reference_run(recipe_file, tmp_path_factory) -> Path:
    return _reference_run(recipe_file, tmp_path_factory)


@pytest.fixture(scope="module", params=["fp32", "bf16"])
def kill_case(request, tmp_path_factory) -> tuple[Path, Path]:
    """(recipe, uninterrupted reference run) in each precision; bf16 where the CPU has it natively."""
    if request.param == "fp32":
        return request.getfixturevalue("recipe_file"), request.getfixturevalue("reference_run")
    if not cpu_has_native_bf16():
        pytest.skip("this CPU has no native bf16 (AMX-BF16 / AVX512-BF16)")
    recipe = _recipe_file(tmp_path_factory, "bf16")
    return recipe, _reference_run(recipe, tmp_path_factory)


# ----------------------------------------------------------------------------- SIGKILL

@pytest.mark.slow
def test_sigkill_at_random_moments_and_during_checkpoint_writes_then_resume_is_the_same_run(tmp_path, kill_case):
    recipe_file, reference_run = kill_case
    rng = random.Random(20240605)
    run_dir = tmp_path / "run"
    resume = ("run", "--resume", run_dir, "-q", "--no-eval")
    landed_in_write = 0

    # 1. The first process is killed inside its 2nd checkpoint write (step 14), frozen halfway through
    #    the temp file: the kill lands during a write with certainty, not by luck.
    marker = tmp_path / "paused-1"
    proc = _launch(tmp_path, "run", recipe_file, "--out", run_dir, "-q", "--no-eval", paused_write=2, marker=marker)
    assert _wait_for(marker.exists, proc, "the paused checkpoint write"), _output(proc)
    _kill(proc)
    temps = _temp_files(run_dir)
    assert [t.name.startswith(".checkpoint.pt.") for t in temps] == [True], "the half-written temp file is left"
    assert temps[0].stat().st_size > 0
    assert _checkpoint_step(run_dir) == CHECKPOINT_EVERY, "the previous checkpoint is intact and loads"
    assert _last_logged_step(run_dir) == 2 * CHECKPOINT_EVERY, "metrics past the checkpoint, for the resume to drop"
    assert _status(run_dir)["status"] == "running", "a killed run's status says running; resume accepts it"
    landed_in_write += 1

    # 2. Four kills at random steps of resumed processes, each a random fraction of a step later.
    for _ in range(4):
        start = _checkpoint_step(run_dir)
        target = rng.randint(start + 1, min(start + 30, TOTAL - 10))
        proc = _launch(tmp_path, *resume)
        assert _wait_for(_training_past(run_dir, proc, target), proc, f"step {target}"), _output(proc)
        time.sleep(rng.uniform(0.0, 0.03))
        _kill(proc)
        landed_in_write += bool(_temp_files(run_dir))
        assert _last_logged_step(run_dir) >= target and _checkpoint_step(run_dir) < TOTAL

    # 3. A kill at a random instant after launch, wherever it lands (import, restore, truncation, training).
    proc = _launch(tmp_path, *resume)
    time.sleep(rng.uniform(0.0, 4.0))
    _kill(proc)
    landed_in_write += bool(_temp_files(run_dir))

    # 4. A resumed process killed inside its first checkpoint write.
    start = _checkpoint_step(run_dir)
    marker = tmp_path / "paused-2"
    proc = _launch(tmp_path, *resume, paused_write=1, marker=marker)
    assert _wait_for(marker.exists, proc, "the paused checkpoint write"), _output(proc)
    _kill(proc)
    assert any(t.name.startswith(".checkpoint.pt.") for t in _temp_files(run_dir))
    assert _checkpoint_step(run_dir) == start, "the checkpoint being replaced is intact"
    landed_in_write += 1

    # 5. The last resume runs to the end.
    rc, out = _run_to_end(tmp_path, *resume)
    assert rc == 0, out
    assert landed_in_write >= 2
    assert_same_run(run_dir, reference_run)
    assert len(_status(run_dir)["resumed_at"]) >= 5


# ----------------------------------------------------------------------------- Ctrl-C

@pytest.mark.slow
@pytest.mark.parametrize("signum, name", [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")])
def test_ctrl_c_or_sigterm_checkpoints_after_the_current_step_says_how_to_resume_and_exits_128_plus_signal(
        tmp_path, recipe_file, reference_run, signum, name):
    """SIGTERM (what batch schedulers send before killing a job) is handled like Ctrl-C; exit 130 / 143."""
    run_dir = tmp_path / "run"
    target = random.Random(7 + signum).randint(20, 90)
    proc = _launch(tmp_path, "run", recipe_file, "--out", run_dir, "-q", "--no-eval")
    assert _wait_for(_training_past(run_dir, proc, target), proc, f"step {target}"), _output(proc)
    _kill(proc, signum)
    out = _output(proc)
    assert proc.returncode == 128 + signum, out
    assert "Traceback" not in out
    assert f"imae-kit run --resume {run_dir}" in out
    status = _status(run_dir)
    stopped = status["step"]
    assert status["status"] == "interrupted" and f"imae-kit run --resume {run_dir}" in status["stop_reason"]
    assert status["stop_reason"].startswith(f"interrupted by {name} at step {stopped} ")
    assert target <= stopped < TOTAL
    # it finished the step under way, logged it, and checkpointed exactly there
    assert _checkpoint_step(run_dir) == stopped == _last_logged_step(run_dir)
    assert status["checkpoint_step"] == stopped
    assert _temp_files(run_dir) == []

    rc, out = _run_to_end(tmp_path, "run", "--resume", run_dir, "-q", "--no-eval")
    assert rc == 0, out
    assert_same_run(run_dir, reference_run)
    assert _status(run_dir)["resumed_at"] == [stopped]


# ----------------------------------------------------------------------------- in-process: refusals, extension

def _snapshot(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run_dir.iterdir()) if p.is_file()}


def _short_recipe(tmp_path: Path, steps: int = 40, log_every: int = 25) -> Path:
    text = RESUME_RECIPE.replace(f"steps = {TOTAL}", f"steps = {steps}").replace(
        "log_every = 1", f"log_every = {log_every}")
    path = tmp_path / "short.toml"
    path.write_text(text)
    return path


def test_resume_refuses_a_changed_recipe_naming_the_fields_and_writes_nothing(tmp_path, one_thread):
    recipe = _short_recipe(tmp_path, steps=20)
    run_dir = tmp_path / "run"
    assert _invoke("run", recipe, "--out", run_dir, "-q", "--no-eval", "--steps", "20").exit_code == 0
    # make it an unfinished run, as a kill would leave it
    RunDir(run_dir).write_status(status="running")
    before = _snapshot(run_dir)

    # the run's recipe.toml is resolved: a var can only be changed through the original recipe file
    result = _invoke("run", "--resume", run_dir, "-q", "--no-eval", "--set", "vars.beta=3")
    assert result.exit_code == 2 and "pass the original recipe file" in " ".join(result.output.split())

    result = _invoke("run", recipe, "--resume", run_dir, "-q", "--no-eval", "--set", "train.lr=0.01",
                     "--set", "vars.beta=3")
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    out = " ".join(result.output.split())
    assert "cannot resume" in out and "Traceback" not in out
    assert "train.lr (0.003 -> 0.01)" in out
    assert "objective.terms.marginal_kl.weight.value (2.0 -> 3)" in out
    assert "--allow-change objective.terms.marginal_kl.weight.value --allow-change train.lr" in out
    assert _snapshot(run_dir) == before, "a refused resume changes no file"

    # allowing one of the two changes is not enough; the message names only the other
    result = _invoke("run", recipe, "--resume", run_dir, "-q", "--no-eval", "--set", "train.lr=0.01",
                     "--set", "vars.beta=3", "--allow-change", "train.lr")
    out = " ".join(result.output.split())
    assert result.exit_code == 2 and "train.lr (" not in out and "marginal_kl.weight.value (2.0 -> 3)" in out
    assert _snapshot(run_dir) == before

    # the same recipe given explicitly (not the run's copy) is no change at all
    result = _invoke("run", recipe, "--resume", run_dir, "-q", "--no-eval", "--steps", "20")
    assert result.exit_code == 0, result.output


def test_resume_checks_before_writing(tmp_path, one_thread):
    recipe = _short_recipe(tmp_path, steps=20)
    run_dir = tmp_path / "run"
    assert _invoke("run", recipe, "--out", run_dir, "-q", "--no-eval").exit_code == 0
    before = _snapshot(run_dir)
    cases = [
        (("--resume", run_dir), "already completed 20 steps; to train further pass --steps N"),
        (("--resume", run_dir, "--steps", "30"), "train.steps (20 -> 30)"),
        (("--resume", run_dir, "--steps", "10", "--allow-change", "train.steps"), "already completed 20 steps"),
        ((recipe, "--out", tmp_path / "other", "--allow-change", "train.lr"), "only applies when continuing a run"),
        (("--resume", tmp_path / "nowhere"), "not found"),
        (("--resume", run_dir, "--out", tmp_path / "other"), "drop --out"),
        ((recipe, "--out", run_dir), "already exists and is not empty"),
        (("--resume", tmp_path), "is not a run directory"),
    ]
    for args, expected in cases:
        result = _invoke("run", *args, "-q", "--no-eval")
        assert result.exit_code == 2 and isinstance(result.exception, SystemExit), (args, result.output)
        assert expected in " ".join(result.output.split()), (args, result.output)
    assert _snapshot(run_dir) == before
    assert not (tmp_path / "other").exists()


def test_a_run_directory_in_use_cannot_be_resumed_by_a_second_process(tmp_path, one_thread):
    recipe = _short_recipe(tmp_path, steps=20)
    run_dir = tmp_path / "run"
    assert _invoke("run", recipe, "--out", run_dir, "-q", "--no-eval", "--steps", "10").exit_code == 0
    with RunDir(run_dir).locked():  # what a training process holds while it writes the run
        result = _invoke("run", "--resume", run_dir, "--steps", "20", "--allow-change", "train.steps", "-q",
                         "--no-eval")
    assert result.exit_code == 2 and f"in use by another imae-kit process (pid {os.getpid()})" in result.output
    assert load_checkpoint(run_dir / "checkpoint.pt")["step"] == 10
    result = _invoke("run", "--resume", run_dir, "--steps", "20", "--allow-change", "train.steps", "-q", "--no-eval")
    assert result.exit_code == 0, result.output


def test_more_steps_extend_a_completed_run_to_the_run_trained_that_long_from_the_start(tmp_path, one_thread):
    """--steps M --allow-change train.steps continues a completed N-step run; its weights equal an M-step run's.

    Nothing in a step depends on the budget: weight schedules and the per-epoch lr decay are functions of
    the step, and the data order of the (seed, epoch). The one visible difference is bookkeeping: the
    N-step run logged its last step (N) though N is not a multiple of log_every, so the extended
    metrics.jsonl has that one extra line; every line both runs logged is identical. Logging draws its
    random numbers (here VAT's, a monitored term) from a forked generator, so that extra line does not
    change the training either."""
    recipe = _short_recipe(tmp_path, steps=40, log_every=25)
    extended, direct = tmp_path / "extended", tmp_path / "direct"
    assert _invoke("run", recipe, "--out", extended, "-q", "--no-eval").exit_code == 0
    result = _invoke("run", "--resume", extended, "--steps", "70", "--allow-change", "train.steps", "-q", "--no-eval")
    assert result.exit_code == 0, result.output
    assert "completed, step 70/70" in result.output
    assert _invoke("run", recipe, "--out", direct, "--steps", "70", "-q", "--no-eval").exit_code == 0

    got, want = load_checkpoint(extended / "checkpoint.pt"), load_checkpoint(direct / "checkpoint.pt")
    assert got["step"] == want["step"] == 70
    for key in ("model", "optimizer", "scheduler", "rng"):
        assert_same_state(got[key], want[key], key)
    a, b = RunDir(extended).read_metrics(), RunDir(direct).read_metrics()
    assert [r["step"] for r in b] == [1, 25, 50, 70]
    assert [r["step"] for r in a] == [1, 25, 40, 50, 70]
    assert [r for r in a if r["step"] != 40] == b
    status = _status(extended)
    assert status["status"] == "completed" and status["resumed_at"] == [40]
    assert status["changed_on_resume"] == [{"step": 40, "fields": {"train.steps": [40, 70]}}]
    assert "steps = 70" in (extended / "recipe.toml").read_text()


def test_logging_frequency_does_not_change_training(tmp_path, one_thread):
    """A monitored term that draws random numbers (VAT) is measured on logging steps only: with its draws
    taken from a forked generator, log_every = 1 and log_every = 1000 train the very same weights."""
    recipe = _short_recipe(tmp_path, steps=30)
    for name, every in (("often", 1), ("rarely", 1000)):
        result = _invoke("run", recipe, "--out", tmp_path / name, "--set", f"train.log_every={every}", "-q",
                         "--no-eval")
        assert result.exit_code == 0, result.output
    assert len(RunDir(tmp_path / "often").read_metrics()) == 30
    assert [r["step"] for r in RunDir(tmp_path / "rarely").read_metrics()] == [1, 30]
    assert_same_state(load_checkpoint(tmp_path / "often" / "checkpoint.pt")["model"],
                      load_checkpoint(tmp_path / "rarely" / "checkpoint.pt")["model"])


def test_allowed_changes_take_effect_and_a_model_that_no_longer_fits_is_refused(tmp_path, one_thread):
    """The optimiser's settings come from the recipe, not the checkpoint: an allowed lr change applies
    from the resume on (as lr * lr_decay ** epoch); a changed optimiser starts afresh; a model whose
    shape changed cannot load the checkpoint and is refused before recipe.toml is rewritten."""
    recipe = _short_recipe(tmp_path, steps=20, log_every=1)
    run_dir = tmp_path / "run"
    assert _invoke("run", recipe, "--out", run_dir, "-q", "--no-eval").exit_code == 0
    before = _snapshot(run_dir)
    result = _invoke("run", recipe, "--resume", run_dir, "--steps", "30", "--set", "model.encoder.hidden=[16]",
                     "--allow-change", "train.steps", "--allow-change", "model.encoder.hidden", "-q", "--no-eval")
    assert result.exit_code == 2 and "does not fit the recipe's [model]" in " ".join(result.output.split())
    assert _snapshot(run_dir) == before

    result = _invoke("run", recipe, "--resume", run_dir, "--steps", "30", "--set", "train.lr=0.001",
                     "--allow-change", "train.steps", "--allow-change", "train.lr", "-q", "--no-eval")
    assert result.exit_code == 0, result.output
    records = RunDir(run_dir).read_metrics()
    assert [r["step"] for r in records] == list(range(1, 31))
    for r in records:  # 12 steps an epoch; lr_decay = 0.9
        lr = 0.003 if r["step"] <= 20 else 0.001
        assert r["lr"] == pytest.approx(lr * 0.9 ** r["epoch"], rel=1e-12), r["step"]

    result = _invoke("run", recipe, "--resume", run_dir, "--steps", "40", "--set", 'train.optimizer="sgd"',
                     "--set", "train.lr=0.001", "--allow-change", "train", "-q", "--no-eval")
    assert result.exit_code == 0, result.output
    state = load_checkpoint(run_dir / "checkpoint.pt")
    assert state["optimizer_class"] == "SGD" and state["step"] == 40
    assert all("momentum_buffer" in s for s in state["optimizer"]["state"].values())
    assert RunDir(run_dir).read_metrics()[-1]["lr"] == pytest.approx(0.001 * 0.9 ** 3, rel=1e-12)
