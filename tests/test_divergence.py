"""The divergence guard and gradient clipping.

A plugin term (tests/fixtures/nan_term.py, written as a user would write one) goes non-finite at step
k: the run stops with a message naming the step and the term, exit status 2, run.json says why, and
the last good checkpoint is intact: it loads and equals the same recipe trained to that step.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from imae_kit.errors import DivergenceError
from imae_kit.recipe import parse_recipe
from imae_kit.runs import RunDir, load_checkpoint
from imae_kit.training import Trainer, index_batches

from conftest import REPO, invoke_cli as _invoke
from test_resume import assert_same_state


NAN_TERM = Path(__file__).parent / "fixtures" / "nan_term.py"


def _recipe(at_step: int = 12, where: str = "value", checkpoint_every: int = 5, steps: int = 40) -> str:
    return textwrap.dedent(
        f"""\
        name = "toy-nan"
        plugins = ["{NAN_TERM}"]

        [data]
        name = "toy_shapes"

        [model]
        latent_continuous = 4
        latent_discrete = 3

        [model.encoder]
        hidden = [32]

        [model.decoder]
        hidden = [32]

        [[objective.terms]]
        name = "reconstruction"
        weight = 1.0

        [[objective.terms]]
        name = "marginal_kl"
        weight = 2.0

        [[objective.terms]]
        name = "nan_at_step"
        weight = 0.01
        params = {{ at_step = {at_step}, where = "{where}" }}

        [train]
        lr = 0.003
        batch_size = 49
        steps = {steps}
        log_every = 1
        checkpoint_every = {checkpoint_every}

        [eval]
        """
    )


def _write(tmp_path: Path, text: str, name: str = "recipe.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_nan_term_stops_the_run_naming_step_and_term_and_keeps_the_last_good_checkpoint(tmp_path, one_thread):
    recipe = _write(tmp_path, _recipe(at_step=12, checkpoint_every=5))
    run_dir = tmp_path / "run"
    result = _invoke("run", recipe, "--out", run_dir, "-q", "--no-eval")
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    message = " ".join(result.output.split())
    assert message.startswith("error: training diverged at step 12: the value of term 'nan_at_step' is nan; "
                              "the last good checkpoint (step 10) is kept in"), message
    assert "set train.grad_clip" in message

    status = RunDir(run_dir).read_status()
    assert status["status"] == "diverged" and status["step"] == 12 and status["diverged_term"] == "nan_at_step"
    assert status["checkpoint_step"] == 10
    assert " ".join(status["stop_reason"].split()) == message.removeprefix("error: ")
    # the updates before step 12 were logged, the failed one was not
    assert [r["step"] for r in RunDir(run_dir).read_metrics()] == list(range(1, 13))
    assert sorted(p.name for p in run_dir.glob(".*.tmp")) == []

    # the checkpoint is intact: it loads with weights_only=True and is the recipe trained for 10 steps
    good = load_checkpoint(run_dir / "checkpoint.pt")
    assert good["step"] == 10
    assert _invoke("run", recipe, "--out", tmp_path / "ten", "--steps", "10", "-q", "--no-eval").exit_code == 0
    ten = load_checkpoint(tmp_path / "ten" / "checkpoint.pt")
    for key in ("model", "optimizer", "rng"):
        assert_same_state(good[key], ten[key], key)

    # fix the cause and continue from the last good checkpoint: the same as a run that never had the NaN
    result = _invoke("run", recipe, "--resume", run_dir, "--set", "objective.terms.nan_at_step.params.at_step=1000",
                     "--allow-change", "objective.terms.nan_at_step.params.at_step", "-q", "--no-eval")
    assert result.exit_code == 0, result.output
    healthy = _write(tmp_path, _recipe(at_step=1000, checkpoint_every=5), "healthy.toml")
    assert _invoke("run", healthy, "--out", tmp_path / "healthy", "-q", "--no-eval").exit_code == 0
    assert_same_state(load_checkpoint(run_dir / "checkpoint.pt")["model"],
                      load_checkpoint(tmp_path / "healthy" / "checkpoint.pt")["model"])
    assert RunDir(run_dir).read_metrics() == RunDir(tmp_path / "healthy").read_metrics()
    assert RunDir(run_dir).read_status()["status"] == "completed"
    assert RunDir(run_dir).read_status()["diverged_term"] is None


def test_a_nan_gradient_is_caught_and_blamed_on_its_term_by_the_command_line(tmp_path):
    """The term's value stays finite (0) but its gradient is NaN: the guard checks the gradient norm and
    recomputes the step from the same random state to find the term. A real process: exit status 2,
    one or two lines on stderr, no traceback."""
    recipe = _write(tmp_path, _recipe(at_step=7, where="gradient", checkpoint_every=5))
    run_dir = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "250", "TERM": "dumb", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "imae_kit.cli", "run", str(recipe), "--out", str(run_dir), "-q",
                           "--no-eval"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2
    err = " ".join(proc.stderr.split())
    assert "training diverged at step 7: the gradient of term 'nan_at_step' is nan (first in encoder." in err
    assert "); the last good checkpoint (step 5) is kept" in err
    status = RunDir(run_dir).read_status()
    assert (status["status"], status["step"], status["diverged_term"]) == ("diverged", 7, "nan_at_step")
    assert load_checkpoint(run_dir / "checkpoint.pt")["step"] == 5


def test_divergence_before_the_first_checkpoint_says_so(tmp_path, one_thread):
    rd = RunDir.create("nan", out=tmp_path / "run")
    trainer = Trainer(parse_recipe(_recipe(at_step=3, checkpoint_every=0), source="nan.toml"), rd, progress=False)
    with pytest.raises(DivergenceError, match=r"at step 3: the value of term 'nan_at_step' is nan; no checkpoint "
                                              r"had been written yet \(set train.checkpoint_every"):
        trainer.run()
    assert not rd.checkpoint_path.exists()
    assert rd.read_status()["status"] == "diverged"


# ----------------------------------------------------------------------------- gradient clipping

CLIP_RECIPE = textwrap.dedent(
    """\
    name = "toy-clip"

    [data]
    name = "toy_shapes"

    [model]
    latent_continuous = 4
    latent_discrete = 3

    [model.encoder]
    hidden = [32]

    [model.decoder]
    hidden = [32]

    [[objective.terms]]
    name = "reconstruction"
    weight = 1.0

    [[objective.terms]]
    name = "marginal_kl"
    weight = 2.0

    [train]
    optimizer = "sgd"
    momentum = 0.0
    lr = 0.01
    batch_size = 49
    steps = 1
    log_every = 1
    """
)


def _one_step(tmp_path: Path, name: str, grad_clip: float) -> tuple[dict, dict, dict]:
    """(parameters before, parameters after one trainer step, the gradient of that step computed by hand)."""
    recipe = parse_recipe(CLIP_RECIPE, overrides=[f"train.grad_clip={grad_clip}"], source=f"{name}.toml")
    # the same seed gives the same initial model; replay the trainer's first step by hand
    manual = Trainer(recipe, None, progress=False)
    before = {n: p.detach().clone() for n, p in manual.model.named_parameters()}
    _, index = next(index_batches(recipe.train.seed, len(manual.train_set), recipe.train.batch_size, 0))
    x = manual.train_set.get_batch(index).x
    manual.model.train()
    out = manual.objective(manual.make_step(x, 0), log=True)
    out.loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in manual.model.named_parameters()}

    trainer = Trainer(recipe, RunDir.create(name, out=tmp_path / name), progress=False)
    trainer.run()
    after = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    return before, after, grads


def test_gradient_clipping_scales_the_whole_gradient_to_the_clip_norm(tmp_path, one_thread):
    """clip_grad_norm_ semantics: one global L2 norm over every parameter's gradient; if it exceeds c the
    gradient is scaled by c / (norm + 1e-6). With plain SGD the update is then -lr * that gradient."""
    clip, lr = 0.1, 0.01
    before, after, grads = _one_step(tmp_path, "clipped", clip)
    norm = math.sqrt(sum(float(g.double().square().sum()) for g in grads.values()))
    assert norm > 20 * clip, "the test needs a gradient well above the clip norm"
    scale = clip / (norm + 1e-6)
    for name, g in grads.items():
        expected = before[name].double() - lr * scale * g.double()
        assert torch.allclose(after[name].double(), expected, rtol=0, atol=1e-7), name
    # the update's global norm is lr * c: the whole gradient was scaled, not each parameter's on its own
    update = math.sqrt(sum(float((after[n].double() - before[n].double()).square().sum()) for n in before))
    assert update == pytest.approx(lr * clip, rel=1e-5)


def test_a_clip_above_the_gradient_norm_changes_nothing(tmp_path, one_thread):
    _, unclipped, grads = _one_step(tmp_path, "none", 0.0)
    norm = math.sqrt(sum(float(g.double().square().sum()) for g in grads.values()))
    _, loose, _ = _one_step(tmp_path, "loose", 2 * norm)
    for name in unclipped:  # a scale of min(1, c / norm) = 1 leaves the update bit for bit
        assert torch.equal(unclipped[name], loose[name]), name


@pytest.mark.parametrize("checkpoint_every", [1, 2])
def test_weights_that_overflow_are_blamed_and_never_checkpointed(tmp_path, one_thread, checkpoint_every):
    """An SGD step with lr = 3e38 (near the float32 maximum) turns finite gradients into infinite weights.
    Caught by the checkpoint due right after it (checkpoint_every = 1) or by the next step, whose
    distributions refuse non-finite parameters (checkpoint_every = 2: 21 is not a checkpoint step);
    either way the message blames the parameters and the checkpoint on disk stays the last good one."""
    text = CLIP_RECIPE.replace("steps = 1", f"steps = 20\ncheckpoint_every = {checkpoint_every}")
    rd = RunDir.create("overflow", out=tmp_path / "run")
    Trainer(parse_recipe(text, source="overflow.toml"), rd, progress=False).run()
    assert load_checkpoint(rd.checkpoint_path)["step"] == 20

    # continue with an absurd learning rate (the resume applies the recipe's lr, not the checkpoint's)
    recipe = parse_recipe(text, overrides=["train.lr=3e38", "train.steps=30"], source="overflow.toml")
    with pytest.raises(DivergenceError, match=r"at step 21: the value of the parameters is (-?inf|nan) \(first in "
                                              r"[a-z.0-9]+\); the last good checkpoint \(step 20\) is kept"):
        Trainer(recipe, rd, progress=False).run(resume=True)
    kept = load_checkpoint(rd.checkpoint_path)
    assert kept["step"] == 20
    assert all(bool(torch.isfinite(t).all()) for t in kept["model"].values() if t.is_floating_point())
    status = rd.read_status()
    assert (status["status"], status["step"], status["diverged_term"]) == ("diverged", 21, "(the parameters)")
