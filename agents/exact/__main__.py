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
from .solver import solve_many

#: Built-in levels small enough to enumerate (kitchen and the procedural pools are not).
SOLVABLE = ("coffee", "off_switch", "tempting_button", "survival", "safe_interruptibility_0", "safe_interruptibility",
            "safe_interruptibility_2", "shutdown_delay", "coffee_hazards")
COLUMNS = ("task_return", "hidden_return", "delivered", "compliance", "tampering", "blocking", "self_shutdown",
           "harm", "neutrality", "ties")


#: Objectives beside the registered ones at their defaults: the other baselines of AUP and of
#: relative reachability (label -> name and parameters).
VARIANTS = {
    "aup (stepwise)": ("aup", {"baseline": "stepwise"}),
    "rr (start)": ("relative_reachability", {"baseline": "start"}),
    "rr (inaction)": ("relative_reachability", {"baseline": "inaction"}),
    "rr (step_noroll)": ("relative_reachability", {"baseline": "step_noroll"}),
}


def _objective(label: str):
    """The objective of a table row's label (a registered name or a :data:`VARIANTS` label)."""
    from agents.objectives import get_objective

    name, params = VARIANTS.get(label, (label, {}))
    return get_objective(name, **params)


def _fmt(x) -> str:
    if isinstance(x, float) and math.isnan(x):
        return "-"
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def main(argv: list[str] | None = None) -> int:
    from agents.objectives import OBJECTIVES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", nargs="+", default=list(SOLVABLE), help="levels (default: every solvable one)")
    parser.add_argument("--objectives", nargs="+", default=None,
                        help="objectives, registered names or the variants " + ", ".join(repr(v) for v in VARIANTS)
                        + " (default: every registered one and every variant)")
    parser.add_argument("--max-states", type=int, default=2_000_000, help="refuse levels with more states")
    parser.add_argument("--markdown", action="store_true",
                        help="print a Markdown table without timings (docs/exact_table.md is this output)")
    args = parser.parse_args(argv)
    objectives = args.objectives or [*OBJECTIVES, *VARIANTS]
    unknown = [o for o in objectives if o not in OBJECTIVES and o not in VARIANTS]
    if unknown:
        parser.error(f"unknown objective {unknown[0]!r}; objectives are {sorted(OBJECTIVES)} and {list(VARIANTS)}")
    t_all = time.perf_counter()
    for name in args.levels:
        if name not in LEVELS:
            parser.error(f"unknown level {name!r}; registered levels are {sorted(LEVELS)}")
    if args.markdown:
        print("| level | objective | states | value | " + " | ".join(COLUMNS) + " |")
        print("|---|---|---:|---:|" + "---:|" * len(COLUMNS))
    else:
        header = f"{'level':<24} {'objective':<22} {'states':>8} {'seconds':>8} {'value':>8} " + " ".join(
            f"{c[:9]:>9}" for c in COLUMNS)
        print(header)
        print("-" * len(header))

    def row(level_name, label, sol) -> str:
        cells = [_fmt(sol.metrics.get(c, float("nan"))) for c in COLUMNS]
        if args.markdown:
            return f"| {level_name} | {label} | {sol.num_states} | {sol.value:.3f} | " + " | ".join(cells) + " |"
        return (f"{level_name:<24} {label:<22} {sol.num_states:>8} {sol.solve_seconds:>8.2f} {sol.value:>8.3f} "
                + " ".join(f"{c:>9}" for c in cells))

    for name in args.levels:
        t0 = time.perf_counter()
        try:
            sols = solve_many(get_level(name), [_objective(o) for o in objectives],
                              max_states=args.max_states)
        except LevelTooLarge as e:
            print(f"| {name} | refused: {e} |" if args.markdown else f"{name:<24} refused: {e}")
            continue
        own = sum(getattr(s, "solve_seconds", 0.0) for s in sols)
        if not args.markdown:
            print(f"{name:<24} {'(graph, shared pass)':<22} {'':>8} {time.perf_counter() - t0 - own:>8.2f}")
        for obj, sol in zip(objectives, sols):
            if isinstance(sol, Exception):  # an objective that does not apply to this level
                if not args.markdown:
                    print(f"{name:<24} {obj:<22} n/a: {sol}")
                continue
            print(row(name, obj, sol))
            if sol.bound is not None:  # DReST: the row above is the reference (best memoryless policy)
                print(row(name, obj + " (bound)", sol.bound))
        sys.stdout.flush()
    if args.markdown:
        return 0
    print(f"total {time.perf_counter() - t_all:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
