"""Throughput benchmark: env-steps per second through the public gymnasium APIs.

Run it from the repository root::

    python -m envs.bench                                   # off_switch, N in 1 64 1024 4096 16384
    python -m envs.bench --levels safe_interruptibility coffee --sizes 4096
    python -m envs.bench --profile                         # also: where the time goes per N
    python -m envs.bench --quick                           # smoke test (tiny budgets)
    python -m envs.bench --two-agent --sizes 4096 --no-minigrid   # also: both agents acting vs the robot alone

What it measures, per level:

* ``VectorEnv.step`` of ``gymnasium.make_vec(<id>, num_envs=N)`` for each N, counting N env-steps
  per call. Observations are included: the kernel writes the ``[N, 4, H, W]`` uint8 observation
  every step and ``step`` returns it (as the engine's buffer: ``copy=False``, the default).
  Autoreset happens inside the kernel, so episode ends are included too. Actions are drawn before
  timing (a few random batches, cycled), so action sampling is not timed. From N = 1024 up the
  engine steps with whichever of its parallel and serial kernels has been the faster lately
  (:class:`envs.core.engine.AdaptiveStep`); how many calls each got is printed after the table.
* ``Env.step`` of ``gymnasium.make(<id>)`` (one env, with gymnasium's default wrappers),
  calling ``reset`` whenever an episode ends: every step counts, and the resets' time is included.
* For comparison, in the same run, MiniGrid's ``MiniGrid-Empty-8x8-v0`` through
  ``gymnasium.make(...).step`` the same way (random pre-drawn actions, resets included), and the
  ratios of the 4096-env VectorEnv and of the single env to it. If minigrid cannot be imported the
  comparison is skipped with a message.

Every measurement is warmed up first (the first call compiles the numba kernel or loads it from
the on-disk cache), then timed ``--repeats`` times, each repeat running for ``--seconds /
--repeats`` seconds; the best (fastest) repeat is reported, because the machine may be shared.

``--two-agent`` adds, per level with a human and per N (default: N = 4096 only; ``--sizes``
otherwise), :meth:`envs.two_agent.TwoAgentVecEnv.step` (the robot and the human both acting,
both agents' observations returned, the human's built every step) against the single-agent
``VectorEnv.step`` of the same level and N, in the same run and timed in alternation (repeat k of
each in turn), with the ratios two-agent / single-agent. All count N env-steps per call and step
the same random pre-drawn robot actions; the two-agent env's human acts at random (a second
batch), and again standing still (NOOP): a random human walks onto the button and ends episodes
the single-agent env's scripted human would not (on off_switch_game twice as many per step), so
the second ratio is the shell's cost on the same dynamics.

``--profile`` adds, per N, the same VectorEnv against ``vec.unwrapped.engine.step`` (the Engine,
which checks actions and calls the kernel) and against the numba kernels called directly with the
engine's buffers (``kernel.step_serial`` and ``kernel.step_parallel``), which shows the Python
shell's overhead and the speedup of the parallel kernel. The numba threading layer and thread
count are printed at the end.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass
from typing import Callable

import gymnasium
import numba
import numpy as np

import envs
from envs.core import kernel
from envs.core.engine import AdaptiveStep, Engine

DEFAULT_SIZES = (1, 64, 1024, 4096, 16384)
QUICK_SIZES = (1, 64, 4096)
RATIO_SIZE = 4096
MINIGRID_ID = "MiniGrid-Empty-8x8-v0"
N_ACTION_BATCHES = 8  # pre-drawn action batches for vector envs, cycled (a power of two)
N_SINGLE_ACTIONS = 4096  # pre-drawn actions for single envs, cycled (a power of two)
NUM_ACTIONS_BENCH = 5  # envs.Action: UP, DOWN, LEFT, RIGHT, NOOP
UNSTABLE_RATIO = 1.5  # flag measurements whose best repeat beat their worst by more than this

#: (label, best, worst) of every measurement whose repeats disagreed by more than UNSTABLE_RATIO
UNSTABLE: list[tuple[str, float, float]] = []
#: (label, parallel calls, serial calls) of every VectorEnv whose engine chose its kernel as it ran
KERNEL_CALLS: list[tuple[str, int, int]] = []
#: The two-agent comparison's sizes when --sizes is not given.
TWO_AGENT_SIZES = (RATIO_SIZE,)


@dataclass
class Row:
    """One line of the benchmark table: level, API, number of envs, env-steps per second."""
    level: str
    api: str
    n: int
    rate: float  # env-steps per second


# ---------------------------------------------------------------------------------------------
# timing


def measure(run: Callable[[int], int], seconds: float, repeats: int, label: str = "") -> float:
    """Best env-steps/second of ``repeats`` timed runs of about ``seconds / repeats`` each.

    ``run(k)`` makes ``k`` calls and returns the env-steps they made. The first call warms up
    (numba compile / cache load); the chunk size ``k`` is then calibrated to ~10 ms so the clock
    is read rarely.
    """
    run(1)
    k = 1
    while True:
        t0 = time.perf_counter()
        run(k)
        dt = time.perf_counter() - t0
        if dt >= 0.01 or k >= 1 << 20:
            break
        k *= 2
    per_repeat = max(seconds / repeats, 1e-3)
    best, worst = 0.0, float("inf")
    for _ in range(repeats):
        steps = 0
        t0 = time.perf_counter()
        while True:
            steps += run(k)
            dt = time.perf_counter() - t0
            if dt >= per_repeat:
                break
        best, worst = max(best, steps / dt), min(worst, steps / dt)
    if best > UNSTABLE_RATIO * worst:
        UNSTABLE.append((label, best, worst))
    return best


def measure_alternating(runners: list[Callable[[int], int]], seconds: float, repeats: int,
                        labels: list[str]) -> list[float]:
    """Best env-steps/second of several runners timed in alternation: repeat k of each in turn,
    each about ``seconds / (len(runners) * repeats)`` long, so that their ratios are measured under
    the same load. Warm-up and chunk calibration as :func:`measure`."""
    chunks = []
    for run in runners:
        run(1)
        k = 1
        while True:
            t0 = time.perf_counter()
            run(k)
            if time.perf_counter() - t0 >= 0.01 or k >= 1 << 20:
                break
            k *= 2
        chunks.append(k)
    per_repeat = max(seconds / (len(runners) * repeats), 1e-3)
    best, worst = [0.0] * len(runners), [float("inf")] * len(runners)
    for _ in range(repeats):
        for j, run in enumerate(runners):
            steps = 0
            t0 = time.perf_counter()
            while True:
                steps += run(chunks[j])
                dt = time.perf_counter() - t0
                if dt >= per_repeat:
                    break
            best[j], worst[j] = max(best[j], steps / dt), min(worst[j], steps / dt)
    for j, label in enumerate(labels):
        if best[j] > UNSTABLE_RATIO * worst[j]:
            UNSTABLE.append((label, best[j], worst[j]))
    return best


def action_batches(n: int, n_actions: int, seed: int = 0) -> list[np.ndarray]:
    """Seeded random action batches of ``n`` envs (a few, reused in turn)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, n_actions, size=n, dtype=np.int64) for _ in range(N_ACTION_BATCHES)]


