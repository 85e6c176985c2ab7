"""imae_kit.denormals: subnormal floats are flushed to zero in every intra-op thread of a process that calls
``flush_denormals`` before running torch code (the CLI does, first thing), so a trained model's steps keep their
speed; importing imae_kit alone changes nothing."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from conftest import REPO, TOY_OVERRIDES

x86 = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="FTZ/DAZ are x86 flags")

# a fresh process with two intra-op threads (the flag is per thread, inherited by threads created later)
PROBE = """
import sys, torch
torch.set_num_threads(2)
if sys.argv[1] == "torch-first":
    (torch.ones(1 << 18) * 2).sum()  # torch's thread pool exists before imae_kit is imported
import imae_kit
from imae_kit.denormals import denormal_mode, flush_denormals
if sys.argv[1] != "import-only":
    flush_denormals()
# fused Adam (the kernel a trained model slows) on second moments that are subnormal: how many stay so
p = torch.nn.Parameter(torch.zeros(1 << 18))
p.grad = torch.full_like(p, 1e-21)  # squared: 1e-42
adam = torch.optim.Adam([p], fused=True)
adam.step()
kept = torch.count_nonzero(adam.state[p]["exp_avg_sq"].view(torch.int32))
print(denormal_mode(), int(kept))
"""


def _probe(order: str, **env: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, order], capture_output=True, text=True, check=True, cwd=REPO,
                         env={**os.environ, "OMP_NUM_THREADS": "2", **env})
    mode, kept = out.stdout.split()
    return mode, int(kept)


@x86
def test_flushing_before_torch_work_reaches_every_thread():
    assert _probe("imae-kit-first") == ("flushed", 0)


@x86
def test_importing_imae_kit_alone_leaves_the_process_as_it_was():
    """The flag is process state (Python's floats obey it too): a library import must not set it."""
    assert _probe("import-only") == ("kept", 1 << 18)


@x86
def test_the_cli_flushes_and_run_json_says_so(tmp_path):
    """``python -m imae_kit run`` (the console script's main): every thread flushes, recorded in run.json."""
    out = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "imae_kit", "run", str(REPO / "recipes" / "imae_mnist.toml"), "-q",
                    "--no-eval", "--steps", "2", "--out", str(out), *[a for o in TOY_OVERRIDES for a in ("--set", o)]],
                   check=True, cwd=REPO, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert json.loads((out / "run.json").read_text())["denormals"] == "flushed"


@x86
def test_imae_kit_denormals_keep_leaves_them_alone():
    assert _probe("imae-kit-first", IMAE_KIT_DENORMALS="keep") == ("kept", 1 << 18)


@x86
def test_threads_made_before_the_import_are_reported_as_partial():
    """torch's pool made first: the main thread flushes, the worker does not, and the probe says so."""
    mode, kept = _probe("torch-first")
    assert mode == "partial" and 0 < kept < 1 << 18
