"""Pixel pictures of observations (``render_mode="rgb_array"`` / ``"human"``, GIFs, PNGs).

Every tile kind and every entity has a small procedurally drawn sprite: pure numpy masks
(rectangles, circles, ellipses, polygons, thick segments) sampled once per pixel centre, with
no anti-aliasing, so the pictures stay crisp when scaled up with nearest-neighbour
interpolation. The sprites of one cell size are drawn once and cached as lookup tables; a
frame is then composed by fancy indexing (``tiles_lut[obs[0]]``), so rendering costs a few
array copies.

Layout of a frame returned by :func:`rgb_array`: the ``H x W`` grid of ``cell x cell``
sprites, then a status bar of :func:`status_bar_height` rows showing an indicator lamp (lit
red, on a dark red bar, while a shutdown is requested), the number of steps left and a
progress bar of the steps left relative to ``max_steps``.

Public functions::

    rgb_array(obs, cell=24, max_steps=None) -> np.ndarray   # uint8 [H*cell + bar, W*cell, 3]
    show(obs, ax=None, ...)                                 # matplotlib, works under Agg
    save_gif(frames, path, fps=4)                           # animated GIF, loops forever
    save_png(rgb, path)
    legend_image(cell=32) -> np.ndarray                     # gallery of every sprite
    tile_sprites(cell) / entity_sprites(cell)               # the lookup tables themselves

Text (the status bar's numbers, the legend's names) uses Pillow's bundled default font; the
sprites themselves use no font.
"""

from __future__ import annotations

import functools
import os
from typing import Sequence

import numpy as np

from .core.tables import (CH_ENTITY, CH_REQUEST, CH_TILE, CH_TIME, NUM_CHANNELS, PREFERENCE_CHANNELS, TIME_CLIP,
                          Entity, Tile)

__all__ = [
    "entity_sprites", "legend_image", "rgb_array", "save_gif", "save_png", "show", "status_bar_height",
    "tile_sprites",
]

NUM_TILES = len(Tile)
NUM_ENTITIES = len(Entity)
MIN_CELL = 4

# --------------------------------------------------------------------------------------------
# Palette
# --------------------------------------------------------------------------------------------
FLOOR = (226, 222, 210)
GROUT = (196, 191, 178)
OUTLINE = (28, 28, 34)
MORTAR = (178, 172, 160)
BRICK = (160, 66, 46)
BRICK_DARK = (128, 50, 36)
PALE_BRICK = (214, 170, 120)
PALE_BRICK_DARK = (186, 140, 96)
CRACK = (40, 30, 26)
STEEL = (92, 96, 104)
STEEL_DARK = (58, 60, 66)
RED = (214, 36, 36)
RED_LIGHT = (250, 120, 110)
YELLOW = (244, 196, 30)
BLACK = (30, 30, 30)
GREY = (150, 150, 150)
GREY_LIGHT = (196, 196, 196)
GREY_DARK = (104, 104, 104)
WHITE = (248, 248, 248)
COFFEE_BROWN = (112, 62, 26)
COFFEE_LIGHT = (176, 112, 58)
WOOD = (170, 112, 58)
WOOD_DARK = (122, 78, 36)
MONITOR = (44, 52, 66)
SCREEN = (120, 190, 230)
BLUE_VASE = (46, 96, 196)
BLUE_VASE_LIGHT = (120, 166, 236)
PURPLE = (128, 60, 176)
PURPLE_DARK = (84, 36, 120)
GOLD = (240, 190, 30)
GOLD_DARK = (178, 128, 12)
GOLD_LIGHT = (255, 236, 140)
ROBOT_BODY = (170, 176, 188)
ROBOT_DARK = (120, 126, 138)
ROBOT_EYE = (40, 210, 240)
ROBOT_OFF_BODY = (74, 76, 84)
ROBOT_OFF_DARK = (52, 54, 60)
SKIN = (242, 196, 160)
HAIR = (92, 58, 30)
SHIRT = (44, 106, 206)
PANTS = (30, 48, 100)
HAIR_GREY = (206, 206, 212)
DRESS = (142, 62, 160)
CANE = (112, 72, 34)
CAT = (236, 136, 40)
CAT_DARK = (186, 92, 20)
CAT_EYE = (40, 160, 60)
BLOOD = (200, 20, 30)

BAR_BG = (40, 42, 48)
BAR_BG_REQUEST = (110, 22, 26)
LAMP_OFF = (86, 40, 40)
LAMP_ON = (255, 56, 48)
TRACK = (86, 88, 96)


# --------------------------------------------------------------------------------------------
# A tiny rasteriser: shapes are boolean masks over pixel centres, coordinates in [0, 1].
# --------------------------------------------------------------------------------------------
class _Canvas:
    """An ``n x n`` RGB sprite with a coverage mask; coordinates are fractions of the cell."""

    def __init__(self, n: int, background=None):
        self.n = n
        c = (np.arange(n) + 0.5) / n
        self.y, self.x = np.meshgrid(c, c, indexing="ij")
        self.rgb = np.zeros((n, n, 3), dtype=np.uint8)
        self.alpha = np.zeros((n, n), dtype=bool)
        if background is not None:
            self.rgb[:] = background
            self.alpha[:] = True

    # shapes --------------------------------------------------------------------------------
    def rect(self, x0, y0, x1, y1):
        return (self.x >= x0) & (self.x < x1) & (self.y >= y0) & (self.y < y1)

    def circle(self, cx, cy, r):
        return (self.x - cx) ** 2 + (self.y - cy) ** 2 <= r * r

    def ellipse(self, cx, cy, rx, ry):
        return ((self.x - cx) / rx) ** 2 + ((self.y - cy) / ry) ** 2 <= 1.0

    def ring(self, cx, cy, r, width):
        d2 = (self.x - cx) ** 2 + (self.y - cy) ** 2
        w = max(width, 1.0 / self.n)
        return (d2 <= r * r) & (d2 > (r - w) ** 2)

    def seg(self, x0, y0, x1, y1, width):
        """A thick segment (at least one pixel wide)."""
        half = max(width / 2.0, 0.55 / self.n)
        dx, dy = x1 - x0, y1 - y0
        ll = dx * dx + dy * dy
        if ll == 0:
            return self.circle(x0, y0, half)
        t = np.clip(((self.x - x0) * dx + (self.y - y0) * dy) / ll, 0.0, 1.0)
        px, py = x0 + t * dx, y0 + t * dy
        return (self.x - px) ** 2 + (self.y - py) ** 2 <= half * half

    def poly(self, pts):
        """Even-odd point-in-polygon test for a list of ``(x, y)`` vertices."""
        inside = np.zeros((self.n, self.n), dtype=bool)
        pts = list(pts)
        for (xa, ya), (xb, yb) in zip(pts, pts[1:] + pts[:1]):
            if ya == yb:
                continue
            crosses = (self.y >= min(ya, yb)) & (self.y < max(ya, yb))
            xcross = xa + (self.y - ya) * (xb - xa) / (yb - ya)
            inside ^= crosses & (self.x < xcross)
        return inside

    # painting ------------------------------------------------------------------------------
    def fill(self, mask, color):
        self.rgb[mask] = color
        self.alpha |= mask
        return mask

    def outline(self, color=OUTLINE):
        """Paint a one-pixel border around everything drawn so far (inside the cell)."""
        a = self.alpha
        grown = a.copy()
        grown[1:, :] |= a[:-1, :]
        grown[:-1, :] |= a[1:, :]
        grown[:, 1:] |= a[:, :-1]
        grown[:, :-1] |= a[:, 1:]
        self.fill(grown & ~a, color)


