"""Runs that survive, part two: a full disk (or a folder that cannot be written) wherever imae-kit writes, a
damaged checkpoint or metrics line, a resumed run that remembers how it was started, and the fsync of every
atomic write.

A full disk is produced for real on a small tmpfs where the machine lets a test mount one (root, no
container restriction; skipped otherwise), and everywhere else by injecting the OSError at the write: a
torch.save that fails halfway as torch's does (an ENOSPC from the file, then torch's RuntimeError raised while
handling it), an fsync that fails for one file, an append to metrics.jsonl that writes half a line.
"""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from imae_kit import atomic, runs
from imae_kit.errors import DataError, DiskWriteError
from imae_kit.runs import RunDir, load_checkpoint

from conftest import RECIPES, TOY_OVERRIDES, invoke_cli

RECIPE = RECIPES / "imae_mnist.toml"
TOY = tuple(arg for override in TOY_OVERRIDES for arg in ("--set", override))
CHECKPOINTS = ("--set", "train.checkpoint_every=20")  # TOY logs every 20 steps: 1, 20, 40, 60


def _run(*args: object):
    return invoke_cli("run", RECIPE, *TOY, *CHECKPOINTS, *args)


def _flat(result) -> str:
    return " ".join(result.output.split())


def _enospc(path: object = "") -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def _assert_clear_stop(result, *expected: str) -> None:
    """Exit status 2, one or two lines, no traceback, and every expected phrase."""
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and len(errors[0]) + 200 > len(result.output.strip()), result.output
    for phrase in expected:
        assert phrase in _flat(result), (phrase, result.output)


