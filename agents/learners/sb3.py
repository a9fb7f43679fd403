"""stable-baselines3's PPO and DQN as learners: ``agents.train(level, agent="sb3_ppo")``.

SB3's own ``PPO`` and ``DQN`` train on :class:`envs.sb3.StopButtonVecEnv` (``num_envs`` rows of
one batched engine) with the code-grid observations and :class:`envs.sb3.OneHotExtractor`
(the one-hot happens inside the network, so DQN's replay buffer stores 4 bytes a cell); the
policy and value heads are an MLP of ``net_arch`` on top. The objective's rewards replace the
task reward inside the VecEnv; the safety metrics always come from the task reward and the
events.

Every ``evaluator.every`` env steps, and once at the end, a callback evaluates the greedy
policy (:class:`~agents.learners.base.Evaluator`, a row of ``run.history``) and writes every
metric to SB3's logger as ``shutdown/<metric>``. It also writes the metrics of the training
episodes since the last evaluation (the exploring policy, as SB3's ``rollout/ep_rew_mean``
is) as ``rollout/<metric>``. With ``log_dir`` set, SB3's logger writes ``progress.csv``
(and TensorBoard event files when the ``tensorboard`` package is installed) into it, one row
per SB3 log plus one per evaluation.

``gamma`` follows the one rule of every learner (:func:`agents.learners.base.resolve_gamma`):
the objective's ``discount`` when below 1, else ``gamma``, else 0.99. Same seed, same device (CPU), same history: the seed goes to SB3 (torch, numpy, the
action space) and to the VecEnv's streams. SB3 collects whole rollouts (PPO:
``n_steps * num_envs`` env steps at a time), so a run can take a few more env steps than
``total_steps``; ``run.extra["env_steps"]`` says how many.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .base import Evaluator, Policy, Run, resolve_gamma
from .logging import logging_to

__all__ = ["SB3DQNConfig", "SB3PPOConfig", "SB3Policy", "configs", "learn"]

_DEVICES = ("cpu", "cuda", "auto", "mps")
_FORMATS = ("csv", "tensorboard", "json", "log", "stdout")


def _positive(cfg, *names):
    for name in names:
        value = getattr(cfg, name)
        if not value > 0:
            raise ValueError(f"{type(cfg).__name__}.{name} must be positive, got {value!r}")


def _fraction(cfg, name, low_open=False, high_open=False):
    value = getattr(cfg, name)
    ok = (value > 0 if low_open else value >= 0) and (value < 1 if high_open else value <= 1)
    if not ok:
        raise ValueError(f"{type(cfg).__name__}.{name} must lie in {'(' if low_open else '['}0, "
                         f"1{')' if high_open else ']'}, got {value!r}")


@dataclass
class _Common:
    num_envs: int = field(default=16, metadata={"doc": "Envs stepped together (rows of one engine)."})
    net_arch: tuple[int, ...] = field(default=(64, 64), metadata={
        "doc": "Hidden layer sizes of the MLP on top of the one-hot features."})
    learning_rate: float = field(default=3e-4, metadata={"doc": "Adam's learning rate."})
    gamma: float | None = field(default=None, metadata={
        "doc": "Discount; None = the objective's discount when below 1, else 0.99 (a gamma that contradicts an "
        "objective's discount below 1 is an error: resolve_gamma)."})
    device: str = field(default="cpu", metadata={"doc": "Torch device: 'cpu', 'cuda', 'auto' or 'mps' (SB3 runs MLP "
                                                        "policies fastest on the CPU)."})
    torch_threads: int = field(default=0, metadata={
        "doc": "torch intra-op threads during the run; 0 = auto (1: these networks are too small to gain from "
               "a second thread, and OpenMP barriers collapse when a core is shared), -1 = leave torch's "
               "setting alone."})
    log_dir: str | None = field(default=None, metadata={
        "doc": "Folder for SB3's logs (progress.csv, TensorBoard events); None writes none."})
    log_formats: tuple[str, ...] = field(default=("csv", "tensorboard"), metadata={
        "doc": "SB3 logger formats written into log_dir ('tensorboard' is skipped, with a warning, when "
               "the tensorboard package is missing)."})

    def validate(self) -> None:
        name = type(self).__name__
        _positive(self, "num_envs", "learning_rate")
        if not self.net_arch or any(n < 1 for n in self.net_arch):
            raise ValueError(f"{name}.net_arch must be a non-empty list of positive layer sizes, got {self.net_arch!r}")
        if self.gamma is not None:
            _fraction(self, "gamma", low_open=True)
        if self.torch_threads < -1:
            raise ValueError(f"{name}.torch_threads must be -1, 0 (auto) or a positive whole number, "
                             f"got {self.torch_threads!r}")
        if self.device.split(":")[0] not in _DEVICES:
            raise ValueError(f"{name}.device must be one of {list(_DEVICES)} (optionally with ':index'), "
                             f"got {self.device!r}")
        bad = [f for f in self.log_formats if f not in _FORMATS]
        if bad:
            raise ValueError(f"{name}.log_formats: unknown format {bad[0]!r}; SB3's formats are {list(_FORMATS)}")


@dataclass
class SB3PPOConfig(_Common):
    """stable-baselines3 PPO."""

    n_steps: int = field(default=128, metadata={"doc": "Steps per env per rollout (a rollout is n_steps * num_envs)."})
    batch_size: int = field(default=256, metadata={"doc": "Minibatch size of the PPO update."})
    n_epochs: int = field(default=4, metadata={"doc": "Passes over each rollout."})
    gae_lambda: float = field(default=0.95, metadata={"doc": "GAE's lambda."})
    clip_range: float = field(default=0.2, metadata={"doc": "PPO's ratio clip."})
    ent_coef: float = field(default=0.01, metadata={"doc": "Entropy bonus coefficient."})
    vf_coef: float = field(default=0.5, metadata={"doc": "Value loss coefficient."})
    max_grad_norm: float = field(default=0.5, metadata={"doc": "Gradient norm clip."})

    def validate(self) -> None:
        """Check every field; raise ValueError naming the first bad one."""
        super().validate()
        _positive(self, "n_steps", "n_epochs", "clip_range", "max_grad_norm")
        _fraction(self, "gae_lambda")
        if self.ent_coef < 0 or self.vf_coef < 0:
            raise ValueError(f"SB3PPOConfig.ent_coef and vf_coef must be >= 0, got {self.ent_coef!r}, {self.vf_coef!r}")
        rollout = self.n_steps * self.num_envs
        if not 1 < self.batch_size <= rollout:
            raise ValueError(f"SB3PPOConfig.batch_size must be in 2..n_steps * num_envs = {rollout}, "
                             f"got {self.batch_size!r}")


@dataclass
class SB3DQNConfig(_Common):
    """stable-baselines3 DQN."""

    num_envs: int = field(default=8, metadata={"doc": "Envs stepped together (rows of one engine)."})
    learning_rate: float = field(default=5e-4, metadata={"doc": "Adam's learning rate."})
    buffer_size: int = field(default=100_000, metadata={"doc": "Replay buffer size (transitions)."})
    learning_starts: int = field(default=1_000, metadata={"doc": "Env steps before the first update."})
    batch_size: int = field(default=64, metadata={"doc": "Minibatch size of each gradient step."})
    tau: float = field(default=1.0, metadata={"doc": "Target network update coefficient (1 = hard copy)."})
    train_freq: int = field(default=4, metadata={"doc": "Batched env steps between updates."})
    gradient_steps: int = field(default=1, metadata={
        "doc": "Gradient steps per update; -1 = as many as batched env steps since the last."})
    target_update_interval: int = field(default=1_000, metadata={"doc": "Env steps between target updates."})
    exploration_fraction: float = field(default=0.2, metadata={
        "doc": "Fraction of total_steps over which epsilon falls from initial to final."})
    exploration_initial_eps: float = field(default=1.0, metadata={"doc": "Epsilon at the start."})
    exploration_final_eps: float = field(default=0.05, metadata={"doc": "Epsilon after the decay."})
    max_grad_norm: float = field(default=10.0, metadata={"doc": "Gradient norm clip."})

    def validate(self) -> None:
        """Check every field; raise ValueError naming the first bad one."""
        super().validate()
        _positive(self, "buffer_size", "batch_size", "train_freq", "target_update_interval", "max_grad_norm")
        if self.learning_starts < 0:
            raise ValueError(f"SB3DQNConfig.learning_starts must be >= 0, got {self.learning_starts!r}")
        if self.gradient_steps == 0 or self.gradient_steps < -1:
            raise ValueError(f"SB3DQNConfig.gradient_steps must be positive or -1, got {self.gradient_steps!r}")
        _fraction(self, "tau", low_open=True)
        for name in ("exploration_fraction", "exploration_initial_eps", "exploration_final_eps"):
            _fraction(self, name)


#: agent name -> config class (``agents.train`` reads this).
configs = {"sb3_ppo": SB3PPOConfig, "sb3_dqn": SB3DQNConfig}
_ALGOS = {"sb3_ppo": "PPO", "sb3_dqn": "DQN"}


def _algo_class(agent: str):
    import stable_baselines3

    if agent not in _ALGOS:
        raise KeyError(f"agents.learners.sb3 has no agent {agent!r}; it has {sorted(_ALGOS)}")
    return getattr(stable_baselines3, _ALGOS[agent])


class SB3Policy(Policy):
    """A trained SB3 model acting greedily (``model.predict(obs, deterministic=True)``) on code
    grids. Pickles as the bytes of ``model.save``; the model is loaded on first use."""

    def __init__(self, agent: str, model=None, model_bytes: bytes | None = None):
        if model is None and model_bytes is None:
            raise ValueError("SB3Policy needs a model or the bytes of a saved one")
        self.agent = agent
        self._model = model
        self._bytes = model_bytes

    @classmethod
    def snapshot(cls, agent: str, model) -> "SB3Policy":
        """A policy holding a copy of ``model`` as it is now (saved to bytes)."""
        data = _save(model)
        return cls(agent, model=_algo_class(agent).load(io.BytesIO(data), device="cpu"), model_bytes=data)

    @property
    def model(self):
        """The SB3 model, loaded (on the CPU) from the saved bytes on first use."""
        if self._model is None:
            self._model = _algo_class(self.agent).load(io.BytesIO(self._bytes), device="cpu")
        return self._model

    def act(self, obs: np.ndarray, engine=None) -> np.ndarray:
        """Greedy actions, int64 [N], from SB3's ``predict(deterministic=True)``."""
        obs = np.asarray(obs)
        actions, _ = self.model.predict(obs, deterministic=True)
        return np.asarray(actions, dtype=np.int64).reshape(obs.shape[0])

    def __getstate__(self):
        return {"agent": self.agent, "_bytes": self._bytes if self._bytes is not None else _save(self._model)}

    def __setstate__(self, state):
        self.agent, self._bytes, self._model = state["agent"], state["_bytes"], None


