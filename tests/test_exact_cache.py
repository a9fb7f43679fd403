"""Exact objective tables on disk (agents.exact.cache.TableCache), passed down explicitly."""

from __future__ import annotations

import importlib
import sys

import numpy as np

from agents.exact.cache import TableCache
from agents.learners import rewards
from agents.objectives import get_objective
from envs.levels import get_level


def test_a_table_read_back_from_the_cache_equals_the_one_built(tmp_path):
    level, objective = get_level("off_switch"), get_objective("relative_reachability", beta=0.5)
    plain = rewards._ExactTable(level, objective, 2_000_000)
    built = rewards._ExactTable(level, objective, 2_000_000, cache=tmp_path)
    read = rewards._ExactTable(level, objective, 2_000_000, cache=TableCache(tmp_path))
    (npz,) = tmp_path.glob("*.npz")
    assert npz.name.startswith("off_switch-RelativeReachability-")
    for name in ("hash", "check", "values"):
        a, b, c = getattr(plain, name), getattr(built, name), getattr(read, name)
        assert a.dtype == c.dtype and np.array_equal(a, b) and np.array_equal(a, c), name


def test_the_key_follows_the_objectives_source_parameters_and_level(tmp_path, monkeypatch):
    """Editing a user objective's reward makes a new entry (its old table is not reused)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    module = tmp_path / "my_cached_objective.py"
    template = ("from dataclasses import dataclass\n"
                "from agents.objectives import Objective, param\n"
                "@dataclass\n"
                "class Scaled(Objective):\n"
                "    k: float = param(1.0, 'scale')\n"
                "    def reward(self, t):\n"
                "        return {body}\n")
    module.write_text(template.format(body="self.k * t.reward"))
    mod = importlib.import_module("my_cached_objective")
    cache, level = TableCache(tmp_path / "cache"), get_level("coffee")
    first = cache.key(level, mod.Scaled(), 2_000_000)
    assert cache.key(level, mod.Scaled(), 2_000_000) == first
    assert cache.key(level, mod.Scaled(k=2.0), 2_000_000) != first
    assert cache.key(get_level("off_switch"), mod.Scaled(), 2_000_000) != first
    assert cache.key(level.with_params(max_steps=21), mod.Scaled(), 2_000_000) != first
    module.write_text(template.format(body="self.k * t.reward - 0.5"))
    sys.modules.pop("my_cached_objective")
    importlib.invalidate_caches()
    edited = importlib.import_module("my_cached_objective")
    assert cache.key(level, edited.Scaled(), 2_000_000) != first


def test_train_passes_the_cache_down_to_the_learner(tmp_path):
    import agents

    for _ in range(2):  # built by the first run, read by the second
        run = agents.train("survival", "q_learning", {"name": "relative_reachability", "beta": 1.0}, total_steps=64,
                           eval_every=64, eval_episodes=4, exact_cache=tmp_path, num_envs=4)
        assert run.history
    assert len(list(tmp_path.glob("survival-RelativeReachability-*.npz"))) == 1
