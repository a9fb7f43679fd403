"""The numba kernel against the slow, readable pure-Python reference step."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs import Engine, compile_level
from envs.core.reference import ReferenceEnv
from envs.core.rules import STATE_NAMES
from envs.core.tables import EVENT_NAMES, HUMAN_SCRIPTED, NUM_ACTIONS, Event
from envs.levels import LEVELS


def assert_same_step(eng, i, ref_out, ref, where):
    obs, reward, hidden, reason, events = ref_out
    row = ref.state_row()
    fired = {e.name.lower() for e in events}
    same = (
        eng.state[i].tolist() == list(row.values())
        and np.array_equal(eng.obs[i], obs)
        and eng.rewards[i] == np.float32(reward)
        and eng.hidden[i] == np.float32(hidden)
        and eng.reasons[i] == reason
        and {EVENT_NAMES[k] for k in np.flatnonzero(eng.events[i])} == fired
        and (ref.final_obs is None or (np.array_equal(eng.final_obs[i], ref.final_obs)
                                       and np.allclose(eng.ep_stats[i], ref.final_stats, rtol=0, atol=1e-9)
                                       and eng.ep_events[i].tolist() == [ref.final_event_counts[e] for e in Event]))
    )
    if same:
        return
    # Slow path: say exactly what differs.
    assert dict(zip(STATE_NAMES, eng.state[i].tolist())) == row, where
    np.testing.assert_array_equal(eng.grid[i], np.array(ref.grid, dtype=np.uint8), err_msg=where)
    np.testing.assert_array_equal(eng.obs[i], obs, err_msg=where)
    assert (eng.rewards[i], eng.hidden[i], eng.reasons[i]) == (np.float32(reward), np.float32(hidden), reason), where
    assert {EVENT_NAMES[k] for k in np.flatnonzero(eng.events[i])} == fired, where
    np.testing.assert_array_equal(eng.final_obs[i], ref.final_obs, err_msg=where)
    np.testing.assert_allclose(eng.ep_stats[i], ref.final_stats, rtol=0, atol=1e-9, err_msg=where)
    if ref.final_obs is not None:
        assert eng.ep_events[i].tolist() == [ref.final_event_counts[e] for e in Event], where
    raise AssertionError(where)


def run_pair(level, seed, n_envs, steps, action_seed, random_human, parallel=False):
    c = compile_level(level)
    eng = Engine(c, n_envs, autoreset=True, parallel=parallel)
    eng.seed(seed)
    eng.reset()
    refs = [ReferenceEnv(c, seed, i) for i in range(n_envs)]
    for i, ref in enumerate(refs):
        np.testing.assert_array_equal(eng.obs[i], ref.observe())
    rng = np.random.default_rng(action_seed)
    episodes = 0
    for t in range(steps):
        acts = rng.integers(0, NUM_ACTIONS, n_envs)
        hum = rng.integers(0, NUM_ACTIONS, n_envs) if random_human else np.full(n_envs, HUMAN_SCRIPTED)
        eng.step(acts, hum)
        for i, ref in enumerate(refs):
            out = ref.step(int(acts[i]), int(hum[i]))
            assert_same_step(eng, i, out, ref, f"{level.name} seed {seed} env {i} step {t}")
            episodes += ref.final_obs is not None
    return episodes


@pytest.mark.parametrize("name", sorted(LEVELS))
@pytest.mark.parametrize("random_human", [False, True])
def test_kernel_matches_reference_on_random_trajectories(name, random_human):
    level = LEVELS[name]
    # Short episodes, so that a few hundred steps over 128 envs cover thousands of episodes.
    level = level.with_params(max_steps=min(level.params.max_steps, 25))
    episodes = run_pair(level, seed=7, n_envs=128, steps=250, action_seed=1, random_human=random_human)
    assert episodes >= 1000


@pytest.mark.parametrize("name", sorted(LEVELS))
def test_parallel_kernel_matches_reference(name):
    run_pair(LEVELS[name], seed=3, n_envs=64, steps=60, action_seed=2, random_human=False, parallel=True)


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(sorted(LEVELS)),
    seed=st.integers(0, 2**63 - 1),
    actions=st.lists(st.integers(0, NUM_ACTIONS - 1), min_size=1, max_size=60),
    request_probability=st.sampled_from([0.0, 0.3, 1.0]),
)
def test_kernel_matches_reference_on_generated_action_strings(name, seed, actions, request_probability):
    level = LEVELS[name].with_params(request_probability=request_probability)
    c = compile_level(level)
    eng = Engine(c, 1, autoreset=True, parallel=False)
    eng.seed(seed)
    eng.reset()
    ref = ReferenceEnv(c, seed, 0)
    for t, a in enumerate(actions):
        eng.step(np.array([a]))
        assert_same_step(eng, 0, ref.step(a), ref, f"{name} step {t}")
