"""dSprites: the factor grid and its order, the replica's geometry, the packed cache, the official npz.

Rasterisation tolerance used below: a pixel is "in" when its centre is, so the pixel count G of a
convex shape K (area A, perimeter P) is a count of lattice points (the pixel centres, a translated
unit lattice) in K. For every convex body in the plane A - P/2 < G < A + P/2 + 1 (Nosarzewska 1948
for the lower bound; Bokowski, Hadwiger and Wills 1972 for the upper), so |G - A| < P/2 + 1 is the
tolerance for the square and the ellipse. For the axis-aligned square it is tight: each side covers
floor or ceil of its length in pixel centres.
"""

from __future__ import annotations

import math
import zipfile

import numpy as np
import pytest
import torch

from imae_kit.data import dsprites as D
from imae_kit.data import dsprites_cache as cache
from imae_kit.data import dsprites_npz as npz
from imae_kit.data import dsprites_render as render
from imae_kit.data.dsprites_grid import FactorGrid
from imae_kit.data.base import ArrayDataset
from imae_kit.errors import DataError

FULL = FactorGrid.full()
# a small grid with a different size for every factor, so any transposition of the order shows
SMALL = FactorGrid(shape=(0, 1, 2), scale=(0.5, 1.0), orientation=(0.0, 0.7, 2.0),
                     pos_x=(0.0, 0.3, 0.6, 1.0), pos_y=(0.0, 0.25, 0.5, 0.75, 1.0))


def render_one(shape, scale, orientation, pos_x, pos_y) -> np.ndarray:
    return render.render_sprites([shape], [scale], [orientation], [pos_x], [pos_y])[0]


def centre_px(pos: float) -> float:
    return 16.0 + 32.0 * pos


# --------------------------------------------------------------------------- grid and order


def test_full_grid_values_and_size():
    assert FULL.sizes == (3, 6, 40, 32, 32)
    assert len(FULL) == 737_280
    np.testing.assert_allclose(FULL.scale, np.linspace(0.5, 1.0, 6))
    assert FULL.orientation[0] == 0.0 and FULL.orientation[-1] == pytest.approx(2 * math.pi)
    np.testing.assert_allclose(np.diff(FULL.orientation), 2 * math.pi / 39)
    np.testing.assert_allclose(FULL.pos_x, np.arange(32) / 31)
    assert FULL.pos_y == FULL.pos_x
    assert FULL.is_full() and not SMALL.is_full()


def test_official_order_of_latents_classes():
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(FULL), size=2000)
    classes = FULL.latents_classes(idx)
    sh, sc, o, x, y = (classes[:, k] for k in range(1, 6))
    assert np.array_equal(((sh * 6 + sc) * 40 + o) * 1024 + x * 32 + y, idx)
    assert np.all(classes[:, 0] == 0)
    torch_classes = FULL.classes_of(torch.from_numpy(idx))
    assert np.array_equal(torch_classes.numpy(), classes[:, 1:])
    # the ends of the grid
    assert FULL.latents_classes(np.array([0]))[0].tolist() == [0, 0, 0, 0, 0, 0]
    assert FULL.latents_classes(np.array([len(FULL) - 1]))[0].tolist() == [0, 2, 5, 39, 31, 31]


def test_latents_values_follow_the_official_file():
    idx = np.array([0, 1, 1024, 40 * 1024, 6 * 40 * 1024, len(FULL) - 1])
    values = FULL.latents_values(idx)
    assert values[:, 0].tolist() == [1.0] * 6  # color
    assert values[:, 1].tolist() == [1, 1, 1, 1, 2, 3]  # shape values 1, 2, 3
    assert values[2, 3] == pytest.approx(2 * math.pi / 39)  # orientation class 1
    assert values[3, 2] == pytest.approx(0.6)  # scale class 1
    assert values[1, 5] == pytest.approx(1 / 31)  # posY class 1
    assert values[5, 2:].tolist() == pytest.approx([1.0, 2 * math.pi, 1.0, 1.0])


