"""train.tensorboard / --tensorboard: the event file holds what metrics.jsonl and eval.json hold."""

from __future__ import annotations

import json

import pytest

from imae_kit.training import tracking

from conftest import RECIPES, TOY_OVERRIDES, invoke_cli

SETS = [*TOY_OVERRIDES, "eval.entropy_samples=200", "eval.mig_samples=200", "train.eval_every=10",
        "train.eval_points=60", "train.eval_samples=50"]


def test_the_event_file_holds_every_logged_step_and_the_evaluation(tmp_path, one_thread):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    result = invoke_cli("run", RECIPES / "imae_dsprites.toml", "--steps", "20", "--out", out, "-q", "--tensorboard",
                        *[a for s in SETS for a in ("--set", s)])
    assert result.exit_code == 0, result.output
    events = EventAccumulator(str(out / tracking.TENSORBOARD_DIR), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    loss = {e.step: e.value for e in events.Scalars("loss")}
    assert loss == pytest.approx({r["step"]: r["loss"] for r in records}, rel=1e-6)
    for label, term in records[-1]["terms"].items():
        assert events.Scalars(f"terms/{label}/value")[-1].value == pytest.approx(term["value"], rel=1e-6)
        assert events.Scalars(f"terms/{label}/contribution")[-1].value == pytest.approx(term["contribution"],
                                                                                      rel=1e-6, abs=1e-12)
    assert [e.step for e in events.Scalars("eval_every/accuracy")] == [10, 20]
    evaluation = json.loads((out / "eval.json").read_text())
    assert events.Scalars("evaluation/accuracy of y (best matching)")[-1].value == pytest.approx(
        evaluation["accuracy"]["accuracy"], rel=1e-6)
    assert {f"figures/{k}" for k in evaluation["figures"]} <= set(events.Tags()["images"])


def test_a_missing_tensorboard_package_is_one_clear_line_and_nothing_is_written(tmp_path, monkeypatch):
    def missing():
        raise tracking.RunError(f"train.tensorboard = true needs the tensorboard package (No module named "
                                f"'tensorboard'); install it with: {tracking.INSTALL}, or drop the option")

    monkeypatch.setattr("imae_kit.training.trainer.summary_writer_class", missing)
    monkeypatch.chdir(tmp_path)
    result = invoke_cli("run", RECIPES / "imae_mnist.toml", "--steps", "2", "--out", tmp_path / "run", "-q",
                        "--tensorboard", *[a for s in TOY_OVERRIDES for a in ("--set", s)])
    assert result.exit_code == 2 and "pip install -e '.[tensorboard]'" in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


def test_summary_writer_class_names_the_install_command_when_the_import_fails(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # an import of it now raises ImportError
    with pytest.raises(tracking.RunError, match=r"pip install -e '\.\[tensorboard\]'"):
        tracking.summary_writer_class()