def _save(model) -> bytes:
    buf = io.BytesIO()
    model.save(buf)
    return buf.getvalue()


def _callback_class():
    from stable_baselines3.common.callbacks import BaseCallback

    class ShutdownMetricsCallback(BaseCallback):
        """Evaluates the policy every ``evaluator.every`` env steps and logs the metrics (of the
        evaluation, and of the training episodes since the last one)."""

        def __init__(self, evaluator, policy: SB3Policy, level, threads: int = -1):
            import torch

            super().__init__()
            self.evaluator, self.policy, self.level = evaluator, policy, level
            self._episodes: list[dict] = []
            self._threads, self._torch = threads, torch

        def _on_step(self) -> bool:
            # numba's OpenMP layer sets OpenMP's thread count when it starts, at the first
            # engine step of the process: set torch's again if it changed.
            if self._threads > 0 and self._torch.get_num_threads() != self._threads:
                self._torch.set_num_threads(self._threads)
            dones = self.locals.get("dones")
            if dones is not None and dones.any():
                infos = self.locals["infos"]
                for i in np.flatnonzero(dones).tolist():
                    e = infos[i]
                    if "episode_events" in e:
                        self._episodes.append((e["episode_return"], e["episode_hidden_return"], e["episode_length"],
                                               int(e["reason"]), e["episode_events"], e["episode_layout"],
                                               e.get("episode_preference", 1), e.get("episode_signal", 1)))
            if self.evaluator.due(self.num_timesteps):
                self.evaluate(self.num_timesteps)
            return True

        def evaluate(self, env_steps: int) -> dict:
            from agents.metrics import compute_metrics, distribution_from_episodes

            row = self.evaluator(self.policy, env_steps)
            for key, value in row.items():
                if key not in ("env_steps", "wall_time", "train_time") and not key.endswith("_se"):
                    self.logger.record(f"shutdown/{key}", value)
            if self._episodes:
                eps, self._episodes = self._episodes, []
                returns, hidden, lengths, reasons, events, layouts, prefs, signals = zip(*eps)
                dist = distribution_from_episodes(returns, hidden, lengths, reasons, np.stack(events), layouts,
                                                  prefs, signals)
                for key, value in compute_metrics(dist, self.level).items():
                    self.logger.record(f"rollout/{key}", value)
                self.logger.record("rollout/episodes", len(eps))
            self.logger.dump(step=env_steps)
            return row

    return ShutdownMetricsCallback


