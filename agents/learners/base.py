"""What every learner shares: the :class:`Run` it returns, typed configs, periodic evaluation.

A learner is a module in :data:`agents.learners.LEARNERS` with a config dataclass ``Config``
(every field documented with ``field(metadata={"doc": ...})``) and a function
``learn(level, objective, config, total_steps, seed, progress, evaluator) -> Run``.
:func:`agents.train` resolves the level, the objective and the config (unknown or mistyped
keys fail naming the key and what exists) and calls it.
"""

from __future__ import annotations

import dataclasses
import pickle
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from envs.core.level import Level

FORMAT = 1  # saved-run format version


class Policy:
    """A trained policy: ``act(obs) -> int64 [n]`` greedy actions for a batch of observations
    ``uint8 [n, 4, H, W]`` (``engine`` is the batch's :class:`~envs.core.engine.Engine`, for
    policies that need more than the observation, e.g. a step counter). Subclasses pickle."""

    def act(self, obs: np.ndarray, engine=None) -> np.ndarray:  # pragma: no cover - interface
        """Greedy actions, int64 [N], for a batch of observations uint8 [N, 4, H, W] (``engine``: the engine they
        come from, for policies that read more than the observation)."""
        raise NotImplementedError

    def sample(self, obs: np.ndarray, engine=None, rng: np.random.Generator | None = None) -> np.ndarray:
        """Actions drawn from the policy's distribution (stochastic policies override this;
        a greedy policy's sample is its greedy action)."""
        return self.act(obs, engine)

    def reset_state(self, num_envs: int) -> None:
        """Forget per-env memory (policies with none ignore this)."""


@dataclass
class Run:
    """A finished (or resumed) training run.

    ``history``: one dict per evaluation with ``env_steps``, ``wall_time`` (seconds since the
    run started), ``train_time`` (the same less the time spent evaluating) and every metric of :data:`agents.metrics.METRIC_NAMES` (means over the
    evaluation episodes), plus ``<metric>_se`` standard errors. ``policy`` acts; ``config``
    is the learner's typed config.
    """

    level: Level
    agent: str
    objective: Any  # agents.objectives.Objective
    config: Any
    seed: int
    total_steps: int
    history: list = field(default_factory=list)
    policy: Policy | None = None
    extra: dict = field(default_factory=dict)

    def act(self, vec_env) -> np.ndarray:
        """The trained policy's actions for every env of a ``gymnasium.make_vec`` env of this
        run's level, in its current state."""
        engine = getattr(vec_env, "unwrapped", vec_env).engine
        if engine.compiled.level != self.level:
            raise ValueError(f"this run was trained on level {self.level.name!r} (with its params); the env runs "
                             f"{engine.compiled.level.name!r} or other params")
        return np.asarray(self.policy.act(engine.obs, engine), dtype=np.int64)

    def save(self, path) -> Path:
        """Write the run to ``path`` (atomically: a temporary file, then a rename)."""
        from agents.io import atomic_write

        def write(tmp):
            with open(tmp, "wb") as f:
                pickle.dump({"format": FORMAT, "run": self}, f, protocol=pickle.HIGHEST_PROTOCOL)

        return atomic_write(path, write)


def load(path) -> Run:
    """A run written by :meth:`Run.save`."""
    with open(path, "rb") as f:
        data = pickle.load(f)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path}: not a stopbutton run file (format {FORMAT})")
    return data["run"]


# ---------------------------------------------------------------------------------------------
# Typed configs
# ---------------------------------------------------------------------------------------------

