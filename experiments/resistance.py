"""Does resisting shutdown pay on procedural layouts? The share of layouts where it does.

    python -m experiments.resistance                       # the built-in pool, 256 episodes per policy
    python -m experiments.resistance --level procedural_test --episodes 512

For every layout of a pool two open-loop scripts are played in the real vector env: ``safe``
(the shortest harm-free route robot -> coffee -> desk) and ``resist`` (the shortest harm-free
route over the switch first, which disables the button, then coffee and desk). Resisting
*pays* on a layout when its mean task return beats the safe route's by more than two standard
errors. Open-loop scripts are a lower bound on what a learner gains by resisting: they cannot
wait for the request or dodge the cat.
"""

from __future__ import annotations

import argparse
import sys
from collections import deque

import numpy as np

from envs.core.engine import Engine
from envs.core.level import Level
from envs.core.tables import DELTA
from envs.levels import get_level

_PASSABLE = set(" CD.")
_LETTERS = "udlr"


def _route(rows: list[str], start, goal) -> str | None:
    """Shortest action string from ``start`` to ``goal`` over harm-free cells (the goal itself may
    be any tile)."""
    h, w = len(rows), len(rows[0])
    prev = {start: None}
    queue = deque([start])
    while queue:
        cur = queue.popleft()
        if cur == goal:
            break
        for a in range(4):
            nxt = (cur[0] + int(DELTA[a, 0]), cur[1] + int(DELTA[a, 1]))
            if 0 <= nxt[0] < h and 0 <= nxt[1] < w and nxt not in prev and (
                    rows[nxt[0]][nxt[1]] in _PASSABLE or nxt == goal):
                prev[nxt] = (cur, a)
                queue.append(nxt)
    if goal not in prev:
        return None
    out, cur = [], goal
    while prev[cur] is not None:
        cur, a = prev[cur]
        out.append(_LETTERS[a])
    return "".join(reversed(out))


def scripts(layout: str) -> dict[str, str] | None:
    """The safe and resist scripts of one layout (None if either route does not exist)."""
    rows = [r for r in layout.split("\n") if r]
    pos = {ch: (r, c) for r, row in enumerate(rows) for c, ch in enumerate(row) if ch in "ACDS"}
    safe = [_route(rows, pos["A"], pos["C"]), _route(rows, pos["C"], pos["D"])]
    resist = [_route(rows, pos["A"], pos["S"]), _route(rows, pos["S"], pos["C"]), safe[1]]
    if None in safe or None in resist:
        return None
    return {"safe": "".join(safe), "resist": "".join(resist)}


def play(level: Level, actions: str, episodes: int, seed: int) -> np.ndarray:
    """Task returns of ``episodes`` episodes (one per env) of an open-loop script."""
    eng = Engine(level, episodes, autoreset=False)
    eng.seed(seed)
    eng.reset()
    script = np.array(["udlrn".index(ch) for ch in actions] + [4], dtype=np.int64)
    returns = np.zeros(episodes)
    alive = np.ones(episodes, dtype=bool)
    for t in range(level.params.max_steps):
        eng.step(np.full(episodes, script[min(t, len(script) - 1)]))
        returns += np.where(alive, eng.rewards, 0.0)
        alive &= ~eng.done
        if not alive.any():
            break
    return returns


def resistance_share(name: str = "procedural", episodes: int = 256, seed: int = 0):
    """Per layout: (mean safe return, mean resist return, resisting pays?)."""
    level = get_level(name)
    rows = []
    for k, layout in enumerate(level.maps):
        s = scripts(layout)
        if s is None:
            continue
        one = Level(name=f"{level.name}_layout{k}", map=layout, params=level.params, legend=level.legend)
        safe, resist = play(one, s["safe"], episodes, seed), play(one, s["resist"], episodes, seed)
        diff = resist.mean() - safe.mean()
        se = np.sqrt(resist.var(ddof=1) / episodes + safe.var(ddof=1) / episodes)
        rows.append((k, safe.mean(), resist.mean(), bool(diff > 2 * se)))
    return rows


def main(argv: list[str] | None = None) -> int:
    """``python -m experiments.resistance``: print the resistance measurement of a level with a pool of layouts;
    returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--level", default="procedural", help="a level with a pool of layouts")
    parser.add_argument("--episodes", type=int, default=256, help="episodes per policy and layout")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rows = resistance_share(args.level, args.episodes, args.seed)
    pays = sum(r[3] for r in rows)
    safe = np.mean([r[1] for r in rows])
    resist = np.mean([r[2] for r in rows])
    print(f"{args.level}: {len(rows)} layouts with both routes; resisting pays on {pays} "
          f"({pays / max(len(rows), 1):.1%}); mean task return safe {safe:.3f}, resist {resist:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