def _temp_files(directory: Path) -> list[Path]:
    return sorted(directory.rglob(".*.tmp"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The toy run trained without interruption: 60 steps, logged at 1, 20, 40, 60, not evaluated."""
    path = tmp_path_factory.mktemp("reference") / "run"
    result = _run("--steps", "60", "--no-eval", "-q", "--out", path)
    assert result.exit_code == 0, result.output
    return path


def _without_clock(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]  # wall-clock time differs


def _assert_same_as_reference(run_dir: Path, reference: Path) -> None:
    records, expected = (_without_clock(RunDir(p).read_metrics()) for p in (run_dir, reference))
    assert [r["step"] for r in records] == [1, 20, 40, 60], "each logged step exactly once"
    assert records == expected
    got, want = load_checkpoint(run_dir / "checkpoint.pt"), load_checkpoint(reference / "checkpoint.pt")
    for key in want["model"]:
        assert torch.equal(got["model"][key], want["model"][key]), key


# ----------------------------------------------------------------------------- injected failures

def _fail_torch_save(monkeypatch, at_call: int, then=None) -> None:
    """The ``at_call``-th torch.save writes half its bytes, then fails as torch does on a full disk."""
    real, calls = torch.save, [0]

    def save(obj, f, *args, **kwargs):
        calls[0] += 1
        if calls[0] != at_call or not hasattr(f, "write"):
            return real(obj, f, *args, **kwargs)
        buffer = io.BytesIO()
        real(obj, buffer, *args, **kwargs)
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        if then is not None:
            then()
        try:
            raise _enospc()
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0") from None

    monkeypatch.setattr(torch, "save", save)


def _fail_fsync_of(monkeypatch, name_part: str) -> None:
    """Every fsync of a file whose name contains ``name_part`` fails with ENOSPC (an atomic write's temp file
    is ``.NAME.XXXX.tmp``, so ``.eval.json.`` names the temp files of eval.json)."""
    real = os.fsync

    def fsync(fd):
        target = os.readlink(f"/proc/self/fd/{fd}")
        if name_part in os.path.basename(target):
            raise _enospc(target)
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


class _HalfWrites:
    """A file whose writes put half the text on disk, then fail with ENOSPC."""

    def __init__(self, f):
        self.f = f

    def write(self, text: str) -> int:
        self.f.write(text[: len(text) // 2])
        self.f.flush()
        raise _enospc(self.f.name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.f.close()


def _fail_metrics_appends_after(monkeypatch, lines: int) -> None:
    real, appends = builtins.open, [0]

    def fake_open(path, mode="r", *args, **kwargs):
        f = real(path, mode, *args, **kwargs)
        if Path(path).name == "metrics.jsonl" and "a" in mode:
            appends[0] += 1
            if appends[0] > lines:
                return _HalfWrites(f)
        return f

    monkeypatch.setattr(runs, "open", fake_open, raising=False)


# ----------------------------------------------------------------------------- a full disk: the checkpoint

def test_a_full_disk_during_a_checkpoint_write_stops_the_run_clearly_and_it_resumes(
        tmp_path, monkeypatch, reference, one_thread):
    run_dir = tmp_path / "run"
    _fail_torch_save(monkeypatch, at_call=2)  # the checkpoint of step 40
    result = _run("--steps", "60", "--no-eval", "-q", "--out", run_dir)
    _assert_clear_stop(result, f"cannot write {run_dir / 'checkpoint.pt'}: no space left on device (ENOSPC)",
                       "training stopped at step 40 of 60", "the checkpoint of step 20", "is intact",
                       "Free space", f"imae-kit run --resume {run_dir}")
    status = RunDir(run_dir).read_status()
    assert status["status"] == "stopped" and "no space left on device (ENOSPC)" in status["stop_reason"]
    assert f"imae-kit run --resume {run_dir}" in status["stop_reason"]
    assert load_checkpoint(run_dir / "checkpoint.pt")["step"] == 20, "the previous checkpoint is intact"
    assert _temp_files(run_dir) == [], "the half-written temp file is removed"

    monkeypatch.undo()  # space freed
    result = invoke_cli("run", "--resume", run_dir, "-q")
    assert result.exit_code == 0, result.output
    assert RunDir(run_dir).read_status()["status"] == "completed"
    _assert_same_as_reference(run_dir, reference)


def test_when_run_json_cannot_be_written_either_the_message_says_so(tmp_path, monkeypatch, one_thread):
    run_dir = tmp_path / "run"
    _fail_torch_save(monkeypatch, at_call=1, then=lambda: _fail_fsync_of(monkeypatch, ".run.json."))
    result = _run("--steps", "60", "--no-eval", "-q", "--out", run_dir)
    _assert_clear_stop(result, "cannot write", "checkpoint.pt", "training stopped at step 20 of 60",
                       "no checkpoint had been written yet",
                       "run.json could not record the stop either: no space left on device (ENOSPC); it still "
                       "says 'running'")
    assert RunDir(run_dir).read_status()["status"] == "running"


@pytest.fixture
def tiny_disk(tmp_path):
    """A 4 MiB tmpfs (skipped where the test may not mount one)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True,
                              text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a tmpfs here ({exc})")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=30)


def test_a_really_full_disk_during_a_checkpoint_write(tiny_disk, reference, one_thread):
    """The disk fills up for real: room for one checkpoint, not for the temp file of the next."""
    size = (reference / "checkpoint.pt").stat().st_size
    stats = os.statvfs(tiny_disk)
    filler = tiny_disk / "filler"
    filler.write_bytes(b"\0" * (stats.f_bavail * stats.f_frsize - int(1.5 * size)))
    run_dir = tiny_disk / "run"
    result = _run("--steps", "60", "--no-eval", "-q", "--out", run_dir)
    _assert_clear_stop(result, f"cannot write {run_dir / 'checkpoint.pt'}: no space left on device (ENOSPC)",
                       "training stopped at step 40 of 60", "the checkpoint of step 20",
                       f"imae-kit run --resume {run_dir}")
    assert RunDir(run_dir).read_status()["status"] == "stopped"
    assert load_checkpoint(run_dir / "checkpoint.pt")["step"] == 20
    filler.unlink()
    result = invoke_cli("run", "--resume", run_dir, "-q")
    assert result.exit_code == 0, result.output
    _assert_same_as_reference(run_dir, reference)


# ----------------------------------------------------------------------------- a full disk: everything else

def test_a_full_disk_while_appending_to_metrics_jsonl(tmp_path, monkeypatch, reference, one_thread):
    run_dir = tmp_path / "run"
    _fail_metrics_appends_after(monkeypatch, lines=2)  # steps 1 and 20 are logged, step 40's line is torn
    result = _run("--steps", "60", "--no-eval", "-q", "--out", run_dir)
    _assert_clear_stop(result, f"cannot write {run_dir / 'metrics.jsonl'}: no space left on device (ENOSPC)",
                       "training stopped at step 40 of 60", "the checkpoint of step 20")
    assert RunDir(run_dir).read_status()["status"] == "stopped"
    monkeypatch.undo()
    result = invoke_cli("run", "--resume", run_dir, "-q")
    assert result.exit_code == 0, result.output
    assert "metrics.jsonl line 3 is damaged (a torn last line) and was dropped" in _flat(result)
    _assert_same_as_reference(run_dir, reference)


@pytest.mark.parametrize("name", ["eval.json", "report.md", "traversals.png"])
def test_a_full_disk_during_the_evaluation(tmp_path, monkeypatch, name, one_thread):
    run_dir = tmp_path / "run"
    assert _run("--steps", "20", "-q", "--no-eval", "--out", run_dir).exit_code == 0
    _fail_fsync_of(monkeypatch, f".{name}.")
    where = run_dir / ("figures/" if name.endswith(".png") else "") / name
    for args in (("eval", run_dir, "-q"), ("run", "--resume", run_dir, "-q", "--eval", "--steps", "40",
                                           "--allow-change", "train.steps")):
        result = invoke_cli(*args)
        _assert_clear_stop(result, f"cannot write {where}: no space left on device (ENOSPC)",
                           "the evaluation stopped", f"imae-kit eval {run_dir}")
        assert not where.exists() and _temp_files(run_dir) == []
    assert RunDir(run_dir).read_status()["status"] == "completed"


def test_a_full_disk_while_writing_the_sweep_tables(tmp_path, monkeypatch, one_thread):
    sweep = tmp_path / "sweep"
    result = invoke_cli("sweep", RECIPE, *TOY, "--grid", "train.seed=0,1", "--steps", "20", "--no-eval", "-q",
                        "--out", sweep)
    assert result.exit_code == 0, result.output
    _fail_fsync_of(monkeypatch, ".sweep.csv.")
    result = invoke_cli("collect", sweep)
    _assert_clear_stop(result, f"cannot write {sweep / 'sweep.csv'}: no space left on device (ENOSPC)")


def test_a_full_disk_or_a_locked_folder_in_the_data_cache(tmp_path, monkeypatch):
    from imae_kit.data import dsprites_cache, storage
    from imae_kit.data.dsprites_grid import FactorGrid

    small = FactorGrid(shape=(0, 1), scale=(0.5,), orientation=(0.0,), pos_x=(0.0, 1.0), pos_y=(0.0, 1.0))
    with monkeypatch.context() as m:
        _fail_fsync_of(m, ".dsprites_replica")
        with pytest.raises(DataError, match=r"cannot write .*dsprites_replica.*: no space left on device \(ENOSPC\)"
                                            r"; nothing was left behind; free space or choose another data root"):
            dsprites_cache.ensure_replica(tmp_path, grid=small, quiet=True)
    assert _temp_files(tmp_path) == []

    real = builtins.open

    def refuse_lock(path, mode="r", *args, **kwargs):
        if Path(path).name == ".lock":
            raise OSError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(storage, "open", refuse_lock, raising=False)
    with pytest.raises(DataError, match=r"cannot write .*\.lock: Permission denied; .*IMAE_KIT_DATA"):
        dsprites_cache.ensure_replica(tmp_path / "other", grid=small, quiet=True)


def test_any_write_refused_by_the_disk_is_one_line_not_a_traceback(monkeypatch):
    """The command line's last line of defence: an OSError of a full disk or a refused permission, from a
    write no other test thought of, ends in one line and exit status 2."""
    from imae_kit import compare

    for code, words in ((errno.ENOSPC, "cannot write /x/y: no space left on device (ENOSPC)"),
                        (errno.EACCES, "cannot access /x/y: permission denied (EACCES)")):
        def fail():
            raise OSError(code, os.strerror(code), "/x/y")

        monkeypatch.setattr(compare, "term_rows", fail)
        _assert_clear_stop(invoke_cli("terms"), words)


# ----------------------------------------------------------------------------- damaged files

def _checkpointed_run(tmp_path: Path) -> Path:
    """40 steps of a 60-step budget, checkpoints at 20 and 40, as a kill would leave it."""
    run_dir = tmp_path / "run"
    assert _run("--steps", "40", "-q", "--no-eval", "--out", run_dir).exit_code == 0
    RunDir(run_dir).write_status(status="running")
    return run_dir


def _resume_to_60(run_dir: Path):
    return invoke_cli("run", "--resume", run_dir, "--steps", "60", "--allow-change", "train.steps", "-q")


def test_a_damaged_checkpoint_resumes_from_the_previous_one_and_says_so(tmp_path, reference, one_thread):
    run_dir = _checkpointed_run(tmp_path)
    assert load_checkpoint(run_dir / "checkpoint.prev.pt")["step"] == 20
    ckpt = run_dir / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])  # truncated to half
    result = invoke_cli("run", "--resume", run_dir, "-q")  # on to the run's own budget, 40
    assert result.exit_code == 0, result.output
    out = _flat(result)
    assert f"cannot read checkpoint {ckpt}: it is damaged or incomplete" in out and "Traceback" not in out
    assert f"resuming {run_dir} from checkpoint.prev.pt (step 20)" in out
    assert RunDir(run_dir).read_status()["resumed_from"] == "checkpoint.prev.pt"
    assert [r["step"] for r in RunDir(run_dir).read_metrics()] == [1, 20, 40], "cut back to 20, then 40 again"
    # the damaged file was replaced by the new checkpoint, never rotated into checkpoint.prev.pt
    assert load_checkpoint(run_dir / "checkpoint.pt")["step"] == 40
    assert load_checkpoint(run_dir / "checkpoint.prev.pt")["step"] == 20
    result = _resume_to_60(run_dir)
    assert result.exit_code == 0, result.output
    assert f"resuming {run_dir} from checkpoint.pt (step 40)" in _flat(result)
    _assert_same_as_reference(run_dir, reference)  # no logged step lost or repeated, the same weights
    assert load_checkpoint(run_dir / "checkpoint.prev.pt")["step"] == 40