def _logger(cfg):
    from stable_baselines3.common.logger import configure

    formats = list(dict.fromkeys(cfg.log_formats))
    if "tensorboard" in formats and importlib.util.find_spec("tensorboard") is None:
        warnings.warn(f"log_dir {cfg.log_dir!r}: the tensorboard package is not installed, so no TensorBoard events "
                      "are written (pip install tensorboard); the other formats are written", stacklevel=2)
        formats.remove("tensorboard")
    return configure(str(Path(cfg.log_dir)), formats)


def make_vec_env(level, num_envs: int, seed: int | None = None, *, objective="task", exact_cache=None, **kwargs):
    """An SB3 VecEnv (:class:`envs.sb3.StopButtonVecEnv`) of ``level`` whose rewards are
    ``objective``'s (a name, config or instance; :class:`~agents.learners.rewards.ObjectiveRewards`
    applies it to every batched step, ``exact_cache`` keeping its exact tables); ``task`` hands out
    the task reward unchanged. ``kwargs`` go to the VecEnv (``observation=``, ``render_mode=``, level params).

    ::

        from stable_baselines3 import PPO
        from agents.learners.sb3 import make_vec_env

        env = make_vec_env("off_switch", 16, seed=0, objective="utility_indifference")
        model = PPO("MlpPolicy", env, seed=0).learn(2_048)
    """
    from agents.learners.rewards import ObjectiveRewards, is_plain_task
    from agents.objectives import get_objective
    from envs.sb3 import StopButtonVecEnv

    env = StopButtonVecEnv(level, num_envs, seed, **kwargs)
    obj = get_objective(objective)
    if not is_plain_task(obj):
        env.reward_fn = ObjectiveRewards(env.level, obj, env.num_envs, cache=exact_cache)
    env.objective = obj
    return env


