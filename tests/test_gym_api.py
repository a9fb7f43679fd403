"""Conformance of the gymnasium shells over every registered level."""

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode, VectorEnv

import envs
from envs import Event, Reason
from envs.core.tables import HUMAN_SCRIPTED
from envs.levels import GYM_IDS

IDS = sorted(GYM_IDS.values())


@pytest.mark.parametrize("env_id", IDS)
def test_check_env_passes(env_id):
    env = gymnasium.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    check_env(gymnasium.make(env_id, render_mode="ansi").unwrapped)


@pytest.mark.parametrize("env_id", IDS)
def test_make_vec_gives_a_same_step_vector_env(env_id):
    vec = gymnasium.make_vec(env_id, num_envs=8)
    assert isinstance(vec.unwrapped, VectorEnv)
    assert vec.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    obs, infos = vec.reset(seed=1)
    assert obs.shape == (8, *vec.single_observation_space.shape) and obs in vec.observation_space
    assert infos["events"].shape == (8, len(Event))
    for _ in range(120):
        obs, rew, term, trunc, infos = vec.step(vec.action_space.sample())
        assert obs in vec.observation_space and rew.dtype == np.float32
        done = term | trunc
        assert not (term & trunc).any()
        if done.any():
            np.testing.assert_array_equal(infos["_final_obs"], done)
            for i in np.flatnonzero(done):
                assert infos["final_obs"][i] in vec.single_observation_space
                assert infos["final_info"]["reason"][i] != Reason.RUNNING
                # the returned observation is the next episode's first one
                assert obs[i, 3, 0, 0] == min(vec.unwrapped.level.params.max_steps, 255)


def same_seed_rollout(env_id, num_envs, seed, steps=80):
    vec = gymnasium.make_vec(env_id, num_envs=num_envs)
    obs, _ = vec.reset(seed=seed)
    rng = np.random.default_rng(0)
    trace = [obs.copy()]
    for _ in range(steps):
        acts = rng.integers(0, 5, 16)[:num_envs]
        obs, rew, term, trunc, infos = vec.step(acts)
        trace.append((obs.copy(), rew.copy(), term.copy(), infos["events"].copy()))
    return trace


def _flat(trace, n):
    out = [trace[0][:n]]
    for obs, rew, term, ev in trace[1:]:
        out += [obs[:n], rew[:n], term[:n], ev[:n]]
    return out


@pytest.mark.parametrize("env_id", IDS)
def test_same_seed_same_trajectories_whatever_the_batch_size(env_id):
    a = _flat(same_seed_rollout(env_id, 16, seed=5), 4)
    b = _flat(same_seed_rollout(env_id, 16, seed=5), 4)
    c = _flat(same_seed_rollout(env_id, 4, seed=5), 4)
    for x, y, z in zip(a, b, c):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(x, z)


def test_different_seeds_differ_on_random_levels():
    a = _flat(same_seed_rollout("stopbutton/OffSwitch-v0", 16, seed=5, steps=200), 16)
    b = _flat(same_seed_rollout("stopbutton/OffSwitch-v0", 16, seed=6, steps=200), 16)
    assert any(not np.array_equal(x, y) for x, y in zip(a, b))


def test_single_env_matches_env_zero_of_a_batch():
    single = gymnasium.make("stopbutton/OffSwitch-v0", request_probability=0.5)
    vec = gymnasium.make_vec("stopbutton/OffSwitch-v0", num_envs=3, request_probability=0.5)
    o1, _ = single.reset(seed=11)
    o2, _ = vec.reset(seed=11)
    np.testing.assert_array_equal(o1, o2[0])
    for a in [3, 3, 3, 0, 0, 1, 2, 3, 3, 3, 3]:
        o1, r1, t1, u1, i1 = single.step(a)
        o2, r2, t2, u2, i2 = vec.step(np.array([a, 0, 0]))
        np.testing.assert_array_equal(i1["events"], i2["events"][0])
        assert r1 == r2[0] and t1 == t2[0]
        if t1 or u1:
            np.testing.assert_array_equal(o1, i2["final_obs"][0])
            break
        np.testing.assert_array_equal(o1, o2[0])


def test_params_override_through_make_and_make_vec():
    env = gymnasium.make("stopbutton/SafeInterruptibility-v0", interruption_probability=1.0, max_steps=20)
    assert env.unwrapped.level.params.request_probability == 1.0
    obs, _ = env.reset(seed=0)
    assert obs[3, 0, 0] == 20
    vec = gymnasium.make_vec("stopbutton/OffSwitch-v0", num_envs=2, request="never")
    assert vec.unwrapped.level.params.request == "never"


def test_unknown_keyword_is_rejected_with_the_valid_list():
    with pytest.raises(TypeError, match=r"unknown level parameter\(s\) \['speed'\]; valid parameters are .*max_steps"):
        gymnasium.make("stopbutton/OffSwitch-v0", speed=2)
    with pytest.raises(TypeError, match="valid parameters are"):
        gymnasium.make_vec("stopbutton/OffSwitch-v0", num_envs=2, speed=2)
    with pytest.raises(envs.LevelError, match="request_probability"):
        gymnasium.make("stopbutton/OffSwitch-v0", request_probability=2.0)


@pytest.mark.parametrize("bad", [5, -1, 2.5, "up", None])
def test_out_of_range_action_single_env(bad):
    env = gymnasium.make("stopbutton/Coffee-v0")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(bad)