def single_actions(n_actions: int, seed: int = 0) -> list[int]:
    """Seeded random actions for the single env."""
    rng = np.random.default_rng(seed)
    return [int(a) for a in rng.integers(0, n_actions, size=N_SINGLE_ACTIONS)]


def vector_runner(step: Callable, batches: list) -> Callable[[int], int]:
    """A runner that steps a vector env ``k`` times with the prepared batches and returns the env-steps taken."""
    mask = len(batches) - 1

    def run(k: int) -> int:
        for j in range(k):
            step(batches[j & mask])
        return k

    return run


def vec_env_runner(vec, batches: list[np.ndarray]) -> Callable[[int], int]:
    """A runner that steps a gymnasium VectorEnv with the prepared batches and returns the env-steps taken."""
    inner, n = vector_runner(vec.step, batches), vec.num_envs
    return lambda k: inner(k) * n


def single_env_runner(env, actions: list[int]) -> Callable[[int], int]:
    """``env.step`` with a reset whenever an episode ends (steps counted, reset time included)."""
    mask = len(actions) - 1
    step, reset = env.step, env.reset
    pos = [0]

    def run(k: int) -> int:
        j = pos[0]
        for _ in range(k):
            _, _, terminated, truncated, _ = step(actions[j & mask])
            j += 1
            if terminated or truncated:
                reset()
        pos[0] = j
        return k

    return run


