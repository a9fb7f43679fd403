"""The engine's choice of step kernel: from ``kernel.PARALLEL_THRESHOLD`` envs up it steps with
whichever of the parallel and serial kernels has been the faster lately (``AdaptiveStep``), and
which one ran never changes a result."""

from __future__ import annotations

import numpy as np
import pytest

from envs.core import kernel
from envs.core.engine import AdaptiveStep, Engine
from envs.levels import get_level

BUFFERS = ("obs", "rewards", "hidden", "terminated", "truncated", "done", "reasons", "events", "state", "grid",
           "acc", "rng", "final_obs", "ep_stats", "ev_count", "ep_events", "final_state", "final_grid")


class FakeClock:
    """A clock that the fake kernels move forward by their cost."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def fake_kernels(clock, costs):
    """Two kernels that cost ``costs[0]`` and ``costs[1]`` seconds (a list, changeable) a call."""

    def make(k):
        def run(*args):
            clock.t += costs[k]
            return -1, k

        return run

    return make(0), make(1)


def test_the_engine_chooses_its_kernel_as_it_runs_only_from_the_threshold_up_and_when_not_told():
    level = get_level("off_switch")
    n = kernel.PARALLEL_THRESHOLD
    assert isinstance(Engine(level, n)._step_fn, AdaptiveStep)
    assert Engine(level, n - 1)._step_fn is kernel.step_serial
    assert Engine(level, n, parallel=True)._step_fn is kernel.step_parallel
    assert Engine(level, n, parallel=False)._step_fn is kernel.step_serial


def test_adaptive_step_moves_to_the_faster_kernel_and_back_when_the_costs_turn():
    clock = FakeClock()
    costs = [10.0, 1.0]  # the parallel kernel slow (its threads kept waiting), the serial fast
    step = AdaptiveStep(fake_kernels(clock, costs), clock)
    for _ in range(200):
        step()
    assert step.name == "serial"
    # the first gap on the parallel kernel, then trials of it 16, 32 and 64 calls apart
    assert step.calls[0] <= AdaptiveStep.FIRST_GAP + 4 * AdaptiveStep.TRIAL, step.calls
    costs[:] = [1.0, 10.0]  # the other work ended: the parallel kernel is the faster again
    before = list(step.calls)
    for _ in range(20_000):
        step()
    assert step.name == "parallel"
    assert step.calls[0] - before[0] > 0.9 * 20_000, step.calls


def test_adaptive_step_spends_few_calls_on_the_losing_kernel():
    clock = FakeClock()
    step = AdaptiveStep(fake_kernels(clock, [1.0, 2.0]), clock)
    for _ in range(100_000):
        step()
    assert step.name == "parallel"
    assert step.calls[1] < 0.002 * 100_000, step.calls  # trials back off to TRIAL per MAX_GAP calls


@pytest.mark.parametrize("level_name", ["off_switch", "coffee_hazards", "procedural_delay"])
def test_switching_kernels_while_stepping_gives_the_serial_kernels_results(level_name):
    """Steps alternate between the kernels at random; every buffer matches a serial-only engine."""
    level = get_level(level_name)
    n = kernel.PARALLEL_THRESHOLD
    adaptive, serial = Engine(level, n), Engine(level, n, parallel=False)
    rng = np.random.default_rng(0)
    choice = rng.integers(0, 2, size=60)

    class Coin(AdaptiveStep):
        """Takes the kernel a pre-drawn coin says, whatever the clock."""

        def __call__(self, *args):
            self.current = int(choice[self.calls[0] + self.calls[1]])
            return super().__call__(*args)

    adaptive._step_fn = Coin()
    for e in (adaptive, serial):
        e.seed(5)
        e.reset()
    for t in range(len(choice)):
        actions = rng.integers(0, 5, size=n)
        assert adaptive.step(actions) == serial.step(actions)
        for name in BUFFERS:
            np.testing.assert_array_equal(getattr(adaptive, name), getattr(serial, name), err_msg=f"{name} at step {t}")
    assert min(adaptive._step_fn.calls) > 0