def test_out_of_range_action_vector_env_names_the_env_and_changes_nothing():
    vec = gymnasium.make_vec("stopbutton/OffSwitch-v0", num_envs=4)
    vec.reset(seed=0)
    before = vec.unwrapped.engine.state.copy()
    with pytest.raises(ValueError, match=r"action 7 for env 2 is out of range; valid actions are 0=UP"):
        vec.step(np.array([0, 1, 7, 3]))
    with pytest.raises(ValueError, match="expected 4 actions"):
        vec.step(np.array([0, 1]))
    np.testing.assert_array_equal(vec.unwrapped.engine.state, before)


@pytest.mark.parametrize("num_envs", [3, 2048])  # the serial and the parallel kernel
@pytest.mark.parametrize("where", [0, -1])
def test_invalid_action_in_an_int64_batch_changes_nothing(num_envs, where):
    """int64 batches are validated inside the kernel, before any env moves."""
    vec = gymnasium.make_vec("stopbutton/Kitchen-v0", num_envs=num_envs)
    vec.reset(seed=1)
    eng = vec.unwrapped.engine
    for _ in range(5):
        vec.step(np.full(num_envs, 3, dtype=np.int64))
    snapshot = [a.copy() for a in (eng.state, eng.grid, eng.obs, eng.rng, eng.acc, eng.events)]
    acts = np.zeros(num_envs, dtype=np.int64)
    acts[where] = 5
    env_index = where % num_envs
    with pytest.raises(ValueError, match=f"action 5 for env {env_index} is out of range"):
        vec.step(acts)
    for before, after in zip(snapshot, (eng.state, eng.grid, eng.obs, eng.rng, eng.acc, eng.events)):
        np.testing.assert_array_equal(after, before)
    hum = np.full(num_envs, HUMAN_SCRIPTED, dtype=np.int64)
    hum[where] = -3
    with pytest.raises(ValueError, match=f"human action -3 for env {env_index} is out of range"):
        eng.step(np.zeros(num_envs, dtype=np.int64), hum)
    np.testing.assert_array_equal(eng.state, snapshot[0])


def test_minus_one_is_a_named_bad_action_whatever_the_dtype():
    vec = gymnasium.make_vec("stopbutton/OffSwitch-v0", num_envs=3)
    vec.reset(seed=0)
    for dtype in (np.int64, np.int32):
        with pytest.raises(ValueError, match="action -1 for env 1 is out of range"):
            vec.step(np.array([0, -1, 0], dtype=dtype))


def test_engine_without_autoreset_can_step_past_the_end():
    """Time left reads 0 (not a wrapped 255) and the request table is not overrun."""
    from envs import Engine
    from envs.core.reference import ReferenceEnv

    c = envs.compile_level(envs.get_level("off_switch").with_params(max_steps=5))
    eng = Engine(c, 1, autoreset=False)
    eng.seed(0)
    eng.reset()
    ref = ReferenceEnv(c, 0, 0, autoreset=False)
    for _ in range(9):
        eng.step(np.array([4]))
        np.testing.assert_array_equal(eng.obs[0], ref.step(4)[0])
    assert eng.state[0, 0] == 9 and (eng.obs[0, 3] == 0).all()


def test_observation_buffer_is_read_only_unless_copied():
    """The kernel updates observations in place from the previous step's, so the buffer it
    hands out cannot be written; ``copy=True`` gives writable copies."""
    vec = gymnasium.make_vec("stopbutton/OffSwitch-v0", num_envs=4)
    obs, _ = vec.reset(seed=0)
    with pytest.raises(ValueError, match="read-only"):
        obs[0, 0, 0, 0] = 9
    obs, *_ = vec.step(np.zeros(4, dtype=np.int64))
    assert not obs.flags.writeable
    vec = gymnasium.make_vec("stopbutton/OffSwitch-v0", num_envs=4, copy=True)
    obs, _ = vec.reset(seed=0)
    obs[0, 0, 0, 0] = 9  # a copy: the env's next observation is unaffected
    obs2, *_ = vec.step(np.zeros(4, dtype=np.int64))
    assert obs2[0, 0, 0, 0] != 9 and obs2.flags.writeable


def test_rewards_and_flags_are_fresh_arrays_and_copy_true_copies_infos():
    vec = gymnasium.make_vec("stopbutton/OffSwitch-v0", num_envs=8)
    vec.reset(seed=0)
    a = np.zeros(8, dtype=np.int64)
    _, r1, t1, u1, i1 = vec.step(a)
    _, r2, t2, u2, i2 = vec.step(a)
    assert r1 is not r2 and t1 is not t2 and u1 is not u2
    assert i1["events"] is i2["events"]  # copy=False: infos are the engine's buffers
    vec = gymnasium.make_vec("stopbutton/OffSwitch-v0", num_envs=8, copy=True)
    vec.reset(seed=0)
    _, _, _, _, i1 = vec.step(a)
    _, _, _, _, i2 = vec.step(a)
    assert i1["events"] is not i2["events"] and i1["reason"] is not i2["reason"]


def test_step_after_the_end_needs_a_reset():
    env = gymnasium.make("stopbutton/Coffee-v0").unwrapped
    env.reset(seed=0)
    for a in "ddrrrr":
        _, _, term, _, _ = env.step("udlrn".index(a))
    assert term
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(0)


def test_render_ansi_shows_the_map():
    env = gymnasium.make("stopbutton/OffSwitch-v0", render_mode="ansi")
    env.reset(seed=0)
    text = env.render()
    assert text.splitlines()[1] == "#H  B####" and "A" in text and "time left 30" in text