def kernel_runner(fn: Callable, engine: Engine, batches: list[np.ndarray]) -> Callable[[int], int]:
    """The numba kernel called directly with the engine's buffers (as :meth:`Engine.step` does)."""
    e = engine
    argsets = [e.kernel_args(a, e.scripted_human) for a in batches]
    mask, n = len(argsets) - 1, e.num_envs

    def run(k: int) -> int:
        for j in range(k):
            fn(*argsets[j & mask])
        return k * n

    return run


# ---------------------------------------------------------------------------------------------
# measurements


def bench_minigrid(seconds: float, repeats: int) -> tuple[float | None, str]:
    """MiniGrid-Empty-8x8 single-env steps/s, or (None, why it was skipped)."""
    try:
        import minigrid  # noqa: F401  (registers the MiniGrid ids)
    except Exception as exc:  # ImportError, or a broken install
        return None, f"could not import minigrid ({type(exc).__name__}: {exc})"
    try:
        env = gymnasium.make(MINIGRID_ID)
        env.reset(seed=0)
        rate = measure(single_env_runner(env, single_actions(int(env.action_space.n))), seconds, repeats,
                       "MiniGrid Env.step")
        env.close()
    except Exception as exc:
        return None, f"{MINIGRID_ID} failed ({type(exc).__name__}: {exc})"
    return rate, f"minigrid {getattr(minigrid, '__version__', '?')}"


def bench_level(level: str, sizes: list[int], seconds: float, repeats: int) -> list[Row]:
    """Every API of ``level`` at each size in ``sizes``, timed (best of ``repeats``)."""
    env_id = envs.GYM_IDS[level]
    rows = []
    env = gymnasium.make(env_id)
    env.reset(seed=0)
    rows.append(Row(level, "Env.step (make)", 1,
                    measure(single_env_runner(env, single_actions(int(env.action_space.n))), seconds, repeats,
                            f"{level} Env.step")))
    env.close()
    for n in sizes:
        vec = gymnasium.make_vec(env_id, num_envs=n)
        vec.reset(seed=0)
        batches = action_batches(n, int(vec.single_action_space.n))
        rate = measure(vec_env_runner(vec, batches), seconds, repeats, f"{level} VectorEnv.step N={n}")
        rows.append(Row(level, "VectorEnv.step (make_vec)", n, rate))
        step_fn = vec.unwrapped.engine._step_fn
        if isinstance(step_fn, AdaptiveStep):
            KERNEL_CALLS.append((f"{level} N={n}", *step_fn.calls))
        vec.close()
    return rows


def has_human(level: str) -> bool:
    """Whether ``level`` has a human (an 'H' on its map) that a second agent can move."""
    from envs.core.level import compile_level

    return bool((compile_level(envs.get_level(level)).starts[:, 2] >= 0).any())


def two_agent_level(level: str, sizes: list[int], seconds: float,
                    repeats: int) -> list[tuple[str, int, float, float, float]]:
    """Per N: ``(level, N, single-agent VectorEnv.step rate, TwoAgentVecEnv.step rate with random
    human actions, the same with the human standing still)``, timed in alternation
    (:func:`measure_alternating`)."""
    from envs.two_agent import TwoAgentVecEnv

    env_id = envs.GYM_IDS[level]
    out = []
    for n in sizes:
        vec = gymnasium.make_vec(env_id, num_envs=n)
        vec.reset(seed=0)
        two = TwoAgentVecEnv(level, num_envs=n, seed=0)
        two.reset()
        robot, human = action_batches(n, NUM_ACTIONS_BENCH, seed=0), action_batches(n, NUM_ACTIONS_BENCH, seed=1)
        still = [np.full(n, NUM_ACTIONS_BENCH - 1, dtype=np.int64)] * len(human)  # NOOP
        mask = len(robot) - 1

        def runner(humans):
            def run_two(k: int, step=two.step) -> int:
                for j in range(k):
                    step(robot[j & mask], humans[j & mask])
                return k * n
            return run_two

        label = f"{level} two-agent N={n}"
        single, both, passive = measure_alternating(
            [vec_env_runner(vec, robot), runner(human), runner(still)], seconds, repeats,
            [f"{label} single-agent", f"{label} random human", f"{label} human still"])
        out.append((level, n, single, both, passive))
        vec.close()
    return out


