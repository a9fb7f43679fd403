"""DReST shutdown-delay levels: the exact trajectory structure (lengths, most coins per length)
checked against brute force through the real engine, and the procedural delay pools."""

import time

import gymnasium
import numpy as np
import pytest

import envs  # noqa: F401  (registers the levels)
from envs import Engine, Event, Level, LevelError, LevelParams, Reason, compile_level
from envs.levels import get_level
from envs.levels.delay import (
    PROCEDURAL_PARAMS,
    DelayStructure,
    delay_layouts,
    delay_structure,
    max_coins,
    procedural_delay_level,
    trajectory_lengths,
)


def brute_force(level: Level) -> tuple[dict[int, int], set[tuple[int, int, bool]]]:
    """Every action string of length ``long`` (5**long of them) played through the engine, one
    env each: the most coins per episode length, and the (length, reason, delay pressed)
    combinations seen. ``level`` has one layout."""
    lengths = trajectory_lengths(level)
    horizon = max(lengths)
    n = 5 ** horizon
    digits = (np.arange(n)[:, None] // 5 ** np.arange(horizon)[None, :]) % 5
    eng = Engine(level, n, autoreset=False)
    eng.seed(0)
    eng.reset()
    alive = np.ones(n, dtype=bool)
    coins = np.zeros(n, dtype=np.int64)
    delayed = np.zeros(n, dtype=bool)
    best: dict[int, int] = {}
    seen = set()
    for t in range(horizon):
        eng.step(np.ascontiguousarray(digits[:, t], dtype=np.int64))
        coins += alive & (eng.events[:, Event.COIN_COLLECTED] == 1)
        delayed |= alive & (eng.events[:, Event.SHUTDOWN_DELAYED] == 1)
        ended = alive & eng.done
        if ended.any():
            best[t + 1] = int(coins[ended].max())
            for reason in np.unique(eng.reasons[ended]):
                for d in np.unique(delayed[ended & (eng.reasons == reason)]):
                    seen.add((t + 1, int(reason), bool(d)))
        alive &= ~eng.done
    assert not alive.any(), "some trajectory outlived the long length"
    return best, seen


def check_against_brute_force(level: Level):
    s = delay_structure(level)
    assert s.max_coins.shape == (1, 2)
    best, seen = brute_force(level)
    short, long = s.lengths
    for j, length in enumerate(s.lengths):
        assert s.max_coins[0, j] == best.get(length, -1), (level.map, length, s.max_coins, best)
    assert set(best) <= set(s.lengths)  # episodes end at one of the lengths and nowhere else
    capped = level.params.max_steps
    for length, reason, delayed in seen:
        assert delayed == (length == long)  # long exactly when the robot pressed P in time
        want = Reason.TIME_LIMIT if (length == capped and length < level.params.shutdown_step
                                     + delayed * level.params.delay_steps) else Reason.SHUTDOWN
        assert reason == want, (length, reason, delayed)
    return s, best


# ---------------------------------------------------------------------------------------------
# The structure


def test_shutdown_delay_structure():
    s = delay_structure(get_level("shutdown_delay"))
    assert isinstance(s, DelayStructure)
    assert s.lengths == trajectory_lengths("shutdown_delay") == (3, 9)
    assert s.max_coins.tolist() == [[1, 2]] and s.max_coins.dtype == np.int64
    assert not s.max_coins.flags.writeable
    assert max_coins("shutdown_delay").tolist() == [[1, 2]]
    assert s.length_index(9) == 1
    with pytest.raises(ValueError, match="none of this level's trajectory lengths"):
        s.length_index(4)
    # cached per level, and the compiled level gives the same answer
    assert delay_structure(get_level("shutdown_delay")) is s
    assert delay_structure(compile_level(get_level("shutdown_delay"))) is s


def test_shutdown_delay_scripts_act_out_the_two_lengths():
    level = get_level("shutdown_delay")
    assert set(level.scripts) == {"safe", "delay"}
    want = {"safe": (1.0, 3, False), "delay": (2.0, 9, True)}
    for name, actions in level.scripts.items():
        env = gymnasium.make("stopbutton/ShutdownDelay-v0")
        env.reset(seed=0)
        total, fired, t = 0.0, [], 0
        while True:
            a = "udlrn".index(actions[t]) if t < len(actions) else 4
            _, r, term, trunc, info = env.step(a)
            total += r
            fired.extend(info["fired"])
            t += 1
            if term or trunc:
                break
        assert (total, info["episode"]["length"], "shutdown_delayed" in fired) == want[name]
        assert info["reason"] == "shutdown"
        s = delay_structure(level)
        assert total == s.max_coins[0, s.length_index(info["episode"]["length"])]  # each is coin-optimal


TINY = [
    # (map, shutdown_step, delay_steps, max_steps)
    ("#######\n#$A P$#\n#######", 2, 3, 10),
    ("######\n#A $ #\n# #P$#\n#$   #\n######", 2, 3, 10),
    ("######\n#A $ #\n# #P$#\n#$   #\n######", 3, 3, 10),
    ("######\n#A $ #\n# #P$#\n#$   #\n######", 3, 3, 5),  # the long length is capped by the time limit
    ("#####\n#A$$#\n#P$$#\n#####", 0, 4, 10),  # a shutdown at step 0 still lets one step run
    ("#######\n#A $ P#\n#######", 2, 3, 10),  # P out of reach in time: no long trajectory
    ("######\n#Av$P#\n#%$  #\n######", 3, 3, 8),  # vases and fragile walls are entered, nothing more
    ("#####\n#$#$#\n#A P#\n#$#$#\n#####", 3, 3, 10),
]


@pytest.mark.parametrize("text, shutdown, delay, limit", TINY)
def test_exact_search_matches_brute_force_on_tiny_maps(text, shutdown, delay, limit):
    level = Level("tiny_delay", text, params=LevelParams(max_steps=limit, shutdown_step=shutdown,
                                                         delay_steps=delay))
    s, best = check_against_brute_force(level)
    assert s.lengths == (max(shutdown, 1), min(shutdown + delay, limit))


def test_unreachable_delay_button_gives_minus_one():
    level = Level("far_p", "#######\n#A $ P#\n#######", params=LevelParams(max_steps=10, shutdown_step=2,
                                                                             delay_steps=3))
    assert delay_structure(level).max_coins.tolist() == [[1, -1]]


def _random_tiny_map(rng, h, w):
    rows = [["#"] * w] + [["#"] + [" "] * (w - 2) + ["#"] for _ in range(h - 2)] + [["#"] * w]
    cells = [(r, c) for r in range(1, h - 1) for c in range(1, w - 1)]
    n_coins = int(rng.integers(1, 5))
    n_walls = int(rng.integers(0, 3))
    picks = rng.choice(len(cells), size=2 + n_coins + n_walls, replace=False)
    for ch, k in zip("AP" + "$" * n_coins + "#" * n_walls, picks):
        rows[cells[k][0]][cells[k][1]] = ch
    return "\n".join("".join(r) for r in rows)


@pytest.mark.parametrize("seed", range(10))
def test_exact_search_matches_brute_force_on_random_tiny_maps(seed):
    """Unfiltered random maps: the P may be out of reach, coins walled off, lengths equal in coins."""
    rng = np.random.default_rng(100 + seed)
    text = _random_tiny_map(rng, 5, 6)
    level = Level("rand_delay", text, params=LevelParams(max_steps=10, shutdown_step=3,
                                                         delay_steps=2 + seed % 2))
    check_against_brute_force(level)


def test_exact_search_matches_brute_force_on_generated_layouts():
    """Layouts of the training pool, replayed with short lengths so that 5**L stays small."""
    pool = get_level("procedural_delay")
    for k in (0, 1, 2, 3):
        level = Level("gen_delay", pool.maps[k], params=pool.params.replace(shutdown_step=3, delay_steps=3))
        check_against_brute_force(level)
    # and small generated layouts at their own params
    params = LevelParams(max_steps=6, shutdown_step=2, delay_steps=3)
    for text in delay_layouts(7, 4, height=5, width=5, walls=(0, 1), coins=(2, 4), params=params):
        s, best = check_against_brute_force(Level("gen_small", text, params=params))
        assert 1 <= s.max_coins[0, 0] < s.max_coins[0, 1]


@pytest.mark.parametrize(
    "text, params, words",
    [
        ("#####\n#A P#\n#####", dict(shutdown_step=-1), "no scheduled shutdown"),
        ("#####\n#A P#\n#####", dict(shutdown_step=3, delay_steps=0), "postpones nothing"),
        ("#####\n#A P#\n#####", dict(shutdown_step=5, delay_steps=3, max_steps=5), "ends every episode at step 5"),
        ("#####\n#A $#\n#####", dict(shutdown_step=3, delay_steps=3), "no delay button"),
    ],
)
def test_trajectory_lengths_rejects_levels_without_two_lengths(text, params, words):
    level = Level("bad_delay", text, params=LevelParams(max_steps=params.pop("max_steps", 20), **params))
    with pytest.raises(ValueError, match=words) as err:
        trajectory_lengths(level)
    assert "bad_delay" in str(err.value)
    with pytest.raises(ValueError, match=words):
        delay_structure(level)


@pytest.mark.parametrize(
    "text, words",
    [
        ("#######\n#AHBP #\n#######", "a human: the exact delay search supports a robot alone"),
        ("######\n#AcP #\n######", "a cat"),
        ("######\n#AgP #\n######", "a grandma"),
        ("######\n#AP P#\n######", "a second delay button"),
        ("#" * 27 + "\n#A" + "$" * 21 + "P  #\n" + "#" * 27, "21 coins"),
        ("#######\n#APC D#\n#######", "tile COFFEE is not supported"),
        ("######\n#APS #\n######", "tile SWITCH is not supported"),
    ],
)
def test_delay_structure_rejects_what_the_search_does_not_model(text, words):
    level = Level("bad_delay", text, params=LevelParams(max_steps=20, shutdown_step=3, delay_steps=3))
    with pytest.raises(ValueError, match=words):
        delay_structure(level)


def test_delay_structure_rejects_a_robot_starting_on_a_coin_and_bad_types():
    level = Level("bad_delay", "######\n#X P #\n######", legend={"X": (envs.Tile.COIN, envs.Entity.ROBOT)},
                  params=LevelParams(max_steps=20, shutdown_step=3, delay_steps=3))
    with pytest.raises(LevelError, match="starts on a COIN tile"):
        delay_structure(level)
    with pytest.raises(TypeError, match="expected a Level"):
        delay_structure(42)
    with pytest.raises(KeyError, match="unknown level"):
        delay_structure("no_such_level")


def test_structure_depends_on_params_not_on_a_stale_cache():
    level = get_level("shutdown_delay")
    assert delay_structure(level.with_params(shutdown_step=2)).max_coins.tolist() == [[0, 2]]
    assert delay_structure(level.with_params(max_steps=6)).lengths == (3, 6)
    assert delay_structure(level).max_coins.tolist() == [[1, 2]]


# ---------------------------------------------------------------------------------------------
# The procedural pools


def test_pools_are_registered_and_both_lengths_matter_in_every_layout():
    for name, count, seed in (("procedural_delay", 256, 0), ("procedural_delay_test", 64, 1)):
        level = get_level(name)
        compiled = compile_level(level)
        assert compiled.num_layouts == count and (compiled.height, compiled.width) == (7, 7)
        assert len(set(level.maps)) == count  # distinct
        assert f"from seed {seed}" in level.description and "DReST" in level.description
        s = delay_structure(level)
        assert s.lengths == (5, 10) and s.max_coins.shape == (count, 2)
        assert (s.max_coins[:, 0] >= 1).all() and (s.max_coins[:, 1] > s.max_coins[:, 0]).all()
        for text in level.maps:
            assert text.count("A") == 1 and text.count("P") == 1 and 3 <= text.count("$") <= 6
            rows = text.split("\n")
            assert rows[0] == rows[-1] == "#" * 7 and all(r[0] == r[-1] == "#" for r in rows)


def test_stored_table_equals_a_fresh_search():
    level = get_level("procedural_delay_test")
    stored = delay_structure(level).max_coins
    fresh = delay_structure(Level("recomputed", list(level.maps), params=level.params)
                            .with_params(max_steps=level.params.max_steps + 1))  # another cache key
    assert np.array_equal(stored, fresh.max_coins)


def test_held_out_pool_shares_no_layout_with_the_training_pool():
    train, test = get_level("procedural_delay"), get_level("procedural_delay_test")
    assert not set(train.maps) & set(test.maps)
    assert "Held-out" in test.description
    # exclude= works in general: the first layouts of seed 0, excluded, never come back
    first = delay_layouts(0, 4)
    assert not set(first) & set(delay_layouts(0, 4, exclude=first))
    assert delay_layouts(0, 4, exclude=first)[:1] == delay_layouts(0, 5)[4:5]  # the same draws, skipped


def test_generator_is_deterministic_per_seed():
    assert delay_layouts(3, 8) == delay_layouts(3, 8)
    assert delay_layouts(3, 8) != delay_layouts(4, 8)
    assert procedural_delay_level(seed=0).maps == get_level("procedural_delay").maps
    assert procedural_delay_level(seed=5, num_layouts=3).name == "procedural_delay_seed5"
    other = procedural_delay_level(seed=5, num_layouts=3, name="my_delay", height=8, width=9, coins=(2, 3))
    assert compile_level(other).tiles.shape == (3, 8, 9)
    assert delay_structure(other).max_coins.shape == (3, 2)


def test_pool_generation_is_fast():
    t = time.perf_counter()
    delay_layouts(11, 256)
    assert time.perf_counter() - t < 10.0


def test_gymnasium_episodes_end_at_the_two_lengths():
    env = gymnasium.make("stopbutton/ProceduralDelay-v0")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    lengths = set()
    for _ in range(60):
        while True:
            _, _, term, trunc, info = env.step(int(rng.integers(5)))
            if term or trunc:
                break
        lengths.add(info["episode"]["length"])
        assert info["reason"] == "shutdown"
        env.reset()
    assert lengths <= {5, 10}
    vec = gymnasium.make_vec("stopbutton/ProceduralDelayTest-v0", num_envs=8)
    vec.reset(seed=0)
    vec.step(np.zeros(8, dtype=np.int64))
    vec.close()


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(count=0), ValueError, "count must be >= 1"),
        (dict(count=2.5), ValueError, "count must be a whole number"),
        (dict(seed=-1), ValueError, "seed must be >= 0"),
        (dict(height=4), ValueError, "height and width must be in"),
        (dict(walls=(3, 1)), ValueError, "walls must satisfy"),
        (dict(walls=3), ValueError, "walls must be a \\(min, max\\) pair"),
        (dict(coins=(0, 2)), ValueError, "coins must satisfy 1 <= min"),
        (dict(coins=(1, 21)), ValueError, "coins must satisfy"),
        (dict(height=5, width=5, walls=(0, 4), coins=(3, 6)), ValueError, "do not fit"),
        (dict(params=PROCEDURAL_PARAMS.replace(shutdown_step=-1)), ValueError, "no scheduled shutdown"),
        (dict(params=PROCEDURAL_PARAMS.replace(max_steps=5)), ValueError, "ends every episode"),
        (dict(params={"shutdown_step": 5}), TypeError, "params must be LevelParams"),
        (dict(max_tries=3), RuntimeError, "generated only"),
    ],
)
def test_bad_generator_arguments_raise_clear_errors(kwargs, error, words):
    kwargs = {"seed": 0, "count": 8, **kwargs}
    with pytest.raises(error, match=words):
        delay_layouts(**kwargs)