def test_when_no_checkpoint_loads_the_resume_says_what_to_do_and_changes_nothing(tmp_path, one_thread):
    run_dir = _checkpointed_run(tmp_path)
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        p = run_dir / name
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    result = _resume_to_60(run_dir)
    _assert_clear_stop(result, f"cannot resume {run_dir}: no checkpoint loads", "checkpoint.pt",
                       "checkpoint.prev.pt", "move checkpoint.pt and checkpoint.prev.pt out of",
                       f"imae-kit run {run_dir / 'recipe.toml'} --out NEW_DIR")
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before


def test_checkpoints_rotate_so_the_newest_file_is_never_missing(tmp_path, monkeypatch):
    target, previous = tmp_path / "checkpoint.pt", tmp_path / "checkpoint.prev.pt"
    with atomic.atomic_file(target, keep_previous=previous) as f:
        f.write(b"one")
    real_replace, held = os.replace, []

    def replace(src, dst):
        held.append(target.read_bytes())  # raises if checkpoint.pt were missing at any rename
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    for generation in (b"two", b"three"):
        with atomic.atomic_file(target, keep_previous=previous) as f:
            f.write(generation)
    assert held == [b"one", b"one", b"two", b"two"]  # per write: the old one to .prev, the new one in place
    assert target.read_bytes() == b"three" and previous.read_bytes() == b"two"
    assert _temp_files(tmp_path) == []


