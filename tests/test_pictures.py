"""Tests of the pixel renderer (envs/pictures.py), on hand-made observations only."""

from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg", force=True)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from envs import pictures  # noqa: E402
from envs.core.tables import CH_ENTITY, CH_REQUEST, CH_TILE, CH_TIME, Entity, Tile  # noqa: E402


def make_obs(h=5, w=6, request=0, time_left=40, tiles=None, entities=None):
    obs = np.zeros((4, h, w), dtype=np.uint8)
    obs[CH_TILE] = Tile.FLOOR
    obs[CH_TILE, 0, :] = obs[CH_TILE, -1, :] = obs[CH_TILE, :, 0] = obs[CH_TILE, :, -1] = Tile.WALL
    for (r, c), t in (tiles or {}).items():
        obs[CH_TILE, r, c] = t
    for (r, c), e in (entities or {}).items():
        obs[CH_ENTITY, r, c] = e
    obs[CH_REQUEST] = request
    obs[CH_TIME] = time_left
    return obs


def full_room():
    """7 x 9 room with every tile kind and every entity."""
    obs = make_obs(7, 9)
    inner = [(r, c) for r in range(1, 6) for c in range(1, 8)]
    for (r, c), t in zip(inner, [t for t in Tile if t not in (Tile.WALL,)]):
        obs[CH_TILE, r, c] = t
    for (r, c), e in zip(inner[-7:], [e for e in Entity if e != Entity.NONE]):
        obs[CH_ENTITY, r, c] = e
    obs[CH_TILE, 0, 4] = Tile.WALL
    return obs


@pytest.mark.parametrize("cell", [8, 16, 24])
def test_every_tile_sprite_is_distinct(cell):
    sprites = pictures.tile_sprites(cell)
    assert sprites.shape == (len(Tile), cell, cell, 3)
    assert sprites.dtype == np.uint8
    for a, b in itertools.combinations(range(len(Tile)), 2):
        assert not np.array_equal(sprites[a], sprites[b]), (Tile(a).name, Tile(b).name, cell)


@pytest.mark.parametrize("cell", [8, 16, 24])
def test_every_entity_sprite_is_distinct_and_visible(cell):
    rgb, mask = pictures.entity_sprites(cell)
    assert rgb.shape == (len(Entity), cell, cell, 3) and mask.shape == (len(Entity), cell, cell)
    assert not mask[Entity.NONE].any()
    floor = pictures.tile_sprites(cell)[Tile.FLOOR]
    drawn = [np.where(mask[e][..., None], rgb[e], floor) for e in range(len(Entity))]
    for e in range(1, len(Entity)):
        # covers a fair part of the cell but leaves the tile visible around it
        assert 0.1 < mask[e].mean() < 0.9, Entity(e).name
    for a, b in itertools.combinations(range(len(Entity)), 2):
        assert not np.array_equal(drawn[a], drawn[b]), (Entity(a).name, Entity(b).name, cell)


def test_rendered_cells_match_sprites():
    cell = 16
    obs = full_room()
    img = pictures.rgb_array(obs, cell=cell)
    tiles = pictures.tile_sprites(cell)
    ent_rgb, ent_mask = pictures.entity_sprites(cell)
    for r in range(obs.shape[1]):
        for c in range(obs.shape[2]):
            block = img[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell]
            t, e = obs[CH_TILE, r, c], obs[CH_ENTITY, r, c]
            expected = np.where(ent_mask[e][..., None], ent_rgb[e], tiles[t])
            if t == Tile.TIMER:  # the countdown is written over the panel
                assert (block != expected).any(axis=-1).mean() > 0.05
                continue
            np.testing.assert_array_equal(block, expected)


@pytest.mark.parametrize("cell", [8, 24, 32])
def test_rgb_array_shape_and_dtype(cell):
    obs = make_obs(5, 7)
    img = pictures.rgb_array(obs, cell=cell)
    assert img.dtype == np.uint8
    assert img.shape == (5 * cell + pictures.status_bar_height(cell), 7 * cell, 3)


def test_rgb_array_rejects_bad_input():
    with pytest.raises(ValueError):
        pictures.rgb_array(np.zeros((3, 4, 4), np.uint8))
    bad = make_obs()
    bad[CH_TILE, 1, 1] = len(Tile)
    with pytest.raises(ValueError):
        pictures.rgb_array(bad)
    bad = make_obs()
    bad[CH_ENTITY, 1, 1] = len(Entity)
    with pytest.raises(ValueError):
        pictures.rgb_array(bad)
    with pytest.raises(ValueError):
        pictures.rgb_array(make_obs(), cell=2)


@pytest.mark.parametrize("tile", [Tile.FLOOR, Tile.INTERRUPT, Tile.BUTTON])
@pytest.mark.parametrize("entity", [e for e in Entity if e != Entity.NONE])
def test_entity_changes_only_its_cell(tile, entity):
    cell = 12
    base = make_obs(5, 6, tiles={(2, 3): tile})
    with_ent = base.copy()
    with_ent[CH_ENTITY, 2, 3] = entity
    a = pictures.rgb_array(base, cell=cell)
    b = pictures.rgb_array(with_ent, cell=cell)
    diff = (a != b).any(axis=-1)
    assert diff.any()
    rows, cols = np.nonzero(diff)
    assert rows.min() >= 2 * cell and rows.max() < 3 * cell
    assert cols.min() >= 3 * cell and cols.max() < 4 * cell