def profile_level(level: str, sizes: list[int], seconds: float, repeats: int) -> list[tuple]:
    """Per N: VectorEnv.step, Engine.step, and the serial and parallel kernels called directly."""
    env_id = envs.GYM_IDS[level]
    out = []
    for n in sizes:
        vec = gymnasium.make_vec(env_id, num_envs=n)
        vec.reset(seed=0)
        engine = vec.unwrapped.engine
        batches = action_batches(n, int(vec.single_action_space.n))
        rates = {
            "vec": measure(vec_env_runner(vec, batches), seconds, repeats, f"profile {level} VectorEnv.step N={n}"),
            "engine": measure(lambda k, r=vector_runner(engine.step, batches): r(k) * n, seconds, repeats,
                              f"profile {level} Engine.step N={n}"),
            "serial": measure(kernel_runner(kernel.step_serial, engine, batches), seconds, repeats,
                              f"profile {level} kernel.step_serial N={n}"),
            "parallel": measure(kernel_runner(kernel.step_parallel, engine, batches), seconds, repeats,
                                f"profile {level} kernel.step_parallel N={n}"),
        }
        step_fn = engine._step_fn
        used = step_fn.name if isinstance(step_fn, AdaptiveStep) else "parallel" if engine.parallel else "serial"
        out.append((level, n, used, rates))
        vec.close()
    return out


# ---------------------------------------------------------------------------------------------
# output


def fmt_rate(r: float) -> str:
    """Env-steps per second as text (thousands separators)."""
    return f"{r:,.0f}"


def fmt_ratio(r: float, ref: float | None) -> str:
    """A rate against the reference rate as text (``1,234x``), or a dash without a reference."""
    return "n/a" if ref is None else f"{r / ref:,.1f}x"