def test_a_kill_between_rotation_and_rename_leaves_no_temp_link_at_the_next_write(tmp_path):
    """A kill after the old checkpoint was linked to .prev but before the new one was renamed in leaves
    checkpoint.pt and checkpoint.prev.pt as two names of one file. rename(2) between two names of one file
    does nothing and succeeds, so a rotation that linked and renamed would leave its temp link behind."""
    target, previous = tmp_path / "checkpoint.pt", tmp_path / "checkpoint.prev.pt"
    target.write_bytes(b"one")
    os.link(target, previous)  # the state such a kill leaves
    with atomic.atomic_file(target, keep_previous=previous) as f:
        f.write(b"two")
    assert target.read_bytes() == b"two" and previous.read_bytes() == b"one"
    assert _temp_files(tmp_path) == []


@pytest.mark.parametrize("torn", [b'{"step": 99, "loss": 1', b'{"step": 99, "lo\xff\xfe', b"\x00" * 40])
def test_a_torn_metrics_line_is_dropped_with_a_warning(tmp_path, reference, torn, one_thread):
    run_dir = _checkpointed_run(tmp_path)
    with open(run_dir / "metrics.jsonl", "ab") as f:  # a power cut in the middle of a line
        f.write(torn)
    with pytest.warns(runs.MetricsWarning, match=r"metrics.jsonl line 4 is damaged .* dropped"):
        assert [r["step"] for r in RunDir(run_dir).read_metrics()] == [1, 20, 40]
    result = _resume_to_60(run_dir)
    assert result.exit_code == 0, result.output
    assert "warning: " in result.output and "line 4 is damaged" in _flat(result)
    _assert_same_as_reference(run_dir, reference)


