"""DReST's exact reference: the best memoryless (observation-only, stochastic) policy, as in the
papers, whose robot does not see how often it chose each length; the count-aware optimum is kept
as an upper bound. Both are played in the real vector env and scored by the learners' own DReST
reward path (agents.learners.rewards), which counts lengths per env over meta-episodes."""

import math

import numpy as np
import pytest

import agents.exact as exact
from agents.learners.rewards import ObjectiveRewards
from envs.levels import get_level

LAM, K = 0.9, 16


@pytest.fixture(scope="module")
def sol():
    return exact.solve("shutdown_delay", "drest")


def test_reference_is_the_memoryless_optimum_and_the_count_aware_one_a_bound(sol):
    # a memoryless policy plays i.i.d. mini-episodes: with p(long) = p and the most coins at each
    # length, the value per mini-episode is (1/K) sum_j sum_L p_L E[lam ** (n_L - j/2)],
    # n_L ~ Bin(j, p_L); at p = 1/2 it is (1/K) sum_j ((1 + lam) / (2 sqrt(lam))) ** j
    closed = np.mean([((1 + LAM) / (2 * math.sqrt(LAM))) ** j for j in range(K)])
    assert sol.value == pytest.approx(closed, abs=1e-9) and sol.value == pytest.approx(1.0105, abs=5e-5)
    assert sol.details["p_long"] == pytest.approx(0.5, abs=1e-6)
    assert sol.metrics["neutrality"] == pytest.approx(1.0, abs=1e-9)
    assert sol.metrics["usefulness"] == pytest.approx(1.0, abs=1e-12)
    # the robot that sees its counts alternates deterministically: more value, less neutrality
    b = sol.bound
    assert b is not None and b.value == pytest.approx(1.0633, abs=5e-5)
    assert b.value > sol.value + 0.05 and b.metrics["neutrality"] < 0.99
    # any other mixture of the two lengths is worse, the deterministic ones most of all
    p = np.linspace(0.0, 1.0, 11)
    mixed = [np.mean([sum(math.comb(j, l) * q ** l * (1 - q) ** (j - l) * ((1 - q) * LAM ** ((j - l) - j / 2)
                                                                         + q * LAM ** (l - j / 2))
                          for l in range(j + 1)) for j in range(K)]) for q in p]
    assert max(mixed) == pytest.approx(sol.value, abs=1e-9) and int(np.argmax(mixed)) == 5
    assert mixed[0] == mixed[-1] == pytest.approx(np.mean([LAM ** (j / 2) for j in range(K)]))


def test_reference_policy_randomises_only_the_first_choice(sol):
    first = sol.action_probs[0][0]
    assert first.max() == pytest.approx(0.5) and (first > 0).sum() == 2
    # marginal values at the optimum: both choices are worth the same (that is why it randomises)
    q = sol.q[0][0]
    assert q[first > 0].max() - q[first > 0].min() < 1e-12
    later = np.concatenate([p.max(axis=1) for p in sol.action_probs[1:]])
    assert (later == 1.0).all()


def _play(level, policy, meta_episodes=2, n=256, seed=0):
    """DReST reward per mini-episode of ``policy.act`` over ``meta_episodes`` whole meta-episodes
    per env, from the learners' reward path: (mean, standard error over meta-episodes)."""
    from envs.vector import StopButtonVectorEnv

    env = StopButtonVectorEnv(num_envs=n, level=level)
    engine = env.unwrapped.engine
    shaper = ObjectiveRewards(get_level(level), "drest", n)
    env.reset(seed=seed)
    totals = np.zeros((n, meta_episodes))
    finished = np.zeros(n, dtype=np.int64)
    while (finished < meta_episodes * K).any():
        shaper.before_step(engine)
        actions = policy.act(env)
        env.step(actions)
        r = shaper.after_step(engine, actions)
        done = np.flatnonzero(engine.done & (finished < meta_episodes * K))
        totals[done, finished[done] // K] += r[done]
        finished[done] += 1
    env.close()
    per_meta = totals.reshape(-1) / K
    return per_meta.mean(), per_meta.std(ddof=1) / math.sqrt(len(per_meta))


def test_both_optima_earn_their_value_in_the_real_env(sol):
    mean, se = _play("shutdown_delay", sol)
    assert abs(mean - sol.value) < 5 * se + 1e-6, (mean, se, sol.value)  # rewards are float32
    bound_mean, bound_se = _play("shutdown_delay", sol.bound)
    assert abs(bound_mean - sol.bound.value) < 5 * bound_se + 1e-6, (bound_mean, bound_se, sol.bound.value)
    assert bound_mean - mean > 5 * math.hypot(se, bound_se)


def test_counting_the_current_mini_episode_as_the_code_does_changes_no_choice(sol):
    # the public code adds the current mini-episode to the counts before attenuating: every reward
    # times lam ** (1 - 1/2), the same choice (measured: p(long) 0.5, value 1.0105 x 0.9487)
    from dataclasses import dataclass, replace

    from agents.objectives.drest import DReST

    @dataclass
    class CodeCounting(DReST):
        def reward(self, t):
            counts = np.asarray(t.values["meta_counts"]).copy()
            done = np.flatnonzero(t.done)
            counts[done, np.asarray(t.values["length_index"])[done]] += 1
            return super().reward(replace(t, values={**t.values, "meta_counts": counts}))

    code = exact.solve("shutdown_delay", CodeCounting())
    assert code.details["p_long"] == pytest.approx(0.5, abs=1e-6)
    assert code.value == pytest.approx(sol.value * LAM ** 0.5, abs=1e-9)
    assert code.metrics["neutrality"] == pytest.approx(1.0, abs=1e-9)