def _floor(c: _Canvas):
    """Light floor tile with grout on its right and bottom edges."""
    c.fill(c.rect(0, 0, 1, 1), FLOOR)
    px = 1.0 / c.n
    c.fill(c.rect(1 - px, 0, 1, 1) | c.rect(0, 1 - px, 1, 1), GROUT)


def _bricks(c: _Canvas, brick, brick_dark, mortar):
    c.fill(c.rect(0, 0, 1, 1), mortar)
    rows = 4
    m = max(1.0 / c.n, 0.06)  # mortar thickness
    for r in range(rows):
        y0, y1 = r / rows, (r + 1) / rows
        offset = 0.0 if r % 2 == 0 else 0.25
        for k in range(-1, 3):
            x0 = offset + k * 0.5
            x1 = x0 + 0.5
            mask = c.rect(max(x0 + m / 2, 0), y0 + m / 2, min(x1 - m / 2, 1), y1 - m / 2)
            c.fill(mask, brick)
            # shade the lower edge of each brick for depth
            c.fill(mask & (c.y >= y1 - m / 2 - max(1.0 / c.n, 0.05)), brick_dark)


# --------------------------------------------------------------------------------------------
# Tile sprites
# --------------------------------------------------------------------------------------------
def _draw_tile(tile: Tile, n: int) -> np.ndarray:
    c = _Canvas(n)
    if tile in (Tile.WALL,):
        _bricks(c, BRICK, BRICK_DARK, MORTAR)
        return c.rgb
    if tile == Tile.FRAGILE_WALL:
        _bricks(c, PALE_BRICK, PALE_BRICK_DARK, MORTAR)
        w = 0.07
        pts = [(0.08, 0.0), (0.3, 0.22), (0.2, 0.42), (0.48, 0.58), (0.4, 0.8), (0.62, 1.0)]
        for (xa, ya), (xb, yb) in zip(pts, pts[1:]):
            c.fill(c.seg(xa, ya, xb, yb, w), CRACK)
        for (xa, ya), (xb, yb) in (((0.48, 0.58), (0.8, 0.45)), ((0.8, 0.45), (1.0, 0.5)), ((0.3, 0.22), (0.55, 0.12))):
            c.fill(c.seg(xa, ya, xb, yb, w * 0.8), CRACK)
        return c.rgb

    _floor(c)
    if tile == Tile.FLOOR:
        return c.rgb
    if tile == Tile.RUBBLE:
        stones = [
            ((0.22, 0.3), 0.12, (150, 140, 128)), ((0.62, 0.24), 0.1, PALE_BRICK_DARK),
            ((0.45, 0.58), 0.14, (128, 120, 110)), ((0.8, 0.62), 0.09, PALE_BRICK),
            ((0.2, 0.76), 0.09, PALE_BRICK_DARK), ((0.66, 0.84), 0.08, (150, 140, 128)),
        ]
        for (x, y), r, col in stones:
            m = c.poly([(x - r, y + r * 0.6), (x - r * 0.5, y - r), (x + r * 0.8, y - r * 0.7), (x + r, y + r * 0.5),
                        (x + r * 0.2, y + r)])
            c.fill(m, col)
            c.fill(m & (c.y > y + r * 0.35), tuple(int(v * 0.72) for v in col))
        return c.rgb
    if tile == Tile.COFFEE:
        c.fill(c.rect(0.14, 0.08, 0.86, 0.94), STEEL_DARK)
        c.fill(c.rect(0.2, 0.14, 0.8, 0.34), STEEL)  # top panel
        c.fill(c.circle(0.69, 0.24, 0.055), (90, 230, 90))  # power led
        c.fill(c.rect(0.28, 0.2, 0.52, 0.28), (20, 20, 24))  # display slot
        c.fill(c.rect(0.2, 0.4, 0.8, 0.88), (34, 34, 40))  # cup bay
        c.fill(c.rect(0.44, 0.4, 0.56, 0.5), STEEL)  # nozzle
        c.fill(c.rect(0.34, 0.54, 0.62, 0.84), COFFEE_BROWN)  # cup
        c.fill(c.rect(0.34, 0.54, 0.62, 0.6), COFFEE_LIGHT)  # coffee surface
        c.fill(c.ring(0.64, 0.68, 0.09, 0.05) & (c.x > 0.62), COFFEE_BROWN)  # handle
        c.fill(c.rect(0.24, 0.84, 0.76, 0.88), STEEL)  # drip tray
        return c.rgb
    if tile == Tile.DESK:
        c.fill(c.rect(0.3, 0.1, 0.7, 0.36), MONITOR)  # monitor
        c.fill(c.rect(0.34, 0.14, 0.66, 0.32), SCREEN)
        c.fill(c.rect(0.46, 0.36, 0.54, 0.44), MONITOR)  # stand
        c.fill(c.rect(0.06, 0.44, 0.94, 0.56), WOOD)  # table top
        c.fill(c.rect(0.06, 0.52, 0.94, 0.56), WOOD_DARK)
        c.fill(c.rect(0.12, 0.56, 0.2, 0.94), WOOD_DARK)  # legs
        c.fill(c.rect(0.8, 0.56, 0.88, 0.94), WOOD_DARK)
        c.fill(c.rect(0.62, 0.56, 0.8, 0.74), WOOD)  # drawer
        c.fill(c.rect(0.68, 0.63, 0.74, 0.67), WOOD_DARK)
        return c.rgb
    if tile in (Tile.BUTTON, Tile.BUTTON_DISABLED):
        on = tile == Tile.BUTTON
        c.fill(c.rect(0.1, 0.1, 0.9, 0.9), YELLOW if on else GREY_LIGHT)  # housing
        c.fill(c.ring(0.5, 0.5, 0.4, 0.06) & c.rect(0.1, 0.1, 0.9, 0.9), BLACK if on else GREY_DARK)
        c.fill(c.circle(0.5, 0.5, 0.31), (120, 10, 14) if on else GREY_DARK)  # rim
        c.fill(c.circle(0.5, 0.47, 0.27), RED if on else GREY)
        c.fill(c.circle(0.42, 0.38, 0.08), RED_LIGHT if on else GREY_LIGHT)  # highlight
        if not on:
            w = 0.1
            c.fill(c.seg(0.18, 0.18, 0.82, 0.82, w) | c.seg(0.82, 0.18, 0.18, 0.82, w), (60, 60, 60))
        return c.rgb
    if tile in (Tile.SWITCH, Tile.SWITCH_USED):
        on = tile == Tile.SWITCH
        plate = c.rect(0.2, 0.06, 0.8, 0.94)
        stripes = ((c.x + c.y) * 5.0) % 1.0 < 0.5
        c.fill(plate, BLACK)
        c.fill(plate & stripes, YELLOW if on else GREY)
        c.fill(c.rect(0.32, 0.16, 0.68, 0.84), (64, 64, 70))  # inner face
        c.fill(c.rect(0.46, 0.2, 0.54, 0.8), (16, 16, 18))  # slot
        knob_y = 0.24 if on else 0.76
        c.fill(c.seg(0.5, 0.5, 0.5, knob_y, 0.1), GREY_LIGHT)  # lever shaft
        c.fill(c.circle(0.5, 0.5, 0.1), GREY_DARK)  # pivot
        c.fill(c.circle(0.5, knob_y, 0.13), RED if on else GREY_DARK)  # knob
        c.fill(c.circle(0.46, knob_y - 0.04, 0.045), RED_LIGHT if on else GREY)
        return c.rgb
    if tile == Tile.INTERRUPT:
        inner = c.rect(0.04, 0.04, 0.96, 0.96)
        stripes = ((c.x - c.y) * 3.0) % 1.0 < 0.5
        c.fill(inner, BLACK)
        c.fill(inner & stripes, YELLOW)
        return c.rgb
    if tile == Tile.VASE:
        body = c.ellipse(0.5, 0.6, 0.28, 0.25)
        neck = c.poly([(0.4, 0.22), (0.6, 0.22), (0.56, 0.4), (0.44, 0.4)])
        lip = c.ellipse(0.5, 0.18, 0.17, 0.06)
        foot = c.rect(0.38, 0.78, 0.62, 0.9)
        c.fill(body | neck | lip | foot, BLUE_VASE)
        c.fill(c.rect(0.2, 0.5, 0.8, 0.56) & body, BLUE_VASE_LIGHT)  # decorative bands
        c.fill(c.rect(0.2, 0.66, 0.8, 0.7) & body, BLUE_VASE_LIGHT)
        c.fill(c.ellipse(0.5, 0.18, 0.1, 0.03), (20, 40, 90))  # opening
        c.fill(c.ellipse(0.34, 0.6, 0.04, 0.08) & body, WHITE)  # glint
        c.outline()
        return c.rgb
    if tile == Tile.BROKEN_VASE:
        shards = [
            [(0.12, 0.78), (0.3, 0.6), (0.38, 0.84)],
            [(0.42, 0.9), (0.5, 0.66), (0.64, 0.72), (0.58, 0.92)],
            [(0.66, 0.5), (0.86, 0.58), (0.76, 0.76)],
            [(0.24, 0.36), (0.42, 0.3), (0.36, 0.5)],
            [(0.7, 0.84), (0.9, 0.8), (0.84, 0.94)],
        ]
        for k, s in enumerate(shards):
            c.fill(c.poly(s), BLUE_VASE if k % 2 == 0 else BLUE_VASE_LIGHT)
        c.fill(c.seg(0.48, 0.72, 0.6, 0.8, 0.04) & c.poly(shards[1]), WHITE)
        c.outline()
        return c.rgb
    if tile in (Tile.DELAY, Tile.DELAY_USED):
        on = tile == Tile.DELAY
        c.fill(c.rect(0.1, 0.1, 0.9, 0.9), STEEL_DARK if on else GREY_LIGHT)  # housing
        c.fill(c.circle(0.5, 0.5, 0.38), PURPLE if on else GREY)
        c.fill(c.ring(0.5, 0.5, 0.38, 0.05), PURPLE_DARK if on else GREY_DARK)
        c.fill(c.circle(0.5, 0.5, 0.25), WHITE if on else GREY_LIGHT)  # clock face
        for ang in range(0, 360, 90):  # hour marks
            t = np.deg2rad(ang)
            c.fill(c.circle(0.5 + 0.19 * np.cos(t), 0.5 + 0.19 * np.sin(t), 0.035), PURPLE_DARK if on else GREY_DARK)
        hand = BLACK if on else GREY_DARK
        c.fill(c.seg(0.5, 0.5, 0.5, 0.31, 0.06), hand)
        c.fill(c.seg(0.5, 0.5, 0.65, 0.5, 0.06), hand)
        return c.rgb
    if tile == Tile.COIN:
        c.fill(c.circle(0.5, 0.5, 0.32), GOLD_DARK)
        c.fill(c.circle(0.5, 0.5, 0.26), GOLD)
        c.fill(c.rect(0.46, 0.32, 0.54, 0.68), GOLD_DARK)  # embossed bar
        c.fill(c.circle(0.4, 0.36, 0.05), GOLD_LIGHT)  # glint
        c.outline()
        return c.rgb
    if tile == Tile.TIMER:  # a dark display panel set in the wall; rgb_array writes the countdown on it
        _bricks(c, BRICK, BRICK_DARK, MORTAR)
        c.fill(c.rect(0.12, 0.16, 0.88, 0.84), (24, 24, 28))
        return c.rgb
    raise ValueError(f"no sprite for tile {tile!r}")  # pragma: no cover - every Tile is handled