def test_grid_rendering_matches_sprite_by_sprite_rendering_in_order():
    packed = render.render_grid(SMALL, threads=2)
    assert packed.shape == (len(SMALL), 512) and packed.dtype == np.uint8
    values = SMALL.latents_values()
    direct = render.render_sprites(values[:, 1] - 1, values[:, 2], values[:, 3], values[:, 4], values[:, 5])
    assert np.array_equal(np.unpackbits(packed, axis=1).reshape(-1, 64, 64).astype(bool), direct)


# --------------------------------------------------------------------------- geometry


def pixel_count_square_axis_aligned(scale: float, cx: float, cy: float) -> int:
    """Closed form: pixel centres j + 0.5 within the half side on each axis, multiplied."""
    h = 9.6 * scale
    nx = sum(1 for j in range(64) if abs(j + 0.5 - cx) <= h)
    ny = sum(1 for i in range(64) if abs(i + 0.5 - cy) <= h)
    return nx * ny


@pytest.mark.parametrize("scale", list(np.linspace(0.5, 1.0, 6)))
def test_square_pixel_count_against_its_area(scale):
    side = 19.2 * scale
    area, perimeter = side**2, 4 * side
    for px, py in [(0.0, 0.0), (0.3, 0.7), (12 / 31, 19 / 31)]:
        img = render_one(0, scale, 0.0, px, py)
        assert img.sum() == pixel_count_square_axis_aligned(scale, centre_px(px), centre_px(py))
        for theta in FULL.orientation:
            count = render_one(0, scale, theta, px, py).sum()
            assert abs(count - area) < perimeter / 2 + 1, (scale, theta, count, area)


@pytest.mark.parametrize("scale", [0.5, 0.8, 1.0])
def test_ellipse_pixel_count_against_pi_a_b(scale):
    a, b = 12.76 * scale, 7.22 * scale
    area = math.pi * a * b
    h = ((a - b) / (a + b)) ** 2  # Ramanujan's perimeter, within 1e-4 relative here
    perimeter = math.pi * (a + b) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h)))
    for theta in FULL.orientation[::3]:
        count = render_one(1, scale, theta, 0.5 + 1 / 62, 0.4).sum()
        assert abs(count - area) < perimeter / 2 + 1, (scale, theta, count, area)


def test_square_is_symmetric_under_quarter_turns():
    # centred at (32, 32) the pixel centres map onto themselves under a quarter turn of the image
    for theta in (0.0, 0.3, 1.1, 2.5):
        for scale in (0.5, 1.0):
            img = render_one(0, scale, theta, 0.5, 0.5)
            assert np.array_equal(np.rot90(img), img)
            turned = render_one(0, scale, theta + math.pi / 2, 0.5, 0.5)
            assert np.sum(turned != img) <= 2  # only float ties on the boundary may differ


def test_rotation_is_counter_clockwise_on_screen():
    # np.rot90 turns a displayed image (row 0 on top) counter-clockwise; the heart is not symmetric
    # under a quarter turn, so this fixes the direction
    for shape in (0, 1, 2):
        base = render_one(shape, 1.0, 0.4, 0.5, 0.5)
        quarter = render_one(shape, 1.0, 0.4 + math.pi / 2, 0.5, 0.5)
        assert np.sum(np.rot90(base) != quarter) <= 2
    heart = render_one(2, 1.0, 0.0, 0.5, 0.5)
    heart_quarter = render_one(2, 1.0, math.pi / 2, 0.5, 0.5)
    rows, cols = np.nonzero(heart)
    # at orientation 0 the lobes are on top: the widest row is above the centre
    widths = np.bincount(rows, minlength=64)
    assert np.argmax(widths) < 32
    # a quarter turn counter-clockwise brings the lobes to the left
    heights = np.bincount(np.nonzero(heart_quarter)[1], minlength=64)
    assert np.argmax(heights) < 32
    assert np.array_equal(heart[:, ::-1], heart)  # mirror symmetric about its axis