def print_table(headers: list[str], rows: list[list[str]], right: set[int]) -> None:
    """Print rows as an aligned text table (``right``: the right-aligned columns)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


def print_markdown(headers: list[str], rows: list[list[str]], right: set[int]) -> None:
    """Print rows as a Markdown table (``right``: the right-aligned columns)."""
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join("---:" if i in right else "---" for i in range(len(headers))) + "|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


def threading_info() -> str:
    """numba's threading layer and thread count, as text."""
    note = ""
    try:
        layer = numba.threading_layer()
    except ValueError:
        # no parallel kernel ran yet (every measured N was below the parallel threshold): run one
        e = Engine(envs.get_level("off_switch"), num_envs=2, parallel=True)
        e.seed(0)
        e.reset()
        e.step(np.zeros(2, dtype=np.int64))
        layer = numba.threading_layer()
        note = " (initialised by an extra 2-env parallel step: no measured N used the parallel kernel)"
    knobs = [f"{k}={os.environ[k]}" for k in ("NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER", "OMP_NUM_THREADS",
                                              "OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in os.environ]
    return (f"numba threading layer: {layer}{note}; numba.get_num_threads() = {numba.get_num_threads()}; "
            f"from N >= {kernel.PARALLEL_THRESHOLD} the engine steps with whichever of the parallel and serial kernels "
            f"has been the faster lately (envs.core.engine.AdaptiveStep); threading env vars set: "
            f"{', '.join(knobs) or 'none'}")


# ---------------------------------------------------------------------------------------------
# command line


def level_name(text: str) -> str:
    """An argparse type: a registered level name."""
    by_id = {v: k for k, v in envs.GYM_IDS.items()}
    if text in envs.LEVELS:
        return text
    if text in by_id:
        return by_id[text]
    raise argparse.ArgumentTypeError(f"unknown level {text!r}; registered levels are {', '.join(sorted(envs.LEVELS))}")


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def positive_float(text: str) -> float:
    """An argparse type: a number > 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of ``python -m envs.bench``."""
    p = argparse.ArgumentParser(prog="python -m envs.bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--levels", nargs="+", type=level_name, default=["off_switch"], metavar="LEVEL",
                   help=f"registered level names (default off_switch; registered: {', '.join(sorted(envs.LEVELS))})")
    p.add_argument("--sizes", nargs="+", type=positive_int, default=None, metavar="N",
                   help=f"num_envs values for the VectorEnv (default {' '.join(map(str, DEFAULT_SIZES))})")
    p.add_argument("--seconds", type=positive_float, default=None,
                   help="time budget per measurement in seconds, split over the repeats (default 2; 0.15 with --quick)")
    p.add_argument("--repeats", type=positive_int, default=None,
                   help="timed repeats per measurement; the best is reported (default 3; 2 with --quick)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: tiny budgets, sizes {' '.join(map(str, QUICK_SIZES))} unless --sizes is given")
    p.add_argument("--profile", action="store_true",
                   help="also time Engine.step and the serial/parallel kernels directly, per N")
    p.add_argument("--no-minigrid", action="store_true", help="skip the MiniGrid comparison")
    p.add_argument("--two-agent", action="store_true",
                   help=f"also time envs.two_agent.TwoAgentVecEnv.step against VectorEnv.step on the levels with a "
                        f"human, alternately in the same run (N = {RATIO_SIZE} unless --sizes is given)")
    args = p.parse_args(argv)
    args.levels = list(dict.fromkeys(args.levels))
    args.two_agent_sizes = list(args.sizes) if args.sizes is not None else list(TWO_AGENT_SIZES)
    if args.sizes is None:
        args.sizes = list(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    if args.seconds is None:
        args.seconds = 0.15 if args.quick else 2.0
    if args.repeats is None:
        args.repeats = 2 if args.quick else 3
    return args


def main(argv: list[str] | None = None) -> int:
    """``python -m envs.bench``: time every API against MiniGrid in the same run and print the table; returns the
    exit status."""
    args = parse_args(argv)
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    print(f"stopbutton throughput benchmark  (python {platform.python_version()}, numpy {np.__version__}, "
          f"numba {numba.__version__}, gymnasium {gymnasium.__version__}; {affinity} usable CPU cores)")
    print(f"timing: warm-up, then best of {args.repeats} repeats of {args.seconds / args.repeats:.3g} s "
          f"per measurement; actions pre-drawn at random and cycled (sampling not timed)")
    print("VectorEnv: gymnasium.make_vec(id, num_envs=N); steps/s counts N env-steps per call; observations "
          "included (written by the kernel every step, returned without a copy: copy=False, the default); "
          "autoreset inside the kernel")
    print("Env: gymnasium.make(id) with gymnasium's default wrappers; reset() called when an episode ends "
          "(resets included in the time)")
    print()

    if args.no_minigrid:
        mg_rate, mg_note = None, "disabled with --no-minigrid"
    else:
        mg_rate, mg_note = bench_minigrid(args.seconds, args.repeats)
    if mg_rate is None:
        print(f"MiniGrid comparison skipped: {mg_note}")

    rows: list[Row] = []
    for level in args.levels:
        rows.extend(bench_level(level, args.sizes, args.seconds, args.repeats))
    if mg_rate is not None:
        rows.append(Row("minigrid:Empty-8x8", "Env.step (make)", 1, mg_rate))

    headers = ["level", "API", "N", "steps/s", "vs MiniGrid"]
    table = [[r.level, r.api, str(r.n), fmt_rate(r.rate), fmt_ratio(r.rate, mg_rate)] for r in rows]
    right = {2, 3, 4}
    print_table(headers, table, right)
    print()

    if mg_rate is not None:
        print(f"MiniGrid {MINIGRID_ID} ({mg_note}) single env: {fmt_rate(mg_rate)} steps/s")
        for level in args.levels:
            single = next(r for r in rows if r.level == level and r.n == 1 and r.api.startswith("Env."))
            vec = next((r for r in rows if r.level == level and r.n == RATIO_SIZE and r.api.startswith("Vector")),
                       None)
            if vec is not None:
                print(f"  {level}: VectorEnv N={RATIO_SIZE} / MiniGrid = {vec.rate / mg_rate:,.1f}x")
            else:
                print(f"  {level}: VectorEnv N={RATIO_SIZE} / MiniGrid: not measured (N={RATIO_SIZE} not in --sizes)")
            print(f"  {level}: single Env / MiniGrid = {single.rate / mg_rate:,.2f}x")
        print()

    if args.profile:
        prof = []
        for level in args.levels:
            prof.extend(profile_level(level, args.sizes, args.seconds, args.repeats))
        print("profile (env-steps/s; us/call = microseconds per step() call over all N envs):")
        pheaders = ["level", "N", "VectorEnv.step", "Engine.step", "kernel (serial)", "kernel (parallel)",
                    "VectorEnv uses", "shell us/call", "parallel/serial"]
        prows = []
        for level, n, used, r in prof:
            k = r[used]
            shell_us = (n / r["vec"] - n / k) * 1e6
            prows.append([level, str(n), fmt_rate(r["vec"]), fmt_rate(r["engine"]), fmt_rate(r["serial"]),
                          fmt_rate(r["parallel"]), used, f"{shell_us:,.1f}", f"{r['parallel'] / r['serial']:.2f}x"])
            prows.append(["", "  us/call", f"{n / r['vec'] * 1e6:,.1f}", f"{n / r['engine'] * 1e6:,.1f}",
                          f"{n / r['serial'] * 1e6:,.1f}", f"{n / r['parallel'] * 1e6:,.1f}", "", "", ""])
        print_table(pheaders, prows, {1, 2, 3, 4, 5, 7, 8})
        print("shell us/call = VectorEnv.step time minus the time of the kernel it uses, per call")
        print()

    two_rows = []
    if args.two_agent:
        humans = [lv for lv in args.levels if has_human(lv)]
        for level in humans:
            two_rows.extend(two_agent_level(level, args.two_agent_sizes, args.seconds, args.repeats))
        print("two agents (envs.two_agent.TwoAgentVecEnv.step: robot and human actions, both observations) against "
              "the robot alone (VectorEnv.step, the level's scripted human), same level, N and robot actions, timed "
              "in alternation in this run; the human's actions random, or NOOP (standing still: a random human "
              "presses the button and ends episodes the scripted one would not):")
        if two_rows:
            theaders = ["level", "N", "VectorEnv.step", "TwoAgentVecEnv.step", "two-agent / single",
                        "human still", "still / single"]
            trows = [[lv, str(n), fmt_rate(a), fmt_rate(b), f"{b / a:.2f}x", fmt_rate(c), f"{c / a:.2f}x"]
                     for lv, n, a, b, c in two_rows]
            print_table(theaders, trows, {1, 2, 3, 4, 5, 6})
        skipped = [lv for lv in args.levels if lv not in humans]
        if skipped:
            print(f"  skipped (no human on the map): {', '.join(skipped)}")
        print()

    if KERNEL_CALLS:
        print("kernel calls of the VectorEnvs from N >= "
              f"{kernel.PARALLEL_THRESHOLD} (the engine takes the faster kernel as it runs; many serial calls "
              "mean the parallel kernel's threads were kept waiting by other work on the machine):")
        for label, par, ser in KERNEL_CALLS:
            print(f"  {label}: {par:,} parallel, {ser:,} serial")
        print()
    if UNSTABLE:
        print(f"unstable (best repeat > {UNSTABLE_RATIO}x worst; the machine was busy or the timing is bimodal):")
        for label, best, worst in UNSTABLE:
            print(f"  {label}: best {fmt_rate(best)}, worst {fmt_rate(worst)} steps/s")
        print()
    print(threading_info())
    print()
    print("markdown:")
    print()
    print_markdown(headers, table, right)
    if two_rows:
        print()
        print_markdown(theaders, trows, {1, 2, 3, 4, 5, 6})
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
