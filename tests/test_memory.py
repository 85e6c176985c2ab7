"""imae_kit.memory: freed CPU tensors keep their pages, so a training step of the same shapes faults none in."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from conftest import REPO

glibc_linux = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                 reason="mallopt is glibc's")

# a fresh process (the setting is process-wide): page faults while 64 MiB tensors are made and freed. glibc
# adapts its mmap threshold to freed blocks, but never beyond 32 MiB, so by default each such tensor is a
# fresh mapping of 16,384 pages (smaller tensors fault more or less often, as the threshold moves)
PROBE = """
import json, resource, sys, torch
from imae_kit.memory import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
for _ in range(10):
    (torch.ones(4096, 4096) * 2).sum()  # warm up: the heap grows to its size (it took up to 5 rounds)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    (torch.ones(4096, 4096) * 2).sum()
print(json.dumps({"applied": applied, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _probe(mode: str, **env: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
                         cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1", **env})
    return json.loads(out.stdout.strip().splitlines()[-1])


@glibc_linux
def test_kept_memory_faults_no_pages_in_where_glibcs_default_faults_in_every_tensor():
    kept, system = _probe("keep"), _probe("system")
    assert kept["applied"] is True and system["applied"] is False
    assert system["faults"] >= 10 * 2 * 16384 * 0.9, system  # 20 fresh tensors of 16,384 pages
    # kept: no fresh mapping per tensor. The heap still grows by a tensor or two over the first few rounds
    # (after 3 warm-up rounds the next 10 faulted 0, 16,384, 32,768 or 32,769 pages; after 10 warm-up rounds,
    # 0 in 6 of 6 runs), so this allows one late growth of the heap plus 1 MiB of the interpreter's own pages
    assert kept["faults"] <= 16384 + 256, kept


@glibc_linux
def test_imae_kit_malloc_system_leaves_glibc_alone():
    assert _probe("keep", IMAE_KIT_MALLOC="system")["applied"] is False