def test_ellipse_long_axis_is_horizontal_at_orientation_zero():
    img = render_one(1, 1.0, 0.0, 0.5, 0.5)
    rows, cols = np.nonzero(img)
    assert cols.max() - cols.min() + 1 == sum(1 for j in range(64) if abs(j + 0.5 - 32) <= 12.76)
    assert rows.max() - rows.min() + 1 == sum(1 for i in range(64) if abs(i + 0.5 - 32) <= 7.22)


def test_orientation_zero_equals_two_pi():
    for shape in (0, 1, 2):
        for scale in FULL.scale:
            for px, py in [(0.0, 0.0), (0.4, 0.9), (1.0, 1.0)]:
                assert np.array_equal(render_one(shape, scale, 0.0, px, py),
                                      render_one(shape, scale, FULL.orientation[-1], px, py))


@pytest.mark.parametrize("pos_x,pos_y", [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0)])
def test_positions_at_the_corners(pos_x, pos_y):
    cx, cy = centre_px(pos_x), centre_px(pos_y)  # posX is the column, posY the row, origin top-left
    for shape in (0, 1, 2):
        img = render_one(shape, 1.0, 0.0, pos_x, pos_y)
        rows, cols = np.nonzero(img)
        assert abs((cols + 0.5).mean() - cx) < 0.5
        if shape != 2:  # the heart's centroid sits above its centre (the lobes)
            assert abs((rows + 0.5).mean() - cy) < 0.5
        assert img[int(cy), int(cx)]
        # nothing is cut by the border: the whole sprite fits inside the canvas
        assert rows.min() > 0 and cols.min() > 0 and rows.max() < 63 and cols.max() < 63


def _reference_inside(shape, scale, theta, pos_x, pos_y):
    """An independent float64 rasteriser written from the issue's description of the geometry."""
    j, i = np.meshgrid(np.arange(64) + 0.5, np.arange(64) + 0.5)
    dx, dy = j - (16 + 32 * pos_x), i - (16 + 32 * pos_y)
    # undo a counter-clockwise on-screen rotation (screen y points down)
    x_up, y_up = dx, -dy
    u = math.cos(-theta) * x_up - math.sin(-theta) * y_up
    w_up = math.sin(-theta) * x_up + math.cos(-theta) * y_up
    v = -w_up
    s = scale
    if shape == 0:
        return (np.abs(u) <= 9.6 * s) & (np.abs(v) <= 9.6 * s)
    if shape == 1:
        return (u / (12.76 * s)) ** 2 + (v / (7.22 * s)) ** 2 <= 1
    vc = v - 0.419 * s
    diamond = np.abs(u) + np.abs(vc) <= 7.91 * s
    left = (u + 4.626 * s) ** 2 + (vc + 4.472 * s) ** 2 <= (5.042 * s) ** 2
    right = (u - 4.626 * s) ** 2 + (vc + 4.472 * s) ** 2 <= (5.042 * s) ** 2
    return diamond | left | right


def test_renderer_agrees_with_an_independent_float64_rasteriser():
    rng = np.random.default_rng(1)
    n = 120
    shape = rng.integers(0, 3, n)
    scale, theta = rng.uniform(0.5, 1.0, n), rng.uniform(0, 2 * math.pi, n)
    px, py = rng.uniform(0, 1, n), rng.uniform(0, 1, n)
    ours = render.render_sprites(shape, scale, theta, px, py)
    mismatched = sum(int(np.sum(ours[k] != _reference_inside(shape[k], scale[k], theta[k], px[k], py[k])))
                     for k in range(n))
    # float32 against float64: only pixel centres within ~1e-5 px of a boundary can disagree
    assert mismatched <= 3


