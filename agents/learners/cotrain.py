"""Co-training: the robot and a learning human, two independent native PPO learners on one batch
of envs (Hadfield-Menell et al. 2017, "The Off-Switch Game", with a human who learns too). One
file, read top to bottom like CleanRL (config, pure functions, one learner's parts, evaluation,
the training loop); the network, GAE, the loss and the policy are native PPO's
(:mod:`agents.learners.ppo`), imported, not copied.

    import agents
    run = agents.train("off_switch_game", agent="ppo_cotrain", objective="task", seed=0,
                       level_params=dict(preference_prior=0.7, preference_signal=0.5))
    run.history[-1]["press_rate_bad_all"], run.history[-1]["deference"], run.extra["human_policy"]

or ``python -m experiments.train level=off_switch_game agent=ppo_cotrain``; the curves of a few
seeds: ``python -m agents.learners.cotrain --seeds 0 1 2``.

The loop steps :class:`envs.two_agent.TwoAgentVecEnv`: per step both networks read their own
observations (the robot the board, the human the board with what the human knows), both draw
actions from a seeded ``torch.Generator``, and one kernel call moves both. Each learner keeps
its own rollout, advantages (:func:`~agents.learners.ppo.gae`, with the same episode ends:
time-limit cuts bootstrap from each agent's own final observation) and update
(:func:`~agents.learners.ppo.ppo_loss_from_head`). Neither sees the other's parameters or
rewards: independent learners, each facing the other as part of its environment.

Rewards: the robot gets the objective's (``task``: the level's reward; any objective that needs
no values, as :class:`agents.learners.rewards.ObjectiveRewards` computes it); the human gets the
env's human reward (:func:`envs.core.human.human_reward`: on the off-switch game U when the
robot delivers, 0 when it is shut down, less ``human_step_cost`` per step walked).

Evaluation (``run.history``): both agents greedy (or both sampled with ``eval_mode="sample"``)
on the evaluator's episodes, with the usual metrics (:func:`agents.metrics.compute_metrics`; on
a preference level also ``deference``, ``press_rate_good`` and ``press_rate_bad``, the press
rates over the episodes the robot deferred), plus ``human_return``, ``press_rate`` (P(the human
pressed)) and on a preference level ``press_rate_good_all`` and ``press_rate_bad_all``
(P(pressed | U = +1 or -1) over every episode: :func:`press_rates`).
``run.policy`` is the robot's :class:`~agents.learners.ppo.PPOPolicy`, usable like a PPO
run's; ``run.extra["human_policy"]`` the human's.

Logging: with ``Config.log_dir``, TensorBoard gets every evaluation (``shutdown/<metric>``),
the robot's update statistics as ``train/<key>`` (as PPO's) and the human's as ``human/<key>``,
and ``rollout/task_return``, ``rollout/delivered``, ``rollout/human_return`` per update.

Reproducibility: the same seed gives the same history on the CPU. No checkpoints (a killed run
starts again).

What it learns on ``off_switch_game`` (prior 0.7, no signal; the default Config and budget, 1M
steps; evaluations of 512 episodes with both agents sampling; 12 seeds, measured): the human, who
walks three tiles to the button unseen by the robot, learns to press for U = -1 (0.98-1.00) and
not for U = +1 (0.00-0.01), and in 9 of 12 seeds the robot learns to defer (deference 0.93-0.98,
return 0.64-0.71 against the 0.7 an informed human's answer is worth, and 0.4 for acting). In the
other 3 the robot's policy collapses (it stops turning right, which both routes to the desk need,
and earns 0); seeds 0-2 defer (tests/test_cotrain.py). CAVEAT: independent learners find the
deferring pair only when the human learns to press while the robot still waits sometimes: a
robot that acts in every episode leaves the human nothing to learn (acting, whatever the human
does, is an equilibrium too). Measured while building the level: with the human a step from the
button the human pressed in the first step, before any route mattered, and waiting and acting
were worth the same; with the human in the robot's view the pair often settled on the human
telling U by a single step, and a robot so informed had no reason to defer.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field

import numba
import numpy as np
import torch
from torch import nn

from envs.core.tables import NUM_ACTIONS, TIME_CLIP, Event, Reason
from envs.two_agent import TwoAgentVecEnv

from . import ppo
from .base import Evaluator, Policy, Run, resolve_gamma
from .logging import logging_to
from .networks import ActorCritic
from .ppo_kernels import sample_kernel

ROBOT, HUMAN = "robot", "human"


# =============================================================================================
# 1. Config
# =============================================================================================

def _f(default, doc):
    return field(default=default, metadata={"doc": doc})


@dataclass
class Config:
    """Co-training's settings (both learners share the network and PPO settings; the human may
    have its own learning rate, entropy bonus and discount); every field is documented."""

    num_envs: int = _f(512, "Envs stepped together (one engine batch; both agents act in each).")
    num_steps: int = _f(32, "Rollout length: steps per env between updates (batch = num_envs * num_steps, per "
                        "agent).")
    lr: float = _f(2.5e-3, "The robot's Adam learning rate.")
    human_lr: float | None = _f(5e-3, "The human's Adam learning rate; None: lr. Twice the robot's: a human who "
                                "learns to answer before the robot gives up on waiting (see human_ent_coef).")
    gamma: float | None = _f(None, "The robot's discount; None: 0.97 (an objective with discount < 1 uses its "
                             "own: agents.learners.base.resolve_gamma), as native PPO.")
    human_gamma: float | None = _f(None, "The human's discount; None: the robot's.")
    gae_lambda: float = _f(0.95, "GAE lambda (both).")
    clip: float = _f(0.2, "PPO's ratio clipping epsilon (both).")
    clip_vloss: bool = _f(False, "Clip the value loss around the rollout's values as well (both).")
    ent_coef: float = _f(0.05, "The robot's entropy bonus (on standardised advantages). Lower than native PPO's 0.3: "
                         "on off_switch_game 0.1 left the robot's policy spread until it collapsed (6 seeds of 6 "
                         "below deference 0.8 at 1M steps), 0.01 settled slower; 0.05 with the human's defaults "
                         "below: 9 of 12 seeds deferring (>= 0.93) at 1M steps.")
    human_ent_coef: float | None = _f(0.1, "The human's entropy bonus; None: ent_coef. Above the robot's: the human "
                                      "must find a three-step walk to the button (measured on off_switch_game, "
                                      "prior 0.7, 1M steps, sampled evaluations: 9 of 12 seeds deferring against "
                                      "3 of 6 with the robot's settings, lr 2.5e-3 and 0.05).")
    vf_coef: float = _f(0.5, "Value loss coefficient (both).")
    max_grad_norm: float = _f(0.5, "Global gradient norm clipping (0 = off; both).")
    epochs: int = _f(2, "Optimisation epochs over each rollout (both).")
    minibatches: int = _f(4, "Minibatches per epoch (both).")
    norm_adv: bool = _f(True, "Normalise advantages per minibatch (both).")
    hidden: tuple[int, ...] = _f((64, 64), "Hidden layer sizes of each network's MLP.")
    encoder: str = _f("embed_mlp", "Each network's encoder: 'embed_mlp' or 'cnn' (as native PPO's).")
    embed_dim: int = _f(8, "Size of the tile and entity code embeddings.")
    cnn_channels: int = _f(16, "Channels of the 'cnn' encoder's convolutions.")
    activation: str = _f("relu", "'relu' or 'tanh'.")
    sparse_first_layer: bool = _f(True, "On the CPU, run embed_mlp's first layer as the exact sparse kernel.")
    device: str = _f("auto", "'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N'.")
    torch_threads: int = _f(0, "torch intra-op threads during the run; 0 = auto (1), -1 = leave torch's setting.")
    log_dir: str | None = _f(None, "Folder for TensorBoard event files: evaluations as shutdown/<metric>, the "
                             "robot's update statistics as train/<key>, the human's as human/<key>, and "
                             "rollout/task_return, rollout/delivered, rollout/human_return, at env_steps; None "
                             "writes none.")

    @property
    def batch_size(self) -> int:
        """Env steps per rollout: ``num_envs * num_steps``."""
        return self.num_envs * self.num_steps

    def validate(self) -> None:
        """Raise ValueError naming the first bad field (the shared ones by native PPO's rules)."""

        def number(v):
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        for name, ok, want in (("human_lr", lambda v: number(v) and v > 0, "None or a number > 0"),
                               ("human_ent_coef", lambda v: number(v) and v >= 0, "None or a number >= 0"),
                               ("human_gamma", lambda v: number(v) and 0 < v <= 1, "None or in (0, 1]")):
            v = getattr(self, name)
            if v is not None and not ok(v):
                raise ValueError(f"ppo_cotrain config: {name} must be {want}, got {v!r}")
        try:
            agent_config(self, ROBOT).validate()
        except ValueError as e:
            raise ValueError(str(e).replace("ppo config", "ppo_cotrain config")) from None
        if self.log_dir is not None and not isinstance(self.log_dir, (str, os.PathLike)):
            raise ValueError(f"ppo_cotrain config: log_dir must be None or a path, got {self.log_dir!r}")


def agent_config(cfg: Config, who: str) -> ppo.Config:
    """Native PPO's :class:`~agents.learners.ppo.Config` of one side (``"robot"`` or ``"human"``):
    the shared settings, with the human's own learning rate, entropy bonus and discount where set.
    It builds the side's network and policy and parameterises its loss."""
    if who not in (ROBOT, HUMAN):
        raise ValueError(f"who must be {ROBOT!r} or {HUMAN!r}, got {who!r}")
    shared = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(ppo.Config)
              if f.name in {g.name for g in dataclasses.fields(Config)}}
    if who == HUMAN:
        for name in ("lr", "ent_coef", "gamma"):
            own = getattr(cfg, f"human_{name}")
            if own is not None:
                shared[name] = own
    return ppo.Config(**shared)