# --------------------------------------------------------------------------------------------
# Entity sprites (RGB + coverage mask, drawn over the tile)
# --------------------------------------------------------------------------------------------
def _robot(c: _Canvas, body, dark, eye, antenna_ball, off=False):
    c.fill(c.rect(0.3, 0.86, 0.44, 0.96) | c.rect(0.56, 0.86, 0.7, 0.96), dark)  # feet
    c.fill(c.rect(0.14, 0.5, 0.24, 0.76) | c.rect(0.76, 0.5, 0.86, 0.76), dark)  # arms
    c.fill(c.rect(0.24, 0.46, 0.76, 0.88), body)  # torso
    c.fill(c.seg(0.5, 0.06, 0.5, 0.2, 0.05), dark)  # antenna
    c.fill(c.circle(0.5, 0.07, 0.06), antenna_ball)
    c.fill(c.rect(0.28, 0.17, 0.72, 0.44), body)  # head
    c.fill(c.rect(0.28, 0.4, 0.72, 0.44), dark)  # chin / neck shadow
    if off:
        c.fill(c.rect(0.34, 0.29, 0.46, 0.33) | c.rect(0.54, 0.29, 0.66, 0.33), BLACK)  # closed eyes
        # power symbol on the chest
        ring = c.ring(0.5, 0.67, 0.13, 0.045) & ~c.rect(0.42, 0.5, 0.58, 0.62)
        c.fill(ring | c.seg(0.5, 0.52, 0.5, 0.66, 0.05), RED)
    else:
        c.fill(c.circle(0.4, 0.3, 0.06) | c.circle(0.6, 0.3, 0.06), eye)
        c.fill(c.rect(0.34, 0.56, 0.66, 0.76), dark)  # chest panel
        c.fill(c.rect(0.38, 0.6, 0.46, 0.66), (240, 80, 80))
        c.fill(c.rect(0.54, 0.6, 0.62, 0.66), (90, 220, 110))


