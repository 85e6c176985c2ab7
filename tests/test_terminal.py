"""What the terminal shows: progress as plain lines off a terminal (SLURM, nohup, a pipe) and rich bars on
one; tables that never cut a name or a value however narrow the console; no CUDA_HOME notice from compiling
the MIG kernel on a machine without a GPU, while real warnings still show."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import textwrap

import pytest
from rich.console import Console

from imae_kit import progress as P
from imae_kit import registry

from conftest import RECIPES, REPO, TOY_OVERRIDES, invoke_cli

TOY = tuple(arg for override in TOY_OVERRIDES for arg in ("--set", override))
PLAIN_LINE = re.compile(r"^train  (\d+)/60 \(\d+%\)  epoch (\d+)  elapsed \d+:\d\d:\d\d  eta (\?|\d+:\d\d:\d\d)  "
                        r"(?:([\d,]+) images/s  )?loss \S+ \| (.*)$")


# ----------------------------------------------------------------------------- progress off a terminal

def test_training_off_a_terminal_prints_a_plain_line_every_logged_step(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("COLUMNS", "60")  # a narrow log: the lines are still whole
    result = invoke_cli("run", RECIPES / "imae_mnist.toml", *TOY, "--steps", "60", "--no-eval", "--out",
                        tmp_path / "run")  # CliRunner's stderr is not a terminal
    assert result.exit_code == 0, result.output
    lines = [m for m in map(PLAIN_LINE.match, result.output.splitlines()) if m]
    assert [int(m.group(1)) for m in lines] == [1, 20, 40, 60], result.output  # log_every = 20, and the last
    assert [int(m.group(2)) for m in lines] == [0, 1, 3, 4]  # 12 steps an epoch (batch 49 of 600)
    assert all(m.group(4) and int(m.group(4).replace(",", "")) > 0 for m in lines[1:]), "images/s"
    terms = ("reconstruction", "discrete_mi", "vat", "marginal_kl", "total_correlation", "posterior_kl",
             "aggregate_kl")
    for m in lines:
        assert [part.split()[0] for part in m.group(5).split(" | ")] == list(terms)
    assert "━" not in result.output, "no bar drawn into a log"


def test_quiet_prints_no_progress_lines(tmp_path, one_thread):
    result = invoke_cli("run", RECIPES / "imae_mnist.toml", *TOY, "--steps", "20", "--no-eval", "-q", "--out",
                        tmp_path / "run")
    assert result.exit_code == 0 and "train  " not in result.output


def test_long_work_off_a_terminal_prints_a_line_every_tenth_and_at_the_end(capsys):
    with P.progress_callback("MIG entropies", 1000, True) as advance:
        for _ in range(1000):
            advance(1)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split()[2] for line in lines] == [f"{p}%" for p in range(10, 101, 10)]
    assert all(line.startswith("MIG entropies ") and "elapsed " in line and "eta " in line for line in lines)

    with P.status("converting mnist.pkl.gz to the official IDX files"):
        pass
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "converting mnist.pkl.gz to the official IDX files ..."
    assert lines[1].startswith("converting mnist.pkl.gz to the official IDX files: done in ")

    with P.progress(transfer=True) as bar:  # data provisioning: bytes written
        task = bar.add_task("writing MNIST/raw", total=4 * 2**20)
        for _ in range(4):
            bar.advance(task, 2**20)
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1].startswith("writing MNIST/raw  100%  4.2/4.2 MB  elapsed ")


def test_on_a_terminal_the_bars_are_rich_live_bars():
    terminal = Console(file=io.StringIO(), force_terminal=True)
    assert type(P.progress(out=terminal)) is P.Progress
    assert isinstance(P.progress(out=Console(file=io.StringIO())), P.PlainProgress)
    assert type(P.progress(out=Console(file=io.StringIO()), enabled=False)) is P.Progress  # quiet: nothing


# ----------------------------------------------------------------------------- tables never cut a name

def _columns(monkeypatch, columns: int) -> None:
    """A console ``columns`` wide, as a pipe or terminal of that width gives it (rich reads COLUMNS when the
    Console is made, and imae_kit.cli makes its consoles on import)."""
    from imae_kit import cli

    monkeypatch.setenv("COLUMNS", str(columns))
    monkeypatch.setattr(cli, "console", Console())
    monkeypatch.setattr(cli, "err_console", Console(stderr=True))


def _cells(output: str) -> list[str]:
    """Each table cell's text with its folded lines put back together (whitespace dropped), and each line
    outside a table as it is: what a reader gets back from the screen."""
    cells, block = [], []
    for line in output.splitlines() + [""]:
        if line.startswith("│"):
            block.append([part.strip() for part in line.strip("│").split("│")])
            continue
        cells += ["".join("".join(row[i] for row in block).split()) for i in range(len(block[0]))] if block else []
        block = []
        cells.append("".join(line.split()))
    return cells


def test_the_terms_table_keeps_every_name_and_parameter_whole_at_any_width(monkeypatch):
    """Every width from 30 to 130 columns: the narrow ones get a listing, the others a table whose names
    never wrap and whose descriptions fold; nothing is ever cut off with an ellipsis."""
    from imae_kit.compare import term_rows

    rows = term_rows()
    assert sorted(row["name"] for row in rows) == sorted(registry.names("term")) and len(rows) >= 8
    for columns in range(30, 131):
        _columns(monkeypatch, columns)
        result = invoke_cli("terms")
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert all(len(line) <= columns for line in lines if "│" in line), columns
        for row in rows:  # each name whole on one line
            assert any(re.search(rf"(^|[\s│]){re.escape(row['name'])}($|[\s│])", line) for line in lines), \
                (columns, row["name"], result.output)
        cells = _cells(result.output)
        for row in rows:  # and every parameter and its default, perhaps folded across lines, never cut
            assert any("".join(row["params"].split()) in cell for cell in cells), (columns, row["params"])
        assert "…" not in result.output, columns


def test_show_compare_data_list_and_sweep_tables_cut_nothing_at_60_columns(tmp_path, monkeypatch, one_thread):
    _columns(monkeypatch, 40)  # narrower than the recipe's longest lines
    result = invoke_cli("show", RECIPES / "imae_mnist.toml")
    assert result.exit_code == 0 and "…" not in result.output
    flat = " ".join(result.output.split())
    assert 'description = "IMAE (PAPER.md eq. 10, y terms weighted as IMSAT does) on MNIST"' in flat
    assert 'monitor = ["posterior_kl", "aggregate_kl"]' in flat
    assert 'params = { scale = 1.0, estimator = "batch" }' in flat

    _columns(monkeypatch, 60)
    recipes = [RECIPES / f"{m}_mnist.toml" for m in ("imae", "beta_vae", "infovae", "jointvae")]
    result = invoke_cli("compare", *recipes)
    assert result.exit_code == 0 and "…" not in result.output
    for name in ("reconstruction", "total_correlation", "capacity_kl", "aggregate_kl"):
        assert re.search(rf"(^|[\s│]){name}($|[\s│])", result.output, re.M), name
    assert "-linear(0->10, epochs 10-20) [estimator='batch']" in result.output

    monkeypatch.setenv("IMAE_KIT_DATA", str(tmp_path / "a-rather-long-data-root-name" / "imae-kit-cache"))
    result = invoke_cli("data", "list", "--no-verify")
    assert result.exit_code == 0 and "…" not in result.output
    for name in ("mnist", "fashion_mnist", "dsprites (replica)"):
        assert re.search(rf"(^|[\s│]){re.escape(name)}($|[\s│])", result.output, re.M), name
    assert any(str(tmp_path / "a-rather-long-data-root-name") in cell for cell in _cells(result.output))

    result = invoke_cli("sweep", RECIPES / "imae_mnist.toml", *TOY, "--grid", "vars.beta=1,2", "--steps", "20",
                        "--no-eval", "-q", "--out", tmp_path / "sweep")
    assert result.exit_code == 0 and "…" not in result.output, result.output
    for label in ("reconstruction (last logged)", "total_correlation (last logged)"):
        assert label in result.output


# ----------------------------------------------------------------------------- torch.compile's CUDA_HOME notice

COMPILE = textwrap.dedent(
    """
    import logging, warnings
    from imae_kit.metrics import mixture
    warnings.simplefilter("always")
    compiled = mixture._compiled_kernel()  # what a large MIG does on first use
    with mixture.quiet_cuda_home_notice():
        logging.getLogger("torch.utils.cpp_extension").warning("a real problem with the C++ toolchain")
        warnings.warn("a real warning while compiling", RuntimeWarning)
    logging.getLogger("torch.utils.cpp_extension").warning("No CUDA runtime is found, using CUDA_HOME='/x'")
    print("compiled" if compiled is not None else "eager")
    """
)


@pytest.mark.slow
def test_compiling_the_mig_kernel_without_a_gpu_prints_no_cuda_home_notice_but_real_warnings(tmp_path):
    cuda_home = tmp_path / "cuda"  # a CUDA toolkit folder on a machine without a GPU: torch's notice case
    cuda_home.mkdir()
    env = {**os.environ, "CUDA_HOME": str(cuda_home), "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}
    done = subprocess.run([sys.executable, "-c", COMPILE], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    err = done.stderr
    notices = [line for line in err.splitlines() if "No CUDA runtime is found" in line]
    assert notices and all("'/x'" in line for line in notices), err  # only the one logged outside the compile
    assert "a real problem with the C++ toolchain" in err
    assert "a real warning while compiling" in err
