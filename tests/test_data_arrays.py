"""Your own data: the arrays data set (.npz, a folder of .npy), the image_folder data set (torchvision's
ImageFolder), what follows from what the file holds (accuracy, MIG), and bad input as one clear line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from imae_kit.data.base import ArrayDataset
from imae_kit.errors import DataError, RecipeError
from imae_kit.metrics.base import missing_needs
from imae_kit.metrics.settings import EvalSettings
from imae_kit.registry import build

from conftest import REPO, invoke_cli


def load(path, **params):
    return build("dataset", "arrays", {"path": str(path), **params}).load()


def _squares(n=30, size=8, seed=0):
    """n binary size x size images with a 2x2 square at (row, col) factor classes; label = row."""
    rng = np.random.default_rng(seed)
    factors = np.stack([rng.integers(0, 3, n), rng.integers(0, 3, n)], 1)
    images = np.zeros((n, size, size), np.uint8)
    for i, (r, c) in enumerate(factors):
        images[i, 2 * r:2 * r + 2, 2 * c:2 * c + 2] = 255
    return images, factors


def test_npz_with_a_drawn_split_labels_and_factors(tmp_path):
    images, factors = _squares()
    const = np.zeros((30, 1), np.int64)
    np.savez(tmp_path / "d.npz", images=images, labels=factors[:, 0], factors=np.hstack([factors, const]),
             factor_names=np.array(["row", "col", "colour"]), class_names=np.array(["top", "middle", "bottom"]))
    splits = load(tmp_path / "d.npz", test_fraction=0.2, seed=3)
    train, test = splits.train, splits.test
    assert isinstance(train, ArrayDataset) and len(train) == 24 and len(test) == 6
    assert train.image_shape == test.image_shape == (1, 8, 8)
    assert train.num_classes == 3 and train.class_names == ("top", "middle", "bottom")
    # the constant factor is left out (H = 0, no MIG of it), as dSprites' colour is
    assert train.factor_names == ("row", "col") and train.factor_sizes == (3, 3)
    assert "colour" in splits.description and "24 train + 6 test" in splits.description
    # the split is the seed's permutation: every image once, the same again, another with another seed
    idx = torch.randperm(30, generator=torch.Generator().manual_seed(3))
    test_rows = idx[:6].sort().values
    batch = test.get_batch(torch.arange(6))
    assert batch.x.dtype == torch.float32 and batch.x.shape == (6, 64)
    assert torch.equal(batch.x, torch.from_numpy(images[test_rows.numpy()]).float().reshape(6, 64) / 255)
    assert torch.equal(batch.labels, torch.from_numpy(factors[test_rows.numpy(), 0]))
    assert torch.equal(batch.factors, torch.from_numpy(factors[test_rows.numpy()]))
    again = load(tmp_path / "d.npz", test_fraction=0.2, seed=3).test.get_batch(torch.arange(6)).x
    other = load(tmp_path / "d.npz", test_fraction=0.2, seed=4).test.get_batch(torch.arange(6)).x
    assert torch.equal(again, batch.x) and not torch.equal(other, batch.x)
    # accuracy and the factor metrics follow from what the file holds
    settings = EvalSettings()
    for name in ("accuracy", "mig", "dci"):
        assert missing_needs(build("metric", name, {}), splits, settings) == []


def test_split_arrays_channels_and_float_pixels(tmp_path):
    rng = np.random.default_rng(1)
    train = rng.random((5, 3, 6, 6)).astype(np.float32)
    test = rng.random((2, 3, 6, 6))  # float64: kept as float32
    np.savez(tmp_path / "rgb.npz", train_images=train, test_images=test, train_labels=np.array([0, 1, 0, 1, 1]),
             test_labels=np.array([1, 0]))
    splits = load(tmp_path / "rgb.npz")
    assert splits.train.image_shape == (3, 6, 6) and len(splits.train) == 5 and len(splits.test) == 2
    assert splits.train.factor_names == () and splits.train.num_classes == 2
    x = splits.test.get_batch(torch.arange(2)).x
    assert x.shape == (2, 108) and torch.allclose(x, torch.from_numpy(test).float().reshape(2, 108))
    # no factors: the MIG cannot be served, the accuracy can
    settings = EvalSettings()
    assert missing_needs(build("metric", "mig", {}), splits, settings) == ["factors"]
    assert missing_needs(build("metric", "accuracy", {}), splits, settings) == []


def test_folder_of_npy_a_split_array_bool_pixels_and_no_labels(tmp_path):
    images = np.random.default_rng(2).random((6, 5, 5)) < 0.5
    (tmp_path / "d").mkdir()
    np.save(tmp_path / "d" / "images.npy", images)
    np.save(tmp_path / "d" / "split.npy", np.array(["train", "test", "train", "train", "test", "train"]))
    splits = load(tmp_path / "d")
    assert len(splits.train) == 4 and len(splits.test) == 2 and splits.train.num_classes is None
    assert torch.equal(splits.test.get_batch(torch.arange(2)).x, torch.from_numpy(images[[1, 4]]).float().reshape(2, 25))
    assert missing_needs(build("metric", "accuracy", {}), splits, EvalSettings()) == ["labels"]
    # test_fraction = 0 evaluates on the training images; a single .npy is the images
    np.save(tmp_path / "only.npy", images.astype(np.uint8) * 255)
    whole = load(tmp_path / "only.npy", test_fraction=0)
    assert whole.test is whole.train and len(whole.train) == 6


def test_float_pixels_within_rounding_of_the_range_are_clipped(tmp_path):
    images = np.full((4, 3, 3), 1 + 5e-7, np.float32)
    images[0] = -5e-7
    np.savez(tmp_path / "d.npz", images=images)
    x = load(tmp_path / "d.npz").train.get_batch(torch.arange(3)).x
    assert float(x.min()) >= 0 and float(x.max()) <= 1


def _bad(tmp_path, **arrays):
    np.savez(tmp_path / "bad.npz", **arrays)
    return tmp_path / "bad.npz"


IMG = np.zeros((4, 5, 5), np.uint8)


@pytest.mark.parametrize("arrays, expected", [
    ({"imgs": IMG}, "unknown array 'imgs'; did you mean 'images'?"),
    ({"labels": np.arange(4)}, "has no images"),
    ({"train_images": IMG}, "has train_images but no test_images"),
    ({"images": IMG, "train_images": IMG, "test_images": IMG}, "holds both 'images' and train_images"),
    ({"images": IMG, "train_labels": np.arange(4)}, "name it 'labels'"),
    ({"images": np.zeros((4, 25), np.uint8)}, "expected [N, H, W] or [N, C, H, W]"),
    ({"images": np.zeros((4, 5, 5, 3), np.uint8)}, "channels last"),
    ({"images": np.zeros((4, 2, 5, 5), np.uint8)}, "2 channels"),
    ({"images": IMG.astype(np.int64)}, "is int64; pixels must be uint8"),
    ({"images": IMG.astype(np.float32) + 255}, "pixel values in [255, 255]; float pixels must lie in [0, 1]"),
    ({"images": np.full((4, 5, 5), -0.5, np.float32)}, "pixel values in [-0.5, -0.5]"),
    ({"images": np.full((4, 5, 5), np.nan, np.float32)}, "NaN"),
    ({"images": IMG, "labels": np.arange(3)}, "labels has 3 rows but the images are 4"),
    ({"images": IMG, "labels": np.array([0.5, 1, 2, 3])}, "labels is float64; labels must be integers"),
    ({"images": IMG, "labels": np.array([0, -1, 2, 3])}, "negative"),
    ({"images": IMG, "factors": np.zeros((5, 2), int)}, "factors has 5 rows but the images are 4"),
    ({"images": IMG, "factors": np.eye(4, 2, dtype=int), "factor_names": np.array(["a"])}, "1 names for 2 factor"),
    ({"images": IMG, "factor_names": np.array(["a"])}, "has factor_names but no factors"),
    ({"images": IMG, "split": np.array([0, 1, 2, 0])}, "split holds 2"),
    ({"images": IMG, "split": np.zeros(4, bool)}, "every image in the training set"),
    ({"train_images": IMG, "test_images": np.zeros((2, 6, 6), np.uint8)}, "same image shape"),
    ({"train_images": IMG, "test_images": IMG, "train_labels": np.arange(4)}, "has train_labels but no test_labels"),
])
def test_bad_arrays_are_one_clear_data_error(tmp_path, arrays, expected):
    path = _bad(tmp_path, **arrays)
    with pytest.raises(DataError) as info:
        load(path)
    message = str(info.value)
    assert expected in message and str(path) in message and "\n" not in message


def test_missing_unreadable_and_pickled_files(tmp_path):
    with pytest.raises(DataError, match="not found; fix 'path'"):
        load(tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_bytes(b"not an archive")
    with pytest.raises(DataError, match="neither an .npz"):
        load(tmp_path / "junk.npz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .npy files"):
        load(tmp_path / "empty")
    np.savez(tmp_path / "objects.npz", images=IMG, factor_names=np.array(["a", None], dtype=object))
    with pytest.raises(DataError, match="Python objects"):
        load(tmp_path / "objects.npz")
    with pytest.raises(RecipeError, match="needs parameter 'path'"):
        build("dataset", "arrays", {})


def test_a_bad_arrays_file_through_the_cli_exits_2_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    recipe = tmp_path / "mine.toml"
    np.savez(tmp_path / "bad.npz", images=np.full((4, 5, 5), 7.0, np.float32))
    recipe.write_text((REPO / "recipes" / "imae_mnist.toml").read_text().replace(
        '[data]\nname = "mnist"', '[data]\nname = "arrays"\npath = "bad.npz"'))
    result = invoke_cli("run", recipe, "-q")
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    assert "bad.npz" in result.stderr and "float pixels must lie in [0, 1]" in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2
    assert not (tmp_path / "runs").exists(), "no run directory for bad data"


def _image_folder(root, sizes=((9, 6), (5, 5), (12, 8))):
    rng = np.random.default_rng(0)
    for c, name in enumerate(("b_dogs", "a_cats")):
        (root / name).mkdir(parents=True)
        for i, (w, h) in enumerate(sizes):
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / name / f"{i}.png")


def test_image_folder_grey_and_rgb_resized_with_labels_from_sub_folders(tmp_path):
    from torchvision import datasets, transforms

    _image_folder(tmp_path / "imgs")
    grey = build("dataset", "image_folder", {"path": str(tmp_path / "imgs"), "size": 7, "test_fraction": 0}).load()
    assert grey.train is grey.test and len(grey.train) == 6 and grey.train.image_shape == (1, 7, 7)
    assert grey.train.class_names == ("a_cats", "b_dogs") and grey.train.num_classes == 2
    # the same pixels as torchvision's own ImageFolder with these transforms, / 255
    ref = datasets.ImageFolder(str(tmp_path / "imgs"), transform=transforms.Compose(
        [transforms.Grayscale(1), transforms.Resize((7, 7)), transforms.PILToTensor()]))
    batch = grey.train.get_batch(torch.arange(6))
    assert torch.equal(batch.x, torch.stack([ref[i][0] for i in range(6)]).float().reshape(6, 49) / 255)
    assert batch.labels.tolist() == ref.targets == [0, 0, 0, 1, 1, 1] and batch.factors is None

    rgb = build("dataset", "image_folder", {"path": str(tmp_path / "imgs"), "size": 4, "channels": 3,
                                            "test_fraction": 0.5, "seed": 1}).load()
    assert rgb.train.image_shape == (3, 4, 4) and len(rgb.train) == len(rgb.test) == 3
    x = rgb.test.get_batch(torch.arange(3)).x
    assert x.shape == (3, 48) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert missing_needs(build("metric", "accuracy", {}), rgb, EvalSettings()) == []


def test_image_folder_errors(tmp_path):
    def folder(**params):
        return build("dataset", "image_folder", {"path": str(tmp_path / "imgs"), **params})

    with pytest.raises(DataError, match="not found; fix 'path'"):
        folder().load()
    (tmp_path / "imgs").mkdir()
    with pytest.raises(DataError, match="one sub-folder per class"):
        folder().load()
    (tmp_path / "imgs" / "one").mkdir()
    (tmp_path / "imgs" / "one" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png cannot be read as an image"):
        folder(test_fraction=0).load()
    with pytest.raises(RecipeError, match="must be 1 \\(grey\\) or 3 \\(RGB\\)"):
        folder(channels=2)


def test_what_the_file_holds_decides_the_evaluation(tmp_path, write_recipe, one_thread):
    """Trained briefly on an arrays file and evaluated: with labels and factors eval.json has the accuracy
    (with the file's class names) and the MIG over the file's factor names, and the figures are drawn; without
    them both blocks are null."""
    import json

    from imae_kit import load_recipe, train

    from conftest import MINIMAL_RECIPE

    images, factors = _squares(n=24)
    np.savez(tmp_path / "full.npz", images=images, labels=factors[:, 0], factors=factors,
             factor_names=np.array(["row", "col"]), class_names=np.array(["top", "middle", "bottom"]))
    np.savez(tmp_path / "bare.npz", images=images)
    fast = ("eval={ entropy_samples = 200, mixture_size = 200, mig_samples = 200, traversal_dims = 2, "
            "reconstruction_images = 4 }")
    for name, figures in (("full", True), ("bare", False)):
        recipe = load_recipe(write_recipe(MINIMAL_RECIPE), steps=2, overrides=[
            f'data={{ name = "arrays", path = "{tmp_path / (name + ".npz")}", test_fraction = 0.25 }}',
            "train.batch_size=6", fast, f"eval.figures={str(figures).lower()}"])
        run = train(recipe, out=str(tmp_path / name))
        result = json.loads((tmp_path / name / "eval.json").read_text())
        if name == "full":
            assert result["accuracy"]["class_names"] == ["top", "middle", "bottom"]
            assert 0 <= result["accuracy"]["accuracy"] <= 1
            assert result["mig"]["with_y"]["factors"] == ["row", "col"]
            assert result["mig"]["z_only"]["factors"] == ["col"]  # row is the labels, as dSprites' shape
            assert {"traversals.png", "reconstructions.png", "mig_matrix.png"} <= {
                p.name for p in (tmp_path / name / "figures").iterdir()}
        else:
            assert result["accuracy"] is None and result["mig"] is None
            assert run.evaluation["reconstruction"] is not None