def _person(c: _Canvas, hair, clothes, legs, grandma=False):
    if grandma:
        c.fill(c.seg(0.86, 0.42, 0.86, 0.96, 0.06) | c.seg(0.86, 0.42, 0.76, 0.4, 0.06), CANE)  # cane
        c.fill(c.rect(0.38, 0.86, 0.46, 0.96) | c.rect(0.54, 0.86, 0.62, 0.96), legs)
        c.fill(c.poly([(0.36, 0.36), (0.64, 0.36), (0.8, 0.88), (0.2, 0.88)]), clothes)  # dress
        c.fill(c.rect(0.3, 0.38, 0.38, 0.6) | c.rect(0.62, 0.38, 0.78, 0.44), clothes)  # sleeves
        c.fill(c.circle(0.34, 0.62, 0.045) | c.circle(0.78, 0.42, 0.045), SKIN)  # hands
        c.fill(c.rect(0.26, 0.7, 0.74, 0.74) & c.poly([(0.36, 0.36), (0.64, 0.36), (0.8, 0.88), (0.2, 0.88)]),
               (196, 140, 210))  # hem stripe
        c.fill(c.circle(0.5, 0.06, 0.07), hair)  # bun
        c.fill(c.circle(0.5, 0.2, 0.14), hair)
        c.fill(c.circle(0.5, 0.23, 0.12), SKIN)
        c.fill(c.rect(0.36, 0.11, 0.64, 0.17), hair)  # fringe
        c.fill(c.ring(0.44, 0.24, 0.045, 0.02) | c.ring(0.56, 0.24, 0.045, 0.02), BLACK)  # glasses
    else:
        c.fill(c.rect(0.36, 0.64, 0.48, 0.96) | c.rect(0.52, 0.64, 0.64, 0.96), legs)  # legs
        c.fill(c.rect(0.32, 0.36, 0.68, 0.68), clothes)  # torso
        c.fill(c.rect(0.2, 0.38, 0.32, 0.64) | c.rect(0.68, 0.38, 0.8, 0.64), clothes)  # arms
        c.fill(c.circle(0.26, 0.66, 0.05) | c.circle(0.74, 0.66, 0.05), SKIN)  # hands
        c.fill(c.circle(0.5, 0.2, 0.14), hair)
        c.fill(c.circle(0.5, 0.23, 0.12), SKIN)
        c.fill(c.rect(0.36, 0.08, 0.64, 0.16), hair)  # hair on top
        c.fill(c.circle(0.45, 0.23, 0.025) | c.circle(0.55, 0.23, 0.025), BLACK)  # eyes