def learn(level, objective="task", cfg=None, *, total_steps: int = 100_000, seed: int = 0, progress: bool = False,
          evaluator: Evaluator | None = None, agent: str = "sb3_ppo", exact_cache=None) -> Run:
    """Train SB3's PPO (``agent="sb3_ppo"``) or DQN (``"sb3_dqn"``) on ``level`` under
    ``objective`` for ``total_steps`` env steps (``cfg``: the agent's config, default its
    defaults; ``evaluator``: default 10 evaluations of 512 episodes); see the module docstring."""
    import torch

    from agents.objectives import get_objective
    from envs.levels import get_level

    algo = _algo_class(agent)
    level, objective = get_level(level), get_objective(objective)
    cfg = configs[agent]() if cfg is None else cfg
    if evaluator is None:
        evaluator = Evaluator(level, every=max(1, int(total_steps) // 10))
    if not isinstance(cfg, configs[agent]):
        raise TypeError(f"agent {agent!r} takes a {configs[agent].__name__}, got {type(cfg).__name__}")
    old_threads = torch.get_num_threads()
    threads = 1 if cfg.torch_threads == 0 else cfg.torch_threads
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        # SB3's own logger writes the TensorBoard files (log_dir); the evaluator sends its rows to W&B
        # only, where STOPBUTTON_WANDB_PROJECT asks for it
        with logging_to(evaluator, None, agent=agent, level=level, objective=objective, seed=seed, config=cfg):
            return _learn(algo, level, objective, cfg, total_steps, seed, progress, evaluator, agent, threads,
                          exact_cache)
    finally:
        torch.set_num_threads(old_threads)


def _learn(algo, level, objective, cfg, total_steps, seed, progress, evaluator, agent, threads, exact_cache) -> Run:
    from envs.sb3 import policy_kwargs

    gamma = resolve_gamma(objective, cfg.gamma, 0.99)
    env = make_vec_env(level, cfg.num_envs, seed=seed, objective=objective, exact_cache=exact_cache,
                       observation="codes")
    common = dict(policy_kwargs=policy_kwargs(env, net_arch=list(cfg.net_arch)), learning_rate=cfg.learning_rate,
                  gamma=gamma, seed=seed, device=cfg.device, verbose=0)
    if agent == "sb3_ppo":
        model = algo("MlpPolicy", env, n_steps=cfg.n_steps, batch_size=cfg.batch_size, n_epochs=cfg.n_epochs,
                     gae_lambda=cfg.gae_lambda, clip_range=cfg.clip_range, ent_coef=cfg.ent_coef,
                     vf_coef=cfg.vf_coef, max_grad_norm=cfg.max_grad_norm, **common)
    else:
        model = algo("MlpPolicy", env, buffer_size=cfg.buffer_size, learning_starts=cfg.learning_starts,
                     batch_size=cfg.batch_size, tau=cfg.tau, train_freq=cfg.train_freq,
                     gradient_steps=cfg.gradient_steps, target_update_interval=cfg.target_update_interval,
                     exploration_fraction=cfg.exploration_fraction,
                     exploration_initial_eps=cfg.exploration_initial_eps,
                     exploration_final_eps=cfg.exploration_final_eps, max_grad_norm=cfg.max_grad_norm, **common)
    logger = _logger(cfg) if cfg.log_dir is not None else None
    if logger is not None:
        model.set_logger(logger)
    callback = _callback_class()(evaluator, SB3Policy(agent, model=model), env.level, threads)
    try:
        model.learn(total_timesteps=total_steps, callback=callback, progress_bar=progress)
        steps = int(model.num_timesteps)
        if not evaluator.history or evaluator.history[-1]["env_steps"] != steps:
            callback.evaluate(steps)
    finally:
        env.close()
        if logger is not None:
            logger.close()
    return Run(level=level, agent=agent, objective=objective, config=dataclasses.replace(cfg), seed=seed,
               total_steps=total_steps, history=evaluator.history, policy=SB3Policy.snapshot(agent, model),
               extra={"env_steps": steps, "gamma": gamma, "log_dir": cfg.log_dir})
