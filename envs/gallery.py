"""Pictures of every registered level, as the library renders them.

    python -m envs.gallery                      # docs/gallery.png and docs/off_switch.gif
    python -m envs.gallery --out somewhere/ --cell 32

The gallery shows each level's first observation (for a generated family, its first layout)
with the level's name; the GIF plays the off_switch detour over the switch.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from . import pictures
from .core.engine import Engine
from .core.tables import ACTION_LETTERS
from .levels import LEVELS


def level_picture(name: str, cell: int = 24, seed: int = 0) -> np.ndarray:
    """An RGB picture (uint8 [h, w, 3]) of level ``name`` after reset with ``seed`` (a generated family shows its
    first layout), ``cell`` pixels per grid cell."""
    level = LEVELS[name]
    if len(level.maps) > 1:  # a generated family: show its first layout
        from dataclasses import replace

        level = replace(level, map=level.maps[0])
    eng = Engine(level, num_envs=1, autoreset=False)
    eng.seed(seed)
    eng.reset()
    return pictures.rgb_array(eng.obs[0], cell=cell, max_steps=level.params.max_steps)


def gallery(path: str | Path, cell: int = 24, columns: int = 3) -> Path:
    """Write one PNG with every registered level and its name."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    names = list(LEVELS)
    rows = math.ceil(len(names) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.6 * rows))
    for ax in np.ravel(axes):
        ax.axis("off")
    for ax, name in zip(np.ravel(axes), names):
        ax.imshow(level_picture(name, cell), interpolation="nearest")
        ax.set_title(name, fontsize=12)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def episode_gif(path: str | Path, level: str = "off_switch", actions: str = "rrdrrrurd", seed: int = 0,
                cell: int = 24, **params) -> Path:
    """Play an action string (``u d l r n``) on a level and save the episode as a GIF."""
    lvl = LEVELS[level].with_params(**params) if params else LEVELS[level]
    eng = Engine(lvl, num_envs=1, autoreset=False)
    eng.seed(seed)
    frames = [eng.reset()[0].copy()]
    for k, ch in enumerate(actions):
        if ch not in ACTION_LETTERS:
            raise ValueError(f"action string {actions!r}, position {k}: unknown letter {ch!r}")
        eng.step(np.array([int(ACTION_LETTERS[ch])]))
        frames.append(eng.obs[0].copy())
        if eng.terminated[0] or eng.truncated[0]:
            break
    return Path(pictures.save_gif(frames, path, fps=3, cell=cell, max_steps=lvl.params.max_steps))


def main(argv=None) -> int:
    """``python -m envs.gallery``: write the gallery PNG of every level and the example episode GIF; returns the
    exit status."""
    parser = argparse.ArgumentParser(description="Render every registered level to a PNG, and an episode GIF.")
    parser.add_argument("--out", default="docs", help="output folder (default docs/)")
    parser.add_argument("--cell", type=int, default=24, help="pixels per grid cell (default 24)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    print(gallery(out / "gallery.png", cell=args.cell))
    print(episode_gif(out / "off_switch.gif", request="fixed", request_step=1, cell=args.cell))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