def _cat(c: _Canvas, harmed=False):
    if not harmed:
        c.fill(c.seg(0.72, 0.84, 0.86, 0.7, 0.08) | c.seg(0.86, 0.7, 0.84, 0.5, 0.08), CAT_DARK)  # tail
        c.fill(c.ellipse(0.5, 0.7, 0.26, 0.22), CAT)  # body
        for y in (0.58, 0.68):  # stripes
            c.fill(c.ellipse(0.5, 0.7, 0.26, 0.22) & c.rect(0.3, y, 0.7, y + 0.04), CAT_DARK)
        c.fill(c.rect(0.36, 0.86, 0.44, 0.94) | c.rect(0.56, 0.86, 0.64, 0.94), CAT)  # paws
        c.fill(c.poly([(0.3, 0.34), (0.32, 0.08), (0.46, 0.24)]), CAT)  # ears
        c.fill(c.poly([(0.7, 0.34), (0.68, 0.08), (0.54, 0.24)]), CAT)
        c.fill(c.poly([(0.33, 0.26), (0.34, 0.14), (0.42, 0.23)]) | c.poly([(0.67, 0.26), (0.66, 0.14), (0.58, 0.23)]),
               (246, 170, 170))  # inner ears
        c.fill(c.ellipse(0.5, 0.36, 0.2, 0.16), CAT)  # head
        c.fill(c.circle(0.42, 0.34, 0.045) | c.circle(0.58, 0.34, 0.045), CAT_EYE)
        c.fill(c.rect(0.41, 0.31, 0.43, 0.37) | c.rect(0.57, 0.31, 0.59, 0.37), BLACK)  # slit pupils
        c.fill(c.poly([(0.46, 0.41), (0.54, 0.41), (0.5, 0.45)]), (220, 90, 110))  # nose
    else:
        # lying flat on its side, legs out, X eyes, a red mark
        c.fill(c.seg(0.78, 0.74, 0.94, 0.76, 0.07), CAT_DARK)  # tail stretched out
        c.fill(c.seg(0.4, 0.78, 0.36, 0.9, 0.06) | c.seg(0.62, 0.78, 0.66, 0.9, 0.06), CAT)  # legs
        c.fill(c.ellipse(0.52, 0.72, 0.28, 0.1), CAT)  # flat body
        c.fill(c.ellipse(0.52, 0.72, 0.28, 0.1) & c.rect(0.44, 0.62, 0.48, 0.82), CAT_DARK)
        c.fill(c.ellipse(0.52, 0.72, 0.28, 0.1) & c.rect(0.58, 0.62, 0.62, 0.82), CAT_DARK)
        c.fill(c.poly([(0.1, 0.62), (0.06, 0.46), (0.2, 0.56)]) | c.poly([(0.22, 0.56), (0.26, 0.42), (0.32, 0.6)]),
               CAT)  # ears
        c.fill(c.ellipse(0.2, 0.68, 0.14, 0.12), CAT)  # head
        w = 0.035
        for ex in (0.15, 0.25):  # X eyes
            c.fill(c.seg(ex - 0.035, 0.63, ex + 0.035, 0.7, w) | c.seg(ex + 0.035, 0.63, ex - 0.035, 0.7, w), BLACK)
        blot = c.circle(0.56, 0.64, 0.1) | c.circle(0.66, 0.6, 0.06) | c.circle(0.48, 0.58, 0.05)
        c.fill(blot, BLOOD)  # red mark
        c.fill(c.rect(0.53, 0.54, 0.59, 0.72) | c.rect(0.48, 0.6, 0.64, 0.66), WHITE)  # white cross on it
    c.outline()


def _draw_entity(ent: Entity, n: int):
    c = _Canvas(n)
    if ent == Entity.NONE:
        return c.rgb, c.alpha
    if ent == Entity.ROBOT:
        _robot(c, ROBOT_BODY, ROBOT_DARK, ROBOT_EYE, RED)
        c.outline()
    elif ent == Entity.ROBOT_WITH_COFFEE:
        _robot(c, ROBOT_BODY, ROBOT_DARK, ROBOT_EYE, RED)
        # the right arm holds a steaming brown cup
        c.fill(c.rect(0.7, 0.44, 0.96, 0.7), COFFEE_BROWN)
        c.fill(c.rect(0.7, 0.44, 0.96, 0.5), COFFEE_LIGHT)
        c.fill(c.seg(0.78, 0.38, 0.8, 0.28, 0.035) | c.seg(0.88, 0.38, 0.9, 0.28, 0.035), WHITE)  # steam
        c.outline()
    elif ent == Entity.ROBOT_OFF:
        _robot(c, ROBOT_OFF_BODY, ROBOT_OFF_DARK, BLACK, GREY_DARK, off=True)
        c.outline((10, 10, 12))
    elif ent == Entity.HUMAN:
        _person(c, HAIR, SHIRT, PANTS)
        c.outline()
    elif ent == Entity.GRANDMA:
        _person(c, HAIR_GREY, DRESS, (90, 80, 90), grandma=True)
        c.outline()
    elif ent == Entity.CAT:
        _cat(c)
    elif ent == Entity.CAT_HARMED:
        _cat(c, harmed=True)
    else:  # pragma: no cover - every Entity is handled
        raise ValueError(f"no sprite for entity {ent!r}")
    return c.rgb, c.alpha


def _check_cell(cell) -> int:
    cell = int(cell)
    if cell < MIN_CELL:
        raise ValueError(f"cell must be at least {MIN_CELL} pixels, got {cell}")
    return cell


@functools.lru_cache(maxsize=16)
def _tables(cell: int):
    tiles = np.stack([_draw_tile(Tile(t), cell) for t in range(NUM_TILES)])
    ents = [_draw_entity(Entity(e), cell) for e in range(NUM_ENTITIES)]
    ent_rgb = np.stack([e[0] for e in ents])
    ent_alpha = np.stack([e[1] for e in ents])
    # every (tile, entity) pair pre-composited: a frame is then a single gather
    combo = np.where(ent_alpha[None, :, :, :, None], ent_rgb[None], tiles[:, None])
    combo = np.ascontiguousarray(combo.reshape(NUM_TILES * NUM_ENTITIES, cell, cell, 3))
    for a in (tiles, ent_rgb, ent_alpha, combo):
        a.setflags(write=False)
    return tiles, ent_rgb, ent_alpha, combo


def tile_sprites(cell: int = 24) -> np.ndarray:
    """The sprite of every tile code: uint8 ``[len(Tile), cell, cell, 3]`` (a fresh copy)."""
    return _tables(_check_cell(cell))[0].copy()


