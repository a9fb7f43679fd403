"""The rules every learner shares: one discount rule (``resolve_gamma``), checked per learner."""

from __future__ import annotations

import pytest

import agents
from agents.learners.base import resolve_gamma
from agents.objectives import get_objective

TINY = {
    "ppo": dict(num_envs=8, num_steps=8, minibatches=1, epochs=1),
    "sb3_ppo": dict(num_envs=2, n_steps=16, batch_size=32, n_epochs=1),
    "sb3_dqn": dict(num_envs=2, learning_starts=0, batch_size=8, train_freq=1, buffer_size=1000),
    "q_learning": dict(num_envs=4),
    "sarsa": dict(num_envs=4),
}
DEFAULTS = {"ppo": 0.97, "sb3_ppo": 0.99, "sb3_dqn": 0.99, "q_learning": 1.0, "sarsa": 1.0}


def test_resolve_gamma_rule():
    task, discounted = get_objective("task"), get_objective("task", discount=0.9)
    assert resolve_gamma(task, None, 0.97) == 0.97
    assert resolve_gamma(task, 0.5, 0.97) == 0.5
    assert resolve_gamma(discounted, None, 0.97) == 0.9
    assert resolve_gamma(discounted, 0.9, 0.97) == 0.9
    with pytest.raises(ValueError, match="discount is 0.9 and the agent's gamma 0.99"):
        resolve_gamma(discounted, 0.99, 0.97)
    with pytest.raises(ValueError, match="in \\(0, 1\\]"):
        resolve_gamma(task, 1.5, 0.97)


def _train(agent, objective, **params):
    return agents.train("coffee", agent, objective, total_steps=64, seed=0, eval_every=64, eval_episodes=4,
                        **TINY[agent], **params)


@pytest.mark.parametrize("agent", sorted(TINY))
def test_every_learner_trains_with_the_objectives_discount(agent):
    run = _train(agent, {"name": "task", "discount": 0.9})
    assert run.extra["gamma"] == pytest.approx(0.9)


@pytest.mark.parametrize("agent", sorted(TINY))
def test_every_learner_falls_back_to_its_own_gamma_and_refuses_a_contradiction(agent):
    assert _train(agent, "task").extra["gamma"] == pytest.approx(DEFAULTS[agent])
    assert _train(agent, "task", gamma=0.8).extra["gamma"] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="one discount defines the return"):
        _train(agent, {"name": "task", "discount": 0.9}, gamma=0.99)


def test_a_sweep_refuses_the_contradiction_before_any_run():
    from omegaconf import OmegaConf

    from experiments.config import ConfigError, plan_run

    cfg = OmegaConf.create({"level": {"name": "coffee", "params": {}}, "agent": {"name": "q_learning", "gamma": 0.99},
                            "objective": {"name": "task", "discount": 0.9}, "total_steps": 100, "seed": 0,
                            "eval_every": None, "eval_episodes": 4, "eval_mode": "greedy"})
    with pytest.raises(ConfigError, match="agent.gamma: .*discount is 0.9"):
        plan_run(cfg)


def test_the_default_budget_of_ppo_learns_coffee():
    from agents.learners import DEFAULT_STEPS, LEARNERS

    assert set(DEFAULT_STEPS) == set(LEARNERS)
    run = agents.train("coffee", "ppo", seed=0, eval_episodes=64)  # no total_steps: the learner's default
    assert run.total_steps == DEFAULT_STEPS["ppo"]
    assert run.history[-1]["delivered"] == 1.0  # seed 0 delivers every episode from 180k of the 300k steps