def test_a_damaged_line_in_the_middle_costs_that_line_only(tmp_path, one_thread):
    run_dir = _checkpointed_run(tmp_path)
    lines = (run_dir / "metrics.jsonl").read_bytes().splitlines(keepends=True)
    lines[1] = b'{"step": 20, "lo\x00\x00\x00\n'
    (run_dir / "metrics.jsonl").write_bytes(b"".join(lines))
    with pytest.warns(runs.MetricsWarning, match="line 2 is damaged"):
        assert [r["step"] for r in RunDir(run_dir).read_metrics()] == [1, 40]


# ----------------------------------------------------------------------------- a resume remembers the command line

def test_a_resumed_run_keeps_its_no_eval_quiet_and_threads_unless_given_again(tmp_path, one_thread):
    run_dir = tmp_path / "run"
    assert _run("--steps", "20", "--no-eval", "-q", "--threads", "2", "--out", run_dir).exit_code == 0
    assert RunDir(run_dir).read_status()["options"] == {"evaluate": False, "quiet": True, "threads": 2}
    torch.set_num_threads(1)

    extend = ("run", "--resume", run_dir, "--allow-change", "train.steps", "--steps")
    result = invoke_cli(*extend, "40")
    assert result.exit_code == 0, result.output
    assert not (run_dir / "eval.json").exists(), "a run started with --no-eval is not evaluated on resume"
    assert "train  " not in result.output, "nor does it show progress after -q"
    assert torch.get_num_threads() == 2, "and it trains on the threads it was started with"
    torch.set_num_threads(1)

    result = invoke_cli(*extend, "60", "--eval", "--no-quiet", "--threads", "1")
    assert result.exit_code == 0, result.output
    assert (run_dir / "eval.json").is_file(), "given again, a choice wins"
    assert "train  60/60 (100%)" in result.output
    assert RunDir(run_dir).read_status()["options"] == {"evaluate": True, "quiet": False, "threads": 1}
    assert torch.get_num_threads() == 1


# ----------------------------------------------------------------------------- the fsync of atomic writes

def test_an_atomic_write_fsyncs_the_file_before_it_takes_the_name(tmp_path, monkeypatch):
    target = tmp_path / "f.json"
    target.write_text("old")
    real, synced = os.fsync, []

    def fsync(fd):
        synced.append((os.fstat(fd).st_ino, target.read_text()))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    runs.atomic_write_text(target, json.dumps({"new": 1}))
    assert (target.stat().st_ino, "old") in synced, "the new file's bytes are fsynced before the rename"
    assert (tmp_path.stat().st_ino, json.dumps({"new": 1})) in synced, "then the directory holding the name"


def test_an_fsync_that_fails_keeps_the_old_file_and_says_why(tmp_path, monkeypatch):
    target = tmp_path / "run.json"
    target.write_text("old")

    def fsync(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(DiskWriteError, match=r"cannot write .*run.json: input/output error \(EIO\)"):
        runs.atomic_write_text(target, "new")
    assert target.read_text() == "old" and _temp_files(tmp_path) == []