def test_heart_area_is_close_to_its_geometric_area():
    # the heart's area from a 20x supersampled rendering of the reference predicate, vs pixel count
    fine = 20
    s = 1.0
    g = (np.arange(64 * fine) + 0.5) / fine
    j, i = np.meshgrid(g, g)
    u, v = j - 32.0, i - 32.0 - 0.419 * s
    inside = (np.abs(u) + np.abs(v) <= 7.91 * s)
    inside |= (np.abs(u) - 4.626 * s) ** 2 + (v + 4.472 * s) ** 2 <= (5.042 * s) ** 2
    area = inside.sum() / fine**2
    count = render_one(2, s, 0.0, 0.5, 0.5).sum()
    perimeter_bound = 2 * math.pi * 5.042 + 4 * 7.91 * math.sqrt(2)  # over-estimates the outline
    assert abs(count - area) < perimeter_bound / 2 + 1


# --------------------------------------------------------------------------- the data set


def test_packed_dataset_batches():
    packed = torch.from_numpy(render.render_grid(SMALL))
    ds = D.DSpritesImages(packed, SMALL)
    assert isinstance(ds, ArrayDataset)
    assert len(ds) == len(SMALL) and ds.image_shape == (1, 64, 64) and ds.num_classes == 3
    assert ds.factor_names == ("shape", "scale", "orientation", "posX", "posY")
    assert ds.factor_sizes == SMALL.sizes
    index = torch.tensor([0, 7, len(SMALL) - 1, 100])
    batch = ds.get_batch(index)
    assert batch.x.shape == (4, 4096) and batch.x.dtype == torch.float32
    expected = np.unpackbits(packed.numpy()[index.numpy()], axis=1).astype(np.float32)
    assert np.array_equal(batch.x.numpy(), expected)
    classes = SMALL.latents_classes(index.numpy())
    assert np.array_equal(batch.factors.numpy(), classes[:, 1:])
    assert np.array_equal(batch.labels.numpy(), classes[:, 1])
    assert batch.labels.dtype == torch.long and batch.factors.dtype == torch.long
    sub = ds.subset(torch.tensor([5, 9, 11]))
    assert len(sub) == 3
    assert np.array_equal(sub.get_batch(torch.tensor([1])).x.numpy(), ds.get_batch(torch.tensor([9])).x.numpy())
    assert np.array_equal(sub.latents_classes, SMALL.latents_classes(np.array([5, 9, 11])))
    assert np.array_equal(sub.latents_values, SMALL.latents_values(np.array([5, 9, 11])))
    assert ds.latents_classes.shape == (len(SMALL), 6)


# --------------------------------------------------------------------------- the cache


def test_replica_cache_round_trip(tmp_path):
    packed, path = cache.ensure_replica(tmp_path, grid=SMALL, quiet=True)
    assert path.parent == tmp_path / "dsprites" and path.is_file()
    assert path.stat().st_size == 4096 + len(SMALL) * 512
    again, _ = cache.ensure_replica(tmp_path, grid=SMALL, quiet=True, render=False)
    assert np.array_equal(packed, again)
    on_disk = np.memmap(path, np.uint8, "r", offset=4096, shape=(len(SMALL), 512))  # the documented layout
    assert np.array_equal(np.asarray(on_disk), packed)
    assert list(tmp_path.joinpath("dsprites").glob(".*.tmp")) == []


