"""The public Python API: the README's example runs as written, and its objects match the run directory."""

from __future__ import annotations

import json
import re

import torch

import imae_kit
from imae_kit.runs import EVAL_FILE

from conftest import REPO


def _readme_example() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_runs_and_its_run_matches_the_directory(tmp_path, monkeypatch, one_thread):
    (tmp_path / "recipes").symlink_to(REPO / "recipes")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_readme_example(), "README.md", "exec"), namespace)
    run, again = namespace["run"], namespace["again"]
    assert run.path == tmp_path / "runs" / "notebook" or run.path.resolve() == (tmp_path / "runs/notebook").resolve()
    assert run.status["status"] == "completed" and run.status["step"] == 60
    assert not run.model.training
    on_disk = json.loads((run.path / EVAL_FILE).read_text())
    assert again["accuracy"]["accuracy"] == on_disk["accuracy"]["accuracy"]
    assert again["discrete"]["mutual_information"] == run.evaluation["discrete"]["mutual_information"]
    lines = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert run.metrics == lines and run.metrics[-1]["step"] == 60


def test_load_run_gives_the_trained_weights(tmp_path, one_thread):
    recipe = imae_kit.load_recipe(REPO / "recipes" / "imae_mnist.toml", overrides=['data={ name = "toy_shapes" }'],
                                  steps=5)
    run = imae_kit.train(recipe, out=tmp_path / "r", evaluate=False)
    assert run.evaluation is None
    state = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)["model"]
    for name, tensor in run.model.state_dict().items():
        assert torch.equal(tensor, state[name]), name


def test_the_api_names_are_exported():
    for name in ("load_recipe", "train", "load_run", "evaluate", "Run", "register_term", "Step"):
        assert name in imae_kit.__all__ and getattr(imae_kit, name) is not None
    assert callable(imae_kit.train) and callable(imae_kit.evaluate)
