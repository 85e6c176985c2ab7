"""Shared fixtures: small recipes on the built-in toy data set, and a CLI runner."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

# One torch thread in the tests and in the training processes they start: on a 2-core machine shared
# with anything else, torch's two intra-op threads stall (4x slower steps were measured), and the
# tests compare runs with one another, never across thread counts.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from click.testing import CliRunner  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"

# Shrinks any shipped recipe to the toy data set and small networks, keeping its objective.
TOY_OVERRIDES = (
    'data={ name = "toy_shapes" }',
    "model.latent_continuous=4",
    "model.latent_discrete=3",
    "model.encoder.hidden=[64]",
    "model.decoder.hidden=[64]",
    "model.encoder.batch_norm=false",
    'train.optimizer="adam"',
    "train.lr=0.003",
    "train.batch_size=49",
    "train.log_every=20",
    "train.lr_decay=1.0",
    "eval={}",
)

MINIMAL_RECIPE = textwrap.dedent(
    """\
    name = "toy"
    description = "a small recipe for tests"

    [vars]
    beta = 2.0

    [data]
    name = "toy_shapes"

    [model]
    latent_continuous = 4
    latent_discrete = 3

    [model.encoder]
    hidden = [32]

    [model.decoder]
    hidden = [32]

    [objective]
    monitor = ["discrete_mi"]

    [[objective.terms]]
    name = "reconstruction"
    weight = 1.0

    [[objective.terms]]
    name = "marginal_kl"
    weight = "${beta}"

    [train]
    optimizer = "adam"
    lr = 0.003
    batch_size = 49
    steps = 30
    log_every = 10
    """
)


@pytest.fixture
def write_recipe(tmp_path):
    """Write recipe text (default: MINIMAL_RECIPE) to tmp_path/NAME and return its path."""

    def write(text: str = MINIMAL_RECIPE, name: str = "recipe.toml") -> Path:
        p = tmp_path / name
        p.write_text(text)
        return p

    return write


@pytest.fixture
def cli_runner():
    """Invoke the imae-kit CLI in-process; returns click's Result."""
    from imae_kit.cli import cli

    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)

    return invoke


@pytest.fixture
def one_thread():
    """Train in-process on one thread (much faster on a busy 2-core machine); restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def invoke_cli(*args: object):
    """Run the imae-kit CLI in-process (exceptions caught into the Result, as a shell would see them)."""
    from imae_kit.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args])