@pytest.mark.parametrize("damage", ["flip_payload_byte", "truncate", "garble_header", "wrong_version"])
def test_damaged_cache_is_rendered_again(tmp_path, damage, capsys):
    packed, path = cache.ensure_replica(tmp_path, grid=SMALL, quiet=True)
    raw = bytearray(path.read_bytes())
    if damage == "flip_payload_byte":
        raw[4096 + 1234] ^= 0x10
    elif damage == "truncate":
        raw = raw[: len(raw) - 700]
    elif damage == "garble_header":
        raw[30:40] = b"x" * 10
    else:
        raw[:4096] = raw[:4096].replace(b'"replica_version": 1', b'"replica_version": 0')
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"damaged.*imae-kit data fetch dsprites"):
        cache.ensure_replica(tmp_path, grid=SMALL, quiet=True, render=False)
    again, _ = cache.ensure_replica(tmp_path, grid=SMALL, quiet=True)
    assert np.array_equal(again, packed)
    assert path.read_bytes()[4096:] == packed.tobytes()


def test_missing_cache_without_auto_fetch_names_the_command(tmp_path):
    with pytest.raises(DataError, match="imae-kit data fetch dsprites"):
        cache.ensure_replica(tmp_path, grid=SMALL, render=False)
    with pytest.raises(DataError, match="imae-kit data fetch dsprites"):
        D.DSprites(root=str(tmp_path), auto_fetch=False).load()


def test_interrupted_write_leaves_no_cache_file(tmp_path, monkeypatch):
    real = cache.atomic_write

    class Boom(Exception):
        pass

    def failing_atomic_write(path):
        ctx = real(path)

        class Wrapper:
            def __enter__(self):
                handle = ctx.__enter__()
                original = handle.write
                calls = {"n": 0}

                def write(data):
                    calls["n"] += 1
                    if calls["n"] == 3:  # header, one payload chunk, then the failure
                        raise Boom("disk full")
                    return original(data)

                handle.write = write
                return handle

            def __exit__(self, *exc):
                return ctx.__exit__(*exc)

        return Wrapper()

    monkeypatch.setattr(cache, "atomic_write", failing_atomic_write)
    big = FactorGrid(shape=(0,), scale=(1.0,), orientation=tuple(np.linspace(0, 1, 40)),
                       pos_x=tuple(np.linspace(0, 1, 32)), pos_y=tuple(np.linspace(0, 1, 32)))  # 20 MB, two chunks
    with pytest.raises(Boom):
        cache.ensure_replica(tmp_path, grid=big, quiet=True)
    folder = tmp_path / "dsprites"
    assert not cache.replica_path(tmp_path, big).exists()
    assert [p.name for p in folder.iterdir() if p.name != ".lock"] == []


def test_registered_dsprites_renders_once_and_splits(tmp_path, monkeypatch):
    monkeypatch.setattr(FactorGrid, "full", classmethod(lambda cls: SMALL))
    splits = D.DSprites(root=str(tmp_path), eval_size=50, eval_seed=3).load()
    assert "replica" in splits.description and "not the official file" in splits.description
    assert len(splits.train) == len(SMALL) and len(splits.test) == 50
    assert cache.replica_path(tmp_path).name == "dsprites_replica_v1.bin"
    again = D.DSprites(root=str(tmp_path), eval_size=50, eval_seed=3, auto_fetch=False).load()
    assert torch.equal(again.test.indices, splits.test.indices)  # a fixed subset
    other = D.DSprites(root=str(tmp_path), eval_size=50, eval_seed=4).load()
    assert not torch.equal(other.test.indices, splits.test.indices)
    whole = D.DSprites(root=str(tmp_path)).load()
    assert whole.test is whole.train


def test_data_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("IMAE_KIT_DATA", str(tmp_path / "env-root"))
    assert cache.replica_path() == tmp_path / "env-root" / "dsprites" / "dsprites_replica_v1.bin"
    assert cache.replica_path(tmp_path / "given").parent == tmp_path / "given" / "dsprites"


# --------------------------------------------------------------------------- the official npz


TINY = FactorGrid(shape=(0, 1, 2), scale=(0.5,), orientation=(0.0, 1.0), pos_x=(0.0,), pos_y=(0.0, 1.0))


