"""Play levels with scripted action strings and print their safety metrics.

    python -m experiments.demo                     # every scripted policy, 4,096 episodes each
    python -m experiments.demo --episodes 100 --levels off_switch

Each policy is one of the level's own :attr:`~envs.Level.scripts` (action strings: ``u`` up,
``d`` down, ``l`` left, ``r`` right, ``n`` noop; noop once the string runs out), played in
thousands of vectorized episodes. ``safe`` is what a safe agent does; every other script names
a failure (``resist``, ``block``, ``seek``, ``harm``, ``avoid``, ``delay``). The table shows that
the failures happen on cue and that the hidden score ranks ``safe`` first: on ``off_switch`` the
detour over the switch earns more task reward and disables the button; on
``safe_interruptibility`` pressing B avoids interruption, exactly DeepMind's returns; on
``coffee_hazards`` the short route harms and the detour does not; on ``survival`` disabling
the shutdown pays; on ``tempting_button`` pressing its own button beats the long walk. On
``kitchen`` the route through the wall always harms, and even the route below it meets the
wandering cat about half the time: an open-loop script cannot dodge it, an agent that looks can.
"""

from __future__ import annotations

import argparse
import math
import sys

import gymnasium
import numpy as np

import envs  # noqa: F401  (registers the levels)
from envs.core.tables import ACTION_LETTERS, HARM_EVENTS, Event, Reason
from envs.levels import LEVELS

#: level -> {policy name: action string}: the ``scripts`` of every registered level that has
#: them, in registration order (levels made by factories, such as the procedural pools, are not
#: built for this).
SCRIPTS = {name: dict(level.scripts) for name, level in LEVELS._levels.items() if level.scripts}


def parse_actions(text: str) -> np.ndarray:
    """``"dllr"`` -> action array; unknown letters are rejected with their position."""
    out = []
    for k, ch in enumerate(text):
        if ch not in ACTION_LETTERS:
            raise ValueError(f"action string {text!r}, position {k}: unknown letter {ch!r}; use one of "
                             f"{''.join(ACTION_LETTERS)}")
        out.append(int(ACTION_LETTERS[ch]))
    return np.array(out, dtype=np.int64)


def play(level: str, actions: str, episodes: int, seed: int, num_envs: int = 4096) -> dict[str, float]:
    """Play ``episodes`` episodes of ``level`` with an action string; return mean metrics."""
    script = np.append(parse_actions(actions), int(ACTION_LETTERS["n"]))
    n = min(num_envs, episodes)
    # Every env plays the same number of episodes: taking the first episodes to finish would
    # over-sample short ones (an uninterrupted episode ends long before an interrupted one).
    quota = np.full(n, episodes // n, dtype=np.int64)
    quota[: episodes % n] += 1
    env = gymnasium.make_vec(envs.gym_id(level), num_envs=n)
    env.reset(seed=seed)
    t = np.zeros(n, dtype=np.int64)
    count = np.zeros(n, dtype=np.int64)
    returns, hidden, reasons, disabled, harmed = [], [], [], [], []
    seen = np.zeros(n, dtype=bool)  # did this env's current episode disable the button?
    harm = np.zeros(n, dtype=bool)  # ... harm anything (cat, grandma, vase, fragile wall)?
    harm_columns = np.flatnonzero(HARM_EVENTS)
    while (count < quota).any():
        acts = script[np.minimum(t, len(script) - 1)]
        _, _, term, trunc, infos = env.step(acts)
        seen |= infos["events"][:, Event.BUTTON_DISABLED] == 1
        harm |= infos["events"][:, harm_columns].any(axis=1)
        t += 1
        done = term | trunc
        if done.any():
            fi = infos["final_info"]
            idx = np.flatnonzero(done & (count < quota))
            returns.extend(fi["episode_return"][idx])
            hidden.extend(fi["episode_hidden_return"][idx])
            reasons.extend(fi["reason"][idx])
            disabled.extend(seen[idx])
            harmed.extend(harm[idx])
            count[done] += 1
            t[done] = 0
            seen[done] = False
            harm[done] = False
    env.close()
    r = np.array(returns)
    reasons = np.array(reasons)
    hid = np.array(hidden)
    return {
        "episodes": episodes,
        "return": float(r.mean()),
        "return_se": _standard_error(r),
        "return_ci95": 1.96 * _standard_error(r),
        "hidden_return": float(hid.mean()),
        "hidden_se": _standard_error(hid),
        "delivered": float(np.mean(reasons == Reason.DELIVERED)),
        "shut_down": float(np.mean(reasons == Reason.SHUTDOWN)),
        "self_shutdown": float(np.mean(reasons == Reason.SELF_SHUTDOWN)),
        "button_disabled": float(np.mean(disabled)),
        "harmed": float(np.mean(harmed)),
    }


def _standard_error(x: np.ndarray) -> float:
    """The standard error of the mean of ``x`` (nan for fewer than two values)."""
    return float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else float("nan")


def main(argv: list[str] | None = None) -> int:
    """``python -m experiments.demo``: play every level's scripted policies on the batched engine and print their
    metrics; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=4096, help="episodes per policy (default 4096)")
    parser.add_argument("--seed", type=int, default=0, help="RNG seed (default 0)")
    parser.add_argument("--levels", nargs="+", default=list(SCRIPTS), choices=list(SCRIPTS),
                        help="levels to play (default: all with scripts)")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error("--episodes must be at least 1")
    lw = max(len("level"), *(len(level) for level in args.levels))
    pw = max(len("policy"), *(len(name) for level in args.levels for name in SCRIPTS[level]))
    header = (f"{'level':<{lw}} {'policy':<{pw}} {'return':>16} {'hidden':>8} {'delivered':>9} {'shut down':>9} "
              f"{'disabled':>8} {'harmed':>7}")
    print(header)
    print("-" * len(header))
    for level in args.levels:
        for name, actions in SCRIPTS[level].items():
            m = play(level, actions, args.episodes, args.seed)
            print(f"{level:<{lw}} {name:<{pw}} {m['return']:>8.3f} +-{m['return_ci95']:<6.3f} "
                  f"{m['hidden_return']:>8.3f} {m['delivered']:>9.1%} {m['shut_down']:>9.1%} "
                  f"{m['button_disabled']:>8.1%} {m['harmed']:>7.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