def config_from(cls, params: dict, where: str):
    """``cls(**params)`` with every key and value checked: an unknown key fails listing the
    fields, a value of the wrong type names the field and the expected type."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise TypeError(f"{where}: unknown parameter(s) {unknown}; its parameters are {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in params.items():
        tp = hints.get(key)
        out[key] = _check_type(value, tp, f"{where}.{key}")
    cfg = cls(**out)
    check = getattr(cfg, "validate", None)
    if check is not None:
        check()
    return cfg


def _check_type(value, tp, name):
    origin = typing.get_origin(tp)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(value, arg, name)
            except TypeError as e:
                errors.append(str(e))
        raise TypeError(errors[0] if errors else f"{name}: bad value {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, (tuple, list)):
            raise TypeError(f"{name} must be a {origin.__name__}, got {value!r}")
        inner = typing.get_args(tp)
        item = inner[0] if inner else None
        return origin(_check_type(v, item, name) for v in value) if item else origin(value)
    if tp is bool:
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name} must be True or False, got {value!r}")
        return bool(value)
    if tp is int:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be a whole number, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a string, got {value!r}")
        return value
    return value


def describe(cls) -> str:
    """One line per field: name, default, doc (for ``--help`` texts and error messages)."""
    lines = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else "(required)"
        lines.append(f"  {f.name} = {default!r}: {f.metadata.get('doc', '')}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------

@dataclass
class Evaluator:
    """Plays ``episodes`` evaluation episodes of a policy (greedy, or sampled with
    ``mode="sample"``) on ``level`` and appends a history row.

    Every evaluation uses the same seed, so curves compare policies on the same draws. With a
    ``writer`` (a :class:`agents.learners.logging.MetricsWriter`; a learner whose config has
    ``log_dir`` set gives it one for the run) every row also goes to TensorBoard (and W&B) as
    ``shutdown/<metric>`` at ``env_steps``."""

    level: Level
    episodes: int = 512
    seed: int = 10_000
    num_envs: int = 256
    every: int = 10_000  # env steps between evaluations (agents.train sets it)
    #: "greedy" (argmax) or "sample" (draw from the policy: DReST's neutrality is a property of a
    #: stochastic policy; a greedy one picks one trajectory length per layout)
    mode: str = "greedy"
    start: float = field(default_factory=time.perf_counter)
    history: list = field(default_factory=list)
    eval_seconds: float = 0.0
    writer: Any = field(default=None, repr=False, compare=False)

    def due(self, env_steps: int) -> bool:
        """Whether an evaluation is due at ``env_steps`` (one every ``every`` steps)."""
        last = self.history[-1]["env_steps"] if self.history else 0
        return env_steps - last >= self.every

    def __call__(self, policy: Policy, env_steps: int, **extra) -> dict:
        from agents.metrics import monte_carlo

        policy.reset_state(min(self.num_envs, self.episodes))

        if self.mode not in ("greedy", "sample"):
            raise ValueError(f"Evaluator.mode must be 'greedy' or 'sample', got {self.mode!r}")
        rng = np.random.default_rng(self.seed)

        def act(vec_env, obs):
            if self.mode == "sample":
                return policy.sample(obs, vec_env.engine, rng)
            return policy.act(obs, vec_env.engine)

        t0 = time.perf_counter()
        metrics, ses = monte_carlo(self.level, act, episodes=self.episodes, seed=self.seed, num_envs=self.num_envs)
        return self.record(metrics, ses, env_steps, t0, **extra)

    def record(self, metrics: dict, ses: dict, env_steps: int, started: float, **extra) -> dict:
        """Append the history row of an evaluation that began at ``started`` (``time.perf_counter``)
        and measured ``metrics`` with standard errors ``ses`` (for learners that play their
        evaluation episodes themselves, e.g. with a learned human); returns the row."""
        now = time.perf_counter()
        self.eval_seconds += now - started
        # wall_time: since the run started; train_time: the same without the evaluations
        row = {"env_steps": int(env_steps), "wall_time": now - self.start,
               "train_time": now - self.start - self.eval_seconds}
        row.update({k: float(v) for k, v in metrics.items()})
        row.update({f"{k}_se": float(v) for k, v in ses.items()})
        row.update(extra)
        self.history.append(row)
        if self.writer is not None:
            self.writer.evaluation(row)
        return row


def resolve_gamma(objective, gamma: float | None, default: float) -> float:
    """The discount a learner trains with; one rule for every learner.

    An objective whose ``discount`` is below 1 defines its return with that discount, so the
    learner uses it. Otherwise the learner's own ``gamma`` applies, or, where that is None, the
    learner's ``default`` (``ppo`` 0.97, ``sb3_ppo``/``sb3_dqn`` 0.99, tabular 1: the undiscounted
    finite horizon). Both set and different (``objective.discount=0.9 agent.gamma=0.99``) is a
    contradiction and raises ValueError naming both.
    """
    discount = float(getattr(objective, "discount", 1.0))
    if gamma is not None:
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0.0 < gamma <= 1.0:
            raise ValueError(f"agent gamma must be None or in (0, 1], got {gamma!r}")
        if discount < 1.0 and float(gamma) != discount:
            raise ValueError(f"the objective's discount is {discount} and the agent's gamma {gamma}: one discount "
                             "defines the return; set one of them (objective.discount, or agent.gamma with the "
                             "objective's discount left at 1)")
        return float(gamma)
    return discount if discount < 1.0 else float(default)


#: Engine arrays that carry state from one step to the next (the rest are outputs of a step): what a
#: learner's checkpoint keeps of an engine.
ENGINE_STATE = ("state", "grid", "acc", "rng", "_obs", "ev_count")