def write_npz(path, grid=TINY, **changes):
    values = grid.latents_values()
    arrays = {
        "imgs": render.render_sprites(values[:, 1] - 1, values[:, 2], values[:, 3], values[:, 4], values[:, 5]).astype(np.uint8),
        "latents_values": values,
        "latents_classes": grid.latents_classes(),
    }
    arrays.update(changes)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez_compressed(path, **arrays)
    return arrays


def test_official_npz_is_read_and_packed(tmp_path):
    path = tmp_path / npz.OFFICIAL_NPZ_NAME
    arrays = write_npz(path)
    packed = npz.read_official_npz(path, TINY)
    assert np.array_equal(packed, np.packbits(arrays["imgs"].reshape(len(TINY), -1), axis=1))


@pytest.mark.parametrize("change,message", [
    ({"imgs": None}, "lacks the array"),
    ({"imgs": np.zeros((12, 32, 32), np.uint8)}, "imgs is uint8"),
    ({"imgs": np.zeros((12, 64, 64), np.float32)}, "expected uint8"),
    ({"imgs": np.full((12, 64, 64), 255, np.uint8)}, "above 1"),
    ({"latents_classes": np.zeros((12, 6), np.int64)}, "official order"),
    ({"latents_values": np.zeros((12, 6))}, "latents_values differ"),
    ({"latents_values": np.zeros((12, 5))}, "expected float"),
])
def test_official_npz_validation(tmp_path, change, message):
    path = tmp_path / "bad.npz"
    write_npz(path, **change)
    with pytest.raises(DataError, match=message) as err:
        npz.read_official_npz(path, TINY)
    assert str(path) in str(err.value)


def test_official_npz_missing_truncated_or_not_a_zip(tmp_path):
    with pytest.raises(DataError, match="not found"):
        npz.read_official_npz(tmp_path / "nope.npz", TINY)
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(DataError, match="not an .npz"):
        npz.read_official_npz(text, TINY)
    path = tmp_path / "cut.npz"
    write_npz(path)  # cutting the end removes the zip directory
    cut = tmp_path / "cut2.npz"
    cut.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DataError):
        npz.read_official_npz(cut, TINY)
    # a CRC error inside a member that is otherwise readable
    good = tmp_path / "good.npz"
    write_npz(good)
    corrupt = tmp_path / "corrupt.npz"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(corrupt, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    raw = bytearray(corrupt.read_bytes())
    with zipfile.ZipFile(corrupt) as zf:
        info = zf.getinfo("imgs.npy")
        offset = info.header_offset + 30 + len(info.filename) + 200  # inside the stored imgs data
    raw[offset] ^= 0x01
    corrupt.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="damaged or truncated"):
        npz.read_official_npz(corrupt, TINY)


def test_registered_dsprites_with_a_wrong_official_file(tmp_path):
    path = tmp_path / npz.OFFICIAL_NPZ_NAME
    write_npz(path)  # a valid file for the tiny grid, the wrong shape for the real one
    with pytest.raises(DataError, match=r"latents_values is .* expected float \(737280, 6\)"):
        D.DSprites(path=str(path)).load()


def test_unpacking_on_the_device_gives_the_numpy_unpacking():
    """The GPU path (packed bytes on the device, unpacked by shifts there) equals numpy's unpackbits; on the
    CPU the same code runs, so this holds it on any machine."""
    from imae_kit.data.dsprites import DSpritesImages
    from imae_kit.data.dsprites_grid import FactorGrid

    grid = FactorGrid.full()
    g = torch.Generator().manual_seed(0)
    packed = torch.randint(0, 256, (len(grid), 512), generator=g, dtype=torch.uint8)
    images = DSpritesImages(packed, grid)
    index = torch.randint(0, len(grid), (37,), generator=g)
    on_device = images.to_device(torch.device("cpu")).get_batch(index)
    plain = images.get_batch(index)
    assert on_device.x.dtype == torch.float32 and torch.equal(on_device.x, plain.x)
    assert torch.equal(on_device.factors, plain.factors)