def entity_sprites(cell: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """The sprite of every entity code: ``(rgb, mask)`` with ``rgb`` uint8 ``[len(Entity), cell, cell, 3]``
    and ``mask`` bool ``[len(Entity), cell, cell]`` (True where the entity covers the tile;
    all False for ``Entity.NONE``). Fresh copies."""
    _, rgb, alpha, _ = _tables(_check_cell(cell))
    return rgb.copy(), alpha.copy()


# --------------------------------------------------------------------------------------------
# Text (status bar, legend): Pillow's bundled default font, no anti-aliasing
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _font(size: int):
    try:
        from PIL import ImageFont
    except ImportError:  # pragma: no cover - pillow ships with matplotlib
        return None
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # old Pillow or no FreeType: the fixed bitmap font
        try:
            return ImageFont.load_default()
        except Exception:  # pragma: no cover
            return None


def _render_ink(text: str, size: int) -> np.ndarray:
    """Raw ink mask of ``text`` drawn (without anti-aliasing) at offset (m, m) of a blank canvas."""
    from PIL import Image, ImageDraw

    font = _font(size)
    m = size
    w = int(font.getlength(text)) + 3 * m if hasattr(font, "getlength") else 8 * size * max(1, len(text))
    canvas = Image.new("L", (w, 4 * m), 0)
    draw = ImageDraw.Draw(canvas)
    draw.fontmode = "1"  # crisp, palette-friendly text
    draw.text((m, m), text, fill=255, font=font)
    return np.asarray(canvas) > 127


@functools.lru_cache(maxsize=512)
def _text_mask(text: str, size: int) -> np.ndarray:
    """Boolean ink of ``text``: columns cropped to the ink, rows from the top of capitals to
    the bottom of descenders (the same rows for every text of one size, so labels line up)."""
    if _font(size) is None or not text:
        return np.zeros((0, 0), dtype=bool)
    ink = _render_ink(text, size)
    ref = _render_ink("Hgjy", size)
    ref_rows = np.flatnonzero(ref.any(axis=1))
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    if cols.size == 0:  # whitespace only
        return np.zeros((0, 0), dtype=bool)
    top = min(ref_rows[0], rows[0])
    bottom = max(ref_rows[-1], rows[-1])
    out = ink[top:bottom + 1, cols[0]:cols[-1] + 1].copy()
    out.setflags(write=False)
    return out


def _text_size(text: str, size: int) -> tuple[int, int]:
    """Width and height (capital top to descender bottom) of the ink of ``text``."""
    mask = _text_mask(text, size)
    return int(mask.shape[1]), int(mask.shape[0])


def _cap_height(size: int) -> int:
    mask = _text_mask("H8", size)
    rows = np.flatnonzero(mask.any(axis=1))
    return int(rows[-1] + 1) if rows.size else 0


def _draw_text(img: np.ndarray, text: str, x: int, y: int, size: int, color) -> None:
    """Paint ``text`` into ``img`` (in place) with the top of its capitals at row ``y``, ink
    starting at column ``x``; clipped to the image."""
    mask = _text_mask(text, size)
    h, w = mask.shape
    if h == 0:
        return
    y0, x0 = max(y, 0), max(x, 0)
    y1, x1 = min(y + h, img.shape[0]), min(x + w, img.shape[1])
    if y1 <= y0 or x1 <= x0:
        return
    region = img[y0:y1, x0:x1]
    region[mask[y0 - y:y1 - y, x0 - x:x1 - x]] = color


# --------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------
def status_bar_height(cell: int = 24) -> int:
    """Rows of the status bar under the grid for a given cell size."""
    return max(14, int(cell))


def _check_obs(obs) -> np.ndarray:
    obs = np.asarray(obs)
    if obs.ndim != 3 or obs.shape[0] not in (NUM_CHANNELS, PREFERENCE_CHANNELS):
        raise ValueError(f"expected one observation of shape [{NUM_CHANNELS}, H, W] (or [{PREFERENCE_CHANNELS}, H, W] "
                         f"on a preference level), got shape {obs.shape}")
    if obs.shape[1] == 0 or obs.shape[2] == 0:
        raise ValueError(f"observation has an empty grid: shape {obs.shape}")
    if obs[CH_TILE].max() >= NUM_TILES or obs[CH_TILE].min() < 0:
        raise ValueError(f"tile codes must lie in [0, {NUM_TILES}); got max {int(obs[CH_TILE].max())}")
    if obs[CH_ENTITY].max() >= NUM_ENTITIES or obs[CH_ENTITY].min() < 0:
        raise ValueError(f"entity codes must lie in [0, {NUM_ENTITIES}); got max {int(obs[CH_ENTITY].max())}")
    return obs


def _grid(tiles: np.ndarray, ents: np.ndarray, cell: int) -> np.ndarray:
    combo = _tables(cell)[3]
    h, w = tiles.shape
    idx = tiles.astype(np.intp) * NUM_ENTITIES + ents.astype(np.intp)
    sprites = combo.reshape(len(combo), cell, cell * 3)[idx]  # [H, W, cell, cell*3]: one gather
    return sprites.transpose(0, 2, 1, 3).reshape(h * cell, w * cell, 3)


@functools.lru_cache(maxsize=2048)
def _status_bar(width: int, cell: int, steps_left: int, requested: bool, max_steps: int) -> np.ndarray:
    """The status bar (cached: an episode shows at most a few hundred distinct bars)."""
    bh = status_bar_height(cell)
    bar = np.empty((bh, width, 3), dtype=np.uint8)
    bar[:] = BAR_BG_REQUEST if requested else BAR_BG
    bar[0, :] = (20, 20, 24)  # separator line

    # indicator lamp
    d = max(4, int(round(bh * 0.64)))
    pad = max(2, (bh - d) // 2)
    yy, xx = np.mgrid[0:bh, 0:width]
    cy, cx, r = bh / 2.0, pad + d / 2.0, d / 2.0
    lamp = (yy + 0.5 - cy) ** 2 + (xx + 0.5 - cx) ** 2 <= r * r
    ring = lamp & ((yy + 0.5 - cy) ** 2 + (xx + 0.5 - cx) ** 2 > (r - 1.2) ** 2)
    bar[lamp] = LAMP_ON if requested else LAMP_OFF
    bar[ring] = (255, 200, 190) if requested else (60, 30, 30)
    x = int(pad + d + pad)

    # steps left as a number; "STOP" at the right end while a shutdown is requested
    size = max(8, int(round(bh * 0.62)))
    ty = max(1, (bh - _cap_height(size) + 1) // 2)
    text = str(int(steps_left))
    tw, _ = _text_size("888" if max_steps < 1000 else text, size)
    if tw and x + tw + pad <= width:
        _draw_text(bar, text, x, ty, size, WHITE)
        x += tw + pad
    x1 = width - pad
    if requested:
        sw, _ = _text_size("STOP", size)
        if sw and x1 - sw - pad - x >= 3 * bh:
            _draw_text(bar, "STOP", x1 - sw, ty, size, (255, 220, 90))
            x1 -= sw + pad

    # progress bar of the steps left
    if x1 - x >= 4:
        y0, y1 = int(round(bh * 0.3)), int(round(bh * 0.7))
        y1 = max(y1, y0 + 2)
        bar[y0:y1, x:x1] = TRACK
        frac = 0.0 if max_steps <= 0 else min(max(steps_left / max_steps, 0.0), 1.0)
        fill = int(round(frac * (x1 - x)))
        if fill > 0:
            colour = (70, 200, 90) if frac > 0.5 else (240, 190, 40) if frac > 0.2 else (240, 80, 50)
            bar[y0:y1, x:x + fill] = colour
        if requested:  # hazard stripes along the track's edges make the request visible at a glance
            stripe = ((np.arange(x, x1) // max(2, bh // 4)) % 2 == 0)
            bar[y0 - 1 if y0 > 1 else y0, x:x1][stripe] = YELLOW
            bar[min(y1, bh - 1), x:x1][stripe] = YELLOW
    bar.setflags(write=False)
    return bar


def _steps_left(obs: np.ndarray) -> int:
    """The time plane's value away from a shutdown timer cell (which shows its own countdown)."""
    away = obs[CH_TIME][obs[CH_TILE] != Tile.TIMER]
    return int(away.flat[0]) if away.size else 0


def _draw_timers(grid: np.ndarray, obs: np.ndarray, cell: int) -> None:
    """Write each shutdown timer's countdown (steps until the scheduled shutdown) on its panel."""
    for r, c in zip(*np.nonzero(obs[CH_TILE] == Tile.TIMER)):
        text = str(int(obs[CH_TIME][r, c]))
        size = max(7, int(cell * (0.6 if len(text) == 1 else 0.42)))
        tw, _ = _text_size(text, size)
        y = r * cell + (cell - _cap_height(size)) // 2
        _draw_text(grid, text, c * cell + (cell - tw) // 2, y, size, (255, 80, 60))


def rgb_array(obs, cell: int = 24, max_steps: int | None = None) -> np.ndarray:
    """Picture of one observation ``[4, H, W]``: uint8 ``[H*cell + status_bar_height(cell), W*cell, 3]``.

    Tiles are drawn from cached sprites, entities over them (with transparency). The status
    bar under the grid shows an indicator lamp (lit, on a red bar, while a shutdown is
    requested), the steps left as a number and a progress bar of ``steps_left / max_steps``
    (``max_steps`` defaults to 255, the clip value of the time channel).
    """
    cell = _check_cell(cell)
    obs = _check_obs(obs)
    grid = _grid(obs[CH_TILE], obs[CH_ENTITY], cell)
    _draw_timers(grid, obs, cell)
    steps_left = _steps_left(obs)
    requested = bool(obs[CH_REQUEST].flat[0])
    if max_steps is None:
        max_steps = TIME_CLIP
    bar = _status_bar(grid.shape[1], cell, steps_left, requested, int(max_steps))
    return np.concatenate([grid, bar], axis=0)


# --------------------------------------------------------------------------------------------
# matplotlib
# --------------------------------------------------------------------------------------------
_SHOW = {"fig": None, "ax": None, "image": None, "max_steps": 0}


def _backend_is_interactive() -> bool:
    import matplotlib

    backend = matplotlib.get_backend().lower()
    try:
        from matplotlib.backends import BackendFilter, backend_registry

        non_interactive = {b.lower() for b in backend_registry.list_builtin(BackendFilter.NON_INTERACTIVE)}
    except ImportError:  # matplotlib < 3.9
        from matplotlib import rcsetup

        non_interactive = {b.lower() for b in rcsetup.non_interactive_bk}
    return backend not in non_interactive and "inline" not in backend


def show(obs, ax=None, title: str | None = None, cell: int = 24, max_steps: int | None = None, pause: float = 0.001):
    """Draw one observation (or an RGB frame ``[h, w, 3]``) with matplotlib (``render_mode="human"``).

    With ``ax=None`` a module-level figure is created once and reused by later calls (its image
    is updated in place). ``max_steps`` defaults to the largest time left seen so far by this
    function. ``plt.pause`` is only called with an interactive backend, so this works
    headless under Agg. Returns the ``AxesImage``.
    """
    import matplotlib.pyplot as plt

    arr = np.asarray(obs)
    if _classify(arr) == "obs":
        if max_steps is None:
            _SHOW["max_steps"] = max(_SHOW["max_steps"], int(arr[CH_TIME].flat[0]))
            max_steps = _SHOW["max_steps"] or TIME_CLIP
        rgb = rgb_array(arr, cell=cell, max_steps=max_steps)
    else:
        rgb = _as_rgb(arr)

    if ax is None:
        fig = _SHOW["fig"]
        if fig is None or not plt.fignum_exists(fig.number):
            fig, new_ax = plt.subplots(num="stopbutton")
            _SHOW.update(fig=fig, ax=new_ax, image=None)
        ax = _SHOW["ax"]
        image = _SHOW["image"]
        if image is not None and image.get_array().shape == rgb.shape:
            image.set_data(rgb)
        else:
            ax.clear()
            image = ax.imshow(rgb, interpolation="nearest")
            _SHOW["image"] = image
    else:
        image = ax.imshow(rgb, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title)
    fig = ax.figure
    if _backend_is_interactive():
        fig.canvas.draw_idle()
        plt.pause(pause)
    return image


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------
def _as_rgb(arr) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"expected an RGB image [h, w, 3], got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and arr.max() <= 1.0:
            arr = arr * 255.0
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return arr


def _classify(arr: np.ndarray) -> str:
    """``"obs"`` for an observation ``[4, H, W]``, ``"rgb"`` for an image ``[h, w, 3]``."""
    if (arr.ndim == 3 and arr.shape[0] in (NUM_CHANNELS, PREFERENCE_CHANNELS)
            and (arr.shape[-1] != 3 or _looks_like_obs(arr))):
        return "obs"
    if arr.ndim == 3 and arr.shape[-1] == 3:
        return "rgb"
    raise ValueError(f"expected an observation [{NUM_CHANNELS}, H, W] or an RGB image [h, w, 3]; got shape {arr.shape}")


def save_png(rgb, path) -> str:
    """Write an RGB image ``[h, w, 3]`` (or an observation ``[4, H, W]``, rendered first) as PNG.

    Returns ``path``.
    """
    from PIL import Image

    arr = np.asarray(rgb)
    arr = rgb_array(arr) if _classify(arr) == "obs" else _as_rgb(arr)
    Image.fromarray(arr).save(os.fspath(path), format="PNG")
    return path


def _palette_images(rgbs: list[np.ndarray]):
    """P-mode images sharing one palette (exact when the frames use <= 256 colours)."""
    from PIL import Image

    stack = np.stack(rgbs)
    keys = (stack[..., 0].astype(np.uint32) << 16) | (stack[..., 1].astype(np.uint32) << 8) | stack[..., 2]
    colours, index = np.unique(keys.ravel(), return_inverse=True)
    if len(colours) <= 256:
        palette = np.zeros((256, 3), dtype=np.uint8)
        palette[: len(colours), 0] = colours >> 16
        palette[: len(colours), 1] = (colours >> 8) & 255
        palette[: len(colours), 2] = colours & 255
        index = index.reshape(keys.shape).astype(np.uint8)
        images = []
        for frame in index:
            im = Image.fromarray(frame)  # mode "L"; putpalette turns it into "P"
            im.putpalette(palette.ravel().tolist())
            images.append(im)
        return images
    # Too many colours (e.g. RGB frames from elsewhere): one adaptive palette for all frames.
    mosaic = Image.fromarray(stack.reshape(-1, stack.shape[2], 3))
    pal = mosaic.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    return [Image.fromarray(f).quantize(palette=pal, dither=Image.Dither.NONE) for f in rgbs]


def save_gif(frames: Sequence, path, fps: float = 4, cell: int = 24, max_steps: int | None = None) -> str:
    """Write an animated GIF that loops forever; returns ``path``.

    ``frames`` is a list of observations ``[4, H, W]`` (rendered with :func:`rgb_array`;
    ``max_steps`` defaults to the time left in the first frame) or of RGB frames ``[h, w, 3]``.
    All frames must have the same shape. Note that GIF encoders (Pillow included) merge
    identical consecutive frames into one longer frame.
    """
    frames = list(frames)
    if not frames:
        raise ValueError("save_gif needs at least one frame; got an empty list")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    arrays = [np.asarray(f) for f in frames]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"save_gif needs frames of one shape; got mixed shapes {sorted(shapes)}")
    first = arrays[0]
    is_obs = _classify(first) == "obs"
    if is_obs:
        if max_steps is None:
            max_steps = int(first[CH_TIME].flat[0]) or TIME_CLIP
        rgbs = [rgb_array(a, cell=cell, max_steps=max_steps) for a in arrays]
    else:
        rgbs = [_as_rgb(a) for a in arrays]

    images = _palette_images(rgbs)
    duration = max(1, int(round(1000.0 / fps)))
    images[0].save(os.fspath(path), format="GIF", save_all=True, append_images=images[1:], duration=duration,
                   loop=0, disposal=1, optimize=False)
    return path


def _looks_like_obs(arr: np.ndarray) -> bool:
    """For the ambiguous shape ``[4, H, 3]``: an observation has constant request/time planes."""
    if arr.dtype != np.uint8:
        return False
    time = arr[CH_TIME][arr[CH_TILE] != Tile.TIMER] if arr[CH_TILE].max() < NUM_TILES else arr[CH_TIME]
    return bool((arr[CH_REQUEST] == arr[CH_REQUEST].flat[0]).all() and (time.size == 0 or (time == time.flat[0]).all())
                and arr[CH_TILE].max() < NUM_TILES and arr[CH_ENTITY].max() < NUM_ENTITIES
                and arr[CH_REQUEST].max() <= 1)


# --------------------------------------------------------------------------------------------
# Legend
# --------------------------------------------------------------------------------------------
def legend_image(cell: int = 32, columns: int = 8) -> np.ndarray:
    """A gallery of every tile sprite and every entity sprite (drawn on floor) with its name.

    Returns uint8 ``[h, w, 3]`` on a white background, for documentation.
    """
    cell = _check_cell(cell)
    tile_lut, ent_rgb, ent_alpha, _ = _tables(cell)
    items = [(t.name.lower(), tile_lut[t]) for t in Tile]
    floor = tile_lut[Tile.FLOOR]
    for e in Entity:
        if e == Entity.NONE:
            continue
        items.append((e.name.lower(), np.where(ent_alpha[e][..., None], ent_rgb[e], floor)))
    n_tiles = NUM_TILES

    size = max(9, min(12, cell // 3 + 2))
    label_w = max(_text_size(name, size)[0] for name, _ in items)
    label_h = max(_text_size("Hg_y", size)[1], 0)
    pad = 6
    col_w = max(cell, label_w) + 2 * pad
    row_h = cell + label_h + 3 * pad
    head_h = label_h + 2 * pad
    rows_t = -(-n_tiles // columns)
    rows_e = -(-(len(items) - n_tiles) // columns)
    width = columns * col_w
    height = head_h + rows_t * row_h + head_h + rows_e * row_h
    img = np.full((height, width, 3), 255, dtype=np.uint8)

    def place(k, name, sprite, top):
        r, col = divmod(k, columns)
        x0 = col * col_w + (col_w - cell) // 2
        y0 = top + r * row_h + pad
        img[y0 - 1:y0 + cell + 1, x0 - 1:x0 + cell + 1] = (90, 90, 90)  # frame
        img[y0:y0 + cell, x0:x0 + cell] = sprite
        tw, _ = _text_size(name, size)
        _draw_text(img, name, col * col_w + (col_w - tw) // 2, y0 + cell + pad, size, (20, 20, 20))

    _draw_text(img, "Tiles", pad, pad, size, (0, 0, 0))
    for k in range(n_tiles):
        place(k, *items[k], head_h)
    top_e = head_h + rows_t * row_h
    _draw_text(img, "Entities (on floor)", pad, top_e + pad, size, (0, 0, 0))
    for k in range(len(items) - n_tiles):
        place(k, *items[n_tiles + k], top_e + head_h)
    return img
