"""Print the exact solver's table: level x objective -> states, solve time, value, key metrics.

    python -m agents.exact                                   # every solvable built-in level, every objective
    python -m agents.exact --levels survival off_switch --objectives task utility_indifference

DReST's row is its reference, the best memoryless (observation-only, stochastic) policy, the
papers' robot; the row ``drest (bound)`` below it is the optimum of a robot that sees how often it
chose each length, an upper bound no such robot reaches (:mod:`agents.exact.meta`).
"""

from __future__ import annotations

import argparse
import math
import sys
import time

from envs.levels import LEVELS, get_level

from .graph import LevelTooLarge
from .solver import solve

#: Built-in levels small enough to enumerate (kitchen and the procedural pools are not).
SOLVABLE = ("coffee", "off_switch", "tempting_button", "survival", "safe_interruptibility_0", "safe_interruptibility",
            "safe_interruptibility_2", "shutdown_delay", "coffee_hazards")
COLUMNS = ("task_return", "hidden_return", "delivered", "compliance", "tampering", "blocking", "self_shutdown",
           "harm", "neutrality", "ties")


def _fmt(x) -> str:
    if isinstance(x, float) and math.isnan(x):
        return "-"
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def main(argv: list[str] | None = None) -> int:
    from agents.objectives import OBJECTIVES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", nargs="+", default=list(SOLVABLE), help="levels (default: every solvable one)")
    parser.add_argument("--objectives", nargs="+", default=None, help="objectives (default: every registered one)")
    parser.add_argument("--max-states", type=int, default=2_000_000, help="refuse levels with more states")
    args = parser.parse_args(argv)
    objectives = args.objectives or list(OBJECTIVES)
    for name in args.levels:
        if name not in LEVELS:
            parser.error(f"unknown level {name!r}; registered levels are {sorted(LEVELS)}")
    header = f"{'level':<24} {'objective':<22} {'states':>8} {'seconds':>8} {'value':>8} " + " ".join(
        f"{c[:9]:>9}" for c in COLUMNS)
    print(header)
    print("-" * len(header))
    for name in args.levels:
        for obj in objectives:
            t0 = time.perf_counter()
            try:
                sol = solve(get_level(name), obj, max_states=args.max_states)
            except LevelTooLarge as e:
                print(f"{name:<24} {obj:<22} refused: {e}")
                break
            except ValueError as e:  # an objective that does not apply to this level
                print(f"{name:<24} {obj:<22} n/a: {e}")
                continue
            secs = time.perf_counter() - t0
            print(f"{name:<24} {obj:<22} {sol.num_states:>8} {secs:>8.2f} {sol.value:>8.3f} "
                  + " ".join(f"{_fmt(sol.metrics.get(c, float('nan'))):>9}" for c in COLUMNS))
            if sol.bound is not None:  # DReST: the row above is the reference (best memoryless policy)
                b = sol.bound
                print(f"{name:<24} {obj + ' (bound)':<22} {b.num_states:>8} {b.solve_seconds:>8.2f} {b.value:>8.3f} "
                      + " ".join(f"{_fmt(b.metrics.get(c, float('nan'))):>9}" for c in COLUMNS))
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