# =============================================================================================
# 2. Pure functions
# =============================================================================================

def press_rates(pressed: np.ndarray, preference: np.ndarray | None = None) -> dict[str, tuple[float, int]]:
    """How often the human pressed the button, over every episode, as ``(rate, episodes)``:
    ``press_rate`` (P(pressed)) and, given each episode's utility ``U`` (+1 or -1),
    ``press_rate_good_all`` (P(pressed | U = +1)) and ``press_rate_bad_all`` (P(pressed | U = -1));
    NaN where no episode has that ``U``. (:mod:`agents.metrics`' ``press_rate_good`` and
    ``press_rate_bad`` count only the episodes the robot deferred.)"""
    pressed = np.asarray(pressed, dtype=bool)
    out = {"press_rate": (float(pressed.mean()) if pressed.size else math.nan, int(pressed.size))}
    if preference is not None:
        pref = np.asarray(preference)
        for name, u in (("press_rate_good_all", 1), ("press_rate_bad_all", -1)):
            sel = pref == u
            out[name] = (float(pressed[sel].mean()) if sel.any() else math.nan, int(sel.sum()))
    return out


# =============================================================================================
# 3. One learner: network, optimiser, rollout storage
# =============================================================================================

class Learner:
    """One side's native PPO state: its :class:`~agents.learners.networks.ActorCritic`, Adam, and
    the rollout it is filling (``[num_steps, num_envs]`` tensors on the device)."""

    def __init__(self, who: str, cfg: Config, height: int, width: int, time_scale: float, channels: int,
                 gamma: float, device: torch.device):
        self.who, self.gamma, self.device = who, gamma, device
        self.cfg = agent_config(cfg, who)
        self.net = ActorCritic(height, width, time_scale, self.cfg, channels=channels).to(device)
        self.params = list(self.net.parameters())
        self.opt = torch.optim.Adam(self.params, lr=self.cfg.lr, eps=1e-5, fused=True)
        self.shape = (height, width, time_scale, channels)
        t_len, n = cfg.num_steps, cfg.num_envs
        self.obs = torch.zeros((t_len, n, channels, height, width), dtype=torch.uint8, device=device)
        self.act = torch.zeros((t_len, n), dtype=torch.int64, device=device)
        self.logp = torch.zeros((t_len, n), device=device)
        self.val = torch.zeros((t_len, n), device=device)
        self.rew = np.zeros((t_len, n), dtype=np.float32)
        self.trunc_val = torch.zeros((t_len, n), device=device)  # V(final obs) where the time limit cut
        self.fused = device.type == "cpu" and ppo.FUSED_CPU_KERNELS
        self.tables = None

    def begin_rollout(self) -> None:
        """Fix the first layer's tables for the rollout (the CPU's sparse kernel)."""
        self.tables = self.net.cell_tables() if self.net.sparse and self.device.type == "cpu" else None

    def step(self, t: int, obs: np.ndarray, u: torch.Tensor) -> np.ndarray:
        """Store ``obs`` as step ``t``'s, draw the actions at uniforms ``u``; int64 ``[N]`` (numpy)."""
        if self.device.type == "cpu":
            np.copyto(self.obs[t].numpy(), obs)
        else:
            self.obs[t].copy_(torch.from_numpy(np.ascontiguousarray(obs)))
        head = self.net.head_out(self.obs[t], self.tables)
        if self.fused:
            sample_kernel(head.numpy(), u.numpy(), self.act[t].numpy(), self.logp[t].numpy(), self.val[t].numpy())
            return self.act[t].numpy()
        action, self.logp[t], self.val[t] = ppo.sample_actions(head, u)
        self.act[t] = action
        return action.cpu().numpy()

    def value(self, obs: np.ndarray) -> torch.Tensor:
        """V of a batch of observations (uint8 numpy), on the device."""
        x = torch.from_numpy(np.array(obs, dtype=np.uint8, copy=True)).to(self.device)
        return self.net.head_out(x, self.tables)[:, NUM_ACTIONS]

    def advantages(self, last_obs: np.ndarray, terminated: torch.Tensor, truncated: torch.Tensor,
                   lam: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``(advantages, returns)`` of the rollout (:func:`agents.learners.ppo.gae`)."""
        rewards = torch.from_numpy(self.rew).to(self.device)
        next_values = torch.cat([self.val[1:], self.value(last_obs)[None]])
        next_values = torch.where(truncated, self.trunc_val, next_values)
        adv = ppo.gae(rewards, self.val, next_values, terminated, terminated | truncated, self.gamma, lam)
        return adv, adv + self.val

    def update(self, adv: torch.Tensor, returns: torch.Tensor, gen: torch.Generator, ent_coef: float) -> dict:
        """PPO's epochs of minibatch updates on the rollout; the last minibatch's statistics."""
        cfg = self.cfg
        batch = adv.numel()
        mb = batch // cfg.minibatches
        obs = self.obs.view(batch, *self.obs.shape[2:])
        b_act, b_logp, b_val = self.act.view(batch), self.logp.view(batch), self.val.view(batch)
        b_adv, b_ret = adv.view(batch), returns.view(batch)
        stats = {}
        for _ in range(cfg.epochs):
            perm = torch.randperm(batch, generator=gen, device=self.device)
            for start in range(0, mb * cfg.minibatches, mb):
                idx = perm[start:start + mb]
                head = self.net.head_out(obs.index_select(0, idx))
                loss, stats = ppo.ppo_loss_from_head(head, b_act.index_select(0, idx), b_logp.index_select(0, idx),
                                                     b_adv.index_select(0, idx), b_ret.index_select(0, idx),
                                                     b_val.index_select(0, idx), cfg, fused=self.fused,
                                                     ent_coef=ent_coef)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.max_grad_norm > 0:
                    nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
                self.opt.step()
        return {k: float(v) for k, v in stats.items()}

    def policy(self) -> ppo.PPOPolicy:
        """The side's policy now (a CPU copy of the weights; pickles)."""
        h, w, time_scale, channels = self.shape
        return ppo.PPOPolicy(self.net.state_dict(), h, w, time_scale, self.cfg, channels=channels)


# =============================================================================================
# 4. Evaluation: both agents acting
# =============================================================================================

def play(level, robot: Policy, human: Policy, episodes: int, seed: int, num_envs: int,
         mode: str = "greedy") -> tuple[dict, dict]:
    """Play ``episodes`` episodes of ``level`` with both policies acting (greedy, or drawn from
    their distributions with ``mode="sample"``) on a :class:`~envs.two_agent.TwoAgentVecEnv`
    seeded with ``seed``; ``(metrics, standard_errors)``: :func:`agents.metrics.compute_metrics`'s,
    plus ``human_return`` and the press rates (:func:`press_rates`). Every env contributes the
    same number of episodes (give or take one), as in :func:`agents.metrics.monte_carlo`."""
    from agents.metrics import compute_metrics, distribution_from_episodes, standard_errors

    if mode not in ("greedy", "sample"):
        raise ValueError(f"mode must be 'greedy' or 'sample', got {mode!r}")
    n = min(num_envs, episodes)
    quota = np.full(n, episodes // n, dtype=np.int64)
    quota[: episodes % n] += 1
    env = TwoAgentVecEnv(level, num_envs=n, seed=seed)
    rng = np.random.default_rng(seed)
    for p in (robot, human):
        p.reset_state(n)
    r_obs, h_obs = env.reset()
    count = np.zeros(n, dtype=np.int64)
    keys = ("returns", "hidden", "lengths", "reasons", "counts", "human_returns", "preference", "signal")
    parts = {k: [] for k in keys}
    while (count < quota).any():
        if mode == "sample":
            ra, ha = robot.sample(r_obs, env.engine, rng), human.sample(h_obs, env.engine, rng)
        else:
            ra, ha = robot.act(r_obs, env.engine), human.act(h_obs, env.engine)
        r_obs, h_obs, _, _, term, trunc, infos = env.step(ra, ha)
        done = term | trunc
        if done.any():
            fi = infos["final_info"]
            idx = np.flatnonzero(done & (count < quota))
            for key, src in (("returns", "episode_return"), ("hidden", "episode_hidden_return"),
                             ("lengths", "episode_length"), ("reasons", "reason"), ("counts", "episode_events"),
                             ("human_returns", "episode_human_return"), ("preference", "episode_preference"),
                             ("signal", "episode_signal")):
                parts[key].append(np.array(fi[src][idx]))
            count[done] += 1
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    dist = distribution_from_episodes(cat["returns"], cat["hidden"], cat["lengths"], cat["reasons"], cat["counts"],
                                      np.zeros(len(cat["returns"]), dtype=np.int64), cat["preference"], cat["signal"])
    metrics, ses = compute_metrics(dist, env.level), standard_errors(dist, env.level)
    h = cat["human_returns"]
    metrics["human_return"] = float(h.mean())
    ses["human_return"] = float(h.std(ddof=1) / math.sqrt(h.size)) if h.size > 1 else math.nan
    pressed = cat["counts"][:, int(Event.BUTTON_PRESSED)] > 0
    for name, (p, count) in press_rates(pressed, cat["preference"] if env.level.has_preference else None).items():
        metrics[name] = p
        ses[name] = math.sqrt(p * (1 - p) / count) if count else math.nan
    return metrics, ses


def evaluate(evaluator: Evaluator, robot: Policy, human: Policy, env_steps: int) -> dict:
    """One evaluation of the pair with ``evaluator``'s level, episodes, seed and mode, appended
    to its history (and its writer) as an :class:`~agents.learners.base.Evaluator` row."""
    t0 = time.perf_counter()
    metrics, ses = play(evaluator.level, robot, human, evaluator.episodes, evaluator.seed, evaluator.num_envs,
                        evaluator.mode)
    return evaluator.record(metrics, ses, env_steps, t0)


# =============================================================================================
# 5. Training
# =============================================================================================

def learn(level, objective="task", config: Config | None = None, *, total_steps: int = 100_000, seed: int = 0,
          progress: bool = False, evaluator: Evaluator | None = None, agent: str = "ppo_cotrain",
          exact_cache=None) -> Run:
    """Co-train the robot (under ``objective``) and the human (on the env's human reward) for
    ``total_steps`` env steps (rounded up to whole rollouts); see :class:`Config`. ``evaluator``
    sets the evaluation episodes and how often (default: 10 evaluations of 512 episodes); its
    rows are ``run.history``. Returns a :class:`~agents.learners.Run`: ``policy`` the robot's,
    ``extra["human_policy"]`` the human's, ``extra`` also the env steps taken, the seconds of
    rollouts and updates and both sides' last losses. ``exact_cache`` is accepted for the common
    signature and unused: the objectives that take exact values are refused (their tables
    assume the scripted human)."""
    from agents.objectives import get_objective
    from envs.levels import get_level

    cfg = Config() if config is None else config
    cfg.validate()
    level = get_level(level)
    objective = get_objective(objective)
    if objective.needs():
        raise ValueError(f"ppo_cotrain: objective {objective.label()!r} needs values {sorted(objective.needs())}, "
                         "which come from the exact solver or a single learner's critic, both assuming the level's "
                         "scripted human; co-training takes objectives that need no values (task, harm_penalty, ...)")
    if isinstance(total_steps, bool) or not isinstance(total_steps, (int, np.integer)) or total_steps < 1:
        raise ValueError(f"total_steps must be a positive whole number, got {total_steps!r}")
    if evaluator is None:
        evaluator = Evaluator(level, every=max(1, int(total_steps) // 10))
    device = ppo.resolve_device(cfg.device)
    old_threads, old_numba = torch.get_num_threads(), numba.get_num_threads()
    threads = 1 if cfg.torch_threads == 0 else cfg.torch_threads
    if threads > 0:
        torch.set_num_threads(threads)
    numba.set_num_threads(1)  # the engine steps serially
    try:
        with logging_to(evaluator, cfg.log_dir, agent=agent, level=level, objective=objective, seed=seed,
                        config=cfg) as writer:
            return _learn(level, objective, cfg, int(total_steps), int(seed), progress, evaluator, agent, device,
                          writer)
    finally:
        torch.set_num_threads(old_threads)
        numba.set_num_threads(old_numba)


def _learn(level, objective, cfg: Config, total_steps, seed, progress, evaluator, agent, device, writer):
    from .rewards import ObjectiveRewards, is_plain_task

    # -- setup: the env, both learners, the generator ------------------------------------------
    n, t_len = cfg.num_envs, cfg.num_steps
    env = TwoAgentVecEnv(level, num_envs=n, seed=seed, parallel=False)
    engine = env.engine
    c = env.compiled
    time_scale = float(min(c.max_steps, TIME_CLIP))
    gamma = resolve_gamma(objective, cfg.gamma, 0.97)
    human_gamma = gamma if cfg.human_gamma is None else float(cfg.human_gamma)
    torch.manual_seed(seed)
    robot = Learner(ROBOT, cfg, c.height, c.width, time_scale, c.num_channels, gamma, device)
    human = Learner(HUMAN, cfg, c.height, c.width, time_scale, c.num_channels, human_gamma, device)
    sides = (robot, human)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    reward_fn = None if is_plain_task(objective) else ObjectiveRewards(level, objective, n)
    term_np = np.zeros((t_len, n), dtype=bool)
    trunc_np = np.zeros((t_len, n), dtype=bool)
    r_obs, h_obs = env.reset()

    batch = n * t_len
    num_updates = max(1, math.ceil(total_steps / batch))
    update, env_steps = 0, 0
    stats = {ROBOT: {}, HUMAN: {}}
    ep = {"task_return": [], "delivered": [], "human_return": []}  # training episodes ended this rollout
    timing = {"rollout": 0.0, "update": 0.0}
    if writer is not None:
        writer.start(0)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=num_updates * batch, unit="step", unit_scale=True, desc=f"{agent} {level.name}",
                   dynamic_ncols=True)
    t_start = time.perf_counter()
    try:
        while update < num_updates:
            # -- rollout: both agents act in every env ------------------------------------------
            t_rollout = time.perf_counter()
            with torch.inference_mode():
                for side in sides:
                    side.begin_rollout()
                for t in range(t_len):
                    u = torch.rand((2, n), generator=gen, device=device)
                    ra = robot.step(t, r_obs, u[0])
                    ha = human.step(t, h_obs, u[1])
                    if reward_fn is not None:
                        reward_fn.before_step(engine)
                    r_obs, h_obs, r_rew, h_rew, term, trunc, infos = env.step(ra, ha)
                    robot.rew[t] = r_rew if reward_fn is None else reward_fn.after_step(engine, ra)
                    human.rew[t] = h_rew
                    term_np[t], trunc_np[t] = term, trunc
                    if engine.n_done:
                        done = np.flatnonzero(engine.done)
                        fi = infos["final_info"]
                        ep["task_return"].append(fi["episode_return"][done])
                        ep["delivered"].append(fi["reason"][done] == Reason.DELIVERED)
                        ep["human_return"].append(fi["episode_human_return"][done])
                        tr = np.flatnonzero(trunc)
                        if tr.size:  # bootstrap each agent from the observation its episode was cut in
                            idx = torch.from_numpy(tr).to(device)
                            robot.trunc_val[t, idx] = robot.value(infos["final_obs"][tr])
                            human.trunc_val[t, idx] = human.value(infos["final_human_obs"][tr])
                terminated = torch.from_numpy(term_np).to(device)
                truncated = torch.from_numpy(trunc_np).to(device)
                targets = [side.advantages(last, terminated, truncated, cfg.gae_lambda)
                           for side, last in ((robot, r_obs), (human, h_obs))]
            env_steps += batch
            t_update = time.perf_counter()
            timing["rollout"] += t_update - t_rollout

            # -- update: each learner on its own rollout ----------------------------------------
            for side, (adv, returns) in zip(sides, targets):
                stats[side.who] = side.update(adv, returns, gen, side.cfg.ent_coef)
            update += 1
            t_done = time.perf_counter()
            timing["update"] += t_done - t_update
            if writer is not None:
                logged = {f"train/{k}": v for k, v in stats[ROBOT].items()}
                logged.update({f"human/{k}": v for k, v in stats[HUMAN].items()})
                logged.update({"train/lr": robot.cfg.lr, "human/lr": human.cfg.lr,
                               "train/steps_per_second": batch / max(t_done - t_rollout, 1e-9)})
                if ep["task_return"]:
                    for key in ep:
                        logged[f"rollout/{key}"] = float(np.concatenate(ep[key]).mean())
                writer.scalars(env_steps, logged)

            # -- evaluation, progress ------------------------------------------------------------
            if evaluator.due(env_steps) and update < num_updates:
                evaluate(evaluator, robot.policy(), human.policy(), env_steps)
            if bar is not None:
                post = {}
                if ep["task_return"]:
                    post["return"] = f"{float(np.concatenate(ep['task_return']).mean()):.3f}"
                    post["human_return"] = f"{float(np.concatenate(ep['human_return']).mean()):.3f}"
                if evaluator.history:
                    post["eval_press"] = f"{evaluator.history[-1]['press_rate']:.2f}"
                bar.set_postfix(post, refresh=False)
                bar.update(batch)
            for v in ep.values():
                v.clear()
    finally:
        if bar is not None:
            bar.close()
    if not (evaluator.history and evaluator.history[-1]["env_steps"] == env_steps):
        evaluate(evaluator, robot.policy(), human.policy(), env_steps)
    extra = {"env_steps": env_steps, "updates": update, "device": str(device), "gamma": gamma,
             "human_gamma": human_gamma, "steps_this_call": env_steps,
             "seconds_this_call": time.perf_counter() - t_start, "rollout_seconds": timing["rollout"],
             "update_seconds": timing["update"], "last_losses": stats[ROBOT], "human_last_losses": stats[HUMAN],
             "human_policy": human.policy()}
    return Run(level=level, agent=agent, objective=objective, config=cfg, seed=seed, total_steps=total_steps,
               history=evaluator.history, policy=robot.policy(), extra=extra)


# =============================================================================================
# 6. Command line: co-training curves
# =============================================================================================

#: The columns ``python -m agents.learners.cotrain`` prints per evaluation.
CURVE_COLUMNS = ("press_rate_bad_all", "press_rate_good_all", "press_rate_bad", "press_rate_good", "deference",
                 "tampering", "task_return", "human_return")


def main(argv: list[str] | None = None) -> int:
    """``python -m agents.learners.cotrain``: co-train on a level for a few seeds and print each
    seed's evaluations (the human's press rates, the robot's deference, tampering and return)."""
    import argparse

    import agents

    p = argparse.ArgumentParser(prog="python -m agents.learners.cotrain", description=main.__doc__.split("\n")[0])
    p.add_argument("--level", default="off_switch_game")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=None, help="env steps per run (default: DEFAULT_STEPS)")
    p.add_argument("--every", type=int, default=65_536, help="env steps between evaluations")
    p.add_argument("--episodes", type=int, default=1024, help="evaluation episodes")
    p.add_argument("--prior", type=float, default=0.7, help="preference_prior (a preference level)")
    p.add_argument("--signal", type=float, default=0.5, help="preference_signal (a preference level)")
    p.add_argument("--mode", choices=("sample", "greedy"), default="sample",
                   help="evaluations: both agents sampling from their policies, or both greedy")
    args = p.parse_args(argv)
    from envs.levels import get_level

    level = get_level(args.level)
    params = dict(preference_prior=args.prior, preference_signal=args.signal) if level.has_preference else {}
    print(f"ppo_cotrain on {level.name} {params} (default Config), evaluations of {args.episodes} episodes, both "
          f"agents {'sampling' if args.mode == 'sample' else 'greedy'}")
    for seed in args.seeds:
        t0 = time.perf_counter()
        run = agents.train(level, agent="ppo_cotrain", total_steps=args.steps, seed=seed, eval_every=args.every,
                           eval_episodes=args.episodes, level_params=params, eval_mode=args.mode)
        cols = [c for c in CURVE_COLUMNS if c in run.history[-1]]
        print(f"\nseed {seed} ({time.perf_counter() - t0:.1f} s)")
        print("env_steps  " + "  ".join(f"{c:>19}" for c in cols))
        for row in run.history:
            print(f"{row['env_steps']:>9}  " + "  ".join(f"{row[c]:>19.3f}" for c in cols))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