def test_request_flag_changes_only_the_status_bar():
    cell = 16
    off = make_obs(request=0)
    on = make_obs(request=1)
    a = pictures.rgb_array(off, cell=cell)
    b = pictures.rgb_array(on, cell=cell)
    grid_h = off.shape[1] * cell
    np.testing.assert_array_equal(a[:grid_h], b[:grid_h])
    bar_a, bar_b = a[grid_h:], b[grid_h:]
    assert (bar_a != bar_b).any(axis=-1).mean() > 0.3  # a clearly visible change
    # a red-dominant indicator appears when requested
    red_b = (bar_b[..., 0].astype(int) - bar_b[..., 1:].max(axis=-1) > 120).sum()
    red_a = (bar_a[..., 0].astype(int) - bar_a[..., 1:].max(axis=-1) > 120).sum()
    assert red_b > red_a


def test_time_left_changes_progress_bar():
    cell = 16
    grid_h = 5 * cell
    full = pictures.rgb_array(make_obs(time_left=50), cell=cell, max_steps=50)[grid_h:]
    half = pictures.rgb_array(make_obs(time_left=25), cell=cell, max_steps=50)[grid_h:]
    empty = pictures.rgb_array(make_obs(time_left=0), cell=cell, max_steps=50)[grid_h:]
    track = np.array(pictures.TRACK)
    n_track = [int((bar == track).all(axis=-1).sum()) for bar in (full, half, empty)]
    assert n_track[0] < n_track[1] < n_track[2]


def test_sprite_cache_is_read_only_and_public_copies_are_writable():
    t = pictures.tile_sprites(8)
    t[:] = 0  # a copy: must not corrupt the cache
    assert pictures.tile_sprites(8).any()


def test_save_gif_frames(tmp_path):
    frames = [make_obs(time_left=10 - k, entities={(2, 1 + k): Entity.ROBOT}, request=int(k >= 2)) for k in range(4)]
    path = pictures.save_gif(frames, tmp_path / "ep.gif", fps=5)
    assert path == tmp_path / "ep.gif"
    with Image.open(path) as im:
        assert im.format == "GIF"
        assert im.n_frames == 4
        assert im.info.get("loop") == 0
        assert im.size == (6 * 24, 5 * 24 + pictures.status_bar_height(24))
        # colours are exact (one shared palette), frame by frame
        for k in range(4):
            im.seek(k)
            got = np.asarray(im.convert("RGB"))
            np.testing.assert_array_equal(got, pictures.rgb_array(frames[k], cell=24, max_steps=10))


def test_save_gif_from_rgb_frames(tmp_path):
    rgbs = [pictures.rgb_array(make_obs(time_left=t), cell=8) for t in (9, 8, 7)]
    path = pictures.save_gif(rgbs, str(tmp_path / "rgb.gif"))
    with Image.open(path) as im:
        assert im.n_frames == 3


def test_save_gif_errors(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        pictures.save_gif([], tmp_path / "x.gif")
    with pytest.raises(ValueError, match="shape"):
        pictures.save_gif([make_obs(5, 6), make_obs(5, 7)], tmp_path / "x.gif")
    with pytest.raises(ValueError, match="shape"):
        pictures.save_gif([make_obs(5, 6), pictures.rgb_array(make_obs(5, 6))], tmp_path / "x.gif")
    assert not (tmp_path / "x.gif").exists()


def test_save_png_roundtrip(tmp_path):
    img = pictures.rgb_array(full_room(), cell=16)
    path = pictures.save_png(img, tmp_path / "room.png")
    np.testing.assert_array_equal(np.asarray(Image.open(path).convert("RGB")), img)


def test_legend_image():
    leg = pictures.legend_image(cell=32)
    assert leg.dtype == np.uint8 and leg.ndim == 3 and leg.shape[2] == 3
    tiles = pictures.tile_sprites(32)

    def contains(big, small):
        h, w = small.shape[:2]
        probe = (h // 2, w // 2)  # anchor on the sprite's centre pixel, then compare whole windows
        ys, xs = np.nonzero((big == small[probe]).all(axis=-1))
        for y, x in zip(ys - probe[0], xs - probe[1]):
            if 0 <= y <= big.shape[0] - h and 0 <= x <= big.shape[1] - w and np.array_equal(big[y:y + h, x:x + w], small):
                return True
        return False

    for t in (Tile.BUTTON, Tile.COFFEE, Tile.SWITCH):
        assert contains(leg, tiles[t]), Tile(t).name


def test_show_under_agg():
    assert matplotlib.get_backend().lower() == "agg"
    obs = full_room()
    image = pictures.show(obs, title="room")
    fig = image.axes.figure
    again = pictures.show(make_obs(7, 9, time_left=3))  # reuses the module-level figure
    assert again.axes.figure is fig
    assert again.get_array().shape == pictures.rgb_array(obs).shape
    assert image.axes.get_xticks().size == 0
    fig.canvas.draw()  # renders without a display
    _, ax = plt.subplots()
    img2 = pictures.show(obs, ax=ax)
    assert img2.axes is ax
    plt.close("all")
    # a closed module-level figure is recreated
    img3 = pictures.show(obs)
    assert plt.fignum_exists(img3.axes.figure.number)
    plt.close("all")
