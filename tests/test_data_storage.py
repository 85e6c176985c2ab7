"""The data root, atomic writes (interrupted by an exception and by SIGKILL), stale temporaries."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from imae_kit.data import storage
from imae_kit.errors import DataError

REPO = Path(__file__).resolve().parents[1]


def test_data_root_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("IMAE_KIT_DATA", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert storage.data_root() == tmp_path / "home" / ".cache" / "imae-kit"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec: relative values are invalid
    assert storage.data_root() == tmp_path / "home" / ".cache" / "imae-kit"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert storage.data_root() == tmp_path / "xdg" / "imae-kit"
    assert storage.root_source() == "$XDG_CACHE_HOME/imae-kit"
    monkeypatch.setenv("IMAE_KIT_DATA", str(tmp_path / "env"))
    assert storage.data_root() == tmp_path / "env"
    assert storage.root_source() == "$IMAE_KIT_DATA"
    assert storage.data_root(str(tmp_path / "param")) == tmp_path / "param"
    assert storage.data_root("~/x") == Path.home() / "x"


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "sub" / "file.bin"
    with storage.atomic_write(target) as f:
        f.write(b"first")
    assert target.read_bytes() == b"first"

    class Interrupted(Exception):
        pass

    with pytest.raises(Interrupted):
        with storage.atomic_write(target) as f:
            f.write(b"half of the sec")
            raise Interrupted
    assert target.read_bytes() == b"first"  # the old file is intact
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.bin"]  # no temporary left

    with pytest.raises(KeyboardInterrupt):
        with storage.atomic_write(tmp_path / "new.bin") as f:
            f.write(b"x" * 1000)
            raise KeyboardInterrupt
    assert not (tmp_path / "new.bin").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_atomic_write_respects_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with storage.atomic_write(tmp_path / "f") as f:
            f.write(b"1")
    finally:
        os.umask(old)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o644


def test_unwritable_root_is_a_data_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(DataError, match="IMAE_KIT_DATA"):
        with storage.atomic_write(blocker / "x" / "y.bin") as f:
            f.write(b"1")


WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from imae_kit.data import storage
    target = Path(sys.argv[1])
    with storage.provisioning_lock(target.parent):
        with storage.atomic_write(target) as f:
            f.write(b"a" * 1_000_000)
            f.flush()
            print("half written", flush=True)
            time.sleep(60)
            f.write(b"b" * 1_000_000)
    """
)


def test_writer_killed_mid_write_leaves_no_half_file(tmp_path):
    target = tmp_path / "cache" / "data.bin"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    child = subprocess.Popen([sys.executable, str(script), str(target)], stdout=subprocess.PIPE, env=env)
    try:
        assert child.stdout.readline().strip() == b"half written"
        temporaries = list(target.parent.glob(".*.tmp"))
        assert len(temporaries) == 1 and temporaries[0].stat().st_size == 1_000_000
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    assert not target.exists()  # the final name never held a partial file
    # the next provisioner (holding the lock) clears the dead writer's temporary, then writes
    with storage.provisioning_lock(target.parent):
        assert list(target.parent.glob(".*.tmp")) == []
        with storage.atomic_write(target) as f:
            f.write(b"complete")
    assert target.read_bytes() == b"complete"


def test_sha256_and_sizes(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"abc")
    assert storage.sha256_file(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert storage.human_size(512) == "512 B"
    assert storage.human_size(377_491_456) == "360.0 MiB"
