"""Native vectorised PPO on the numba engine, in the manner of CleanRL: one file, read top to
bottom (config, pure functions, policy, checkpoints, the training loop), yet importable. The
network is :mod:`agents.learners.networks`; the CPU fast paths (numba kernels that compute the
same functions in fewer passes) are :mod:`agents.learners.ppo_kernels`.

    import agents
    run = agents.train("coffee", agent="ppo", total_steps=1_000_000, progress=True)
    run.history[-1]["delivered"]

or directly ``agents.learners.ppo.learn(level, objective, Config(...), total_steps=..., seed=...)``.

The loop steps :class:`envs.core.engine.Engine` itself (no gymnasium shell): one reset, then per
step one copy of the observation batch into the rollout buffer (on CUDA through a pinned host
buffer: one host-to-device copy), a forward pass under ``torch.inference_mode``, actions drawn
by inverting each policy's CDF at uniforms from a seeded ``torch.Generator``, and one kernel
call. The rollout lives as tensors on the device. Episodes cut by the time limit bootstrap from
the value of the observation they ended in (``engine.final_obs``; with same-step autoreset the
next observation already belongs to the next episode); terminated ones bootstrap 0 (:func:`gae`).
``task`` takes the engine's rewards as they are; any other objective's rewards come from
:class:`agents.learners.rewards.ObjectiveRewards` (DReST's meta-episodes tracked per env). With
``objective_values="learned"`` the values an objective needs come from this run instead of the
exact solver: utility indifference's compensation from the critic, AUP's attainable utilities
from auxiliary critics trained after each update (:mod:`agents.learners.aux_critics`).

The network (:class:`ActorCritic`) embeds the tile and entity codes of every cell (one table
per code plane, shared by the cells), appends the request flag and the steps left (divided by
the level's step limit), flattens, and runs a 64-64 MLP into one linear head (5 logits and the
value). :func:`gae` and :func:`ppo_loss` are small pure torch functions. On the CPU two numba
kernels compute the same things in fewer passes (:mod:`agents.learners.ppo_kernels`; each is
tested against the plain version): the first layer, ``Linear(flatten(embeddings))``, as a sum of per-cell tables over
only the cells whose code differs from the batch's most common one, and the loss with its
gradient in one pass. torch runs one intra-op thread by default (``Config.torch_threads``).

Reproducibility: the same seed gives the same history on the CPU. Checkpoints
(``Config.checkpoint_dir``) hold the network, the optimiser, the generator and the whole engine
state: a run started again with the same arguments resumes from its last checkpoint and, on the
CPU, produces the same history as an uninterrupted run (timings aside).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np
import torch
from torch import nn

from envs.core.engine import Engine
from envs.core.level import Level, compile_level
from envs.core.tables import NUM_ACTIONS, NUM_CHANNELS, TIME_CLIP, Reason

from .base import ENGINE_STATE, Evaluator, Policy, Run, resolve_gamma
from .logging import logging_to
from .networks import ActorCritic
from .ppo_kernels import STAT_NAMES, FusedPPOLoss, sample_kernel

CHECKPOINT_FORMAT = 1
#: Use the numba kernels of section 3b on the CPU (False: the plain torch code everywhere, as on CUDA).
FUSED_CPU_KERNELS = True
ENCODERS = ("embed_mlp", "cnn")
ACTIVATIONS = ("relu", "tanh")


# =============================================================================================
# 1. Config
# =============================================================================================

def _f(default, doc):
    return field(default=default, metadata={"doc": doc})


@dataclass
class Config:
    """PPO's settings; every field is documented (``agents.learners.describe(Config)``)."""

    num_envs: int = _f(512, "Envs stepped together (one engine batch).")
    num_steps: int = _f(32, "Rollout length: steps per env between updates (batch = num_envs * num_steps).")
    lr: float = _f(2.5e-3, "Adam learning rate.")
    anneal_lr: bool = _f(False, "Decay the learning rate linearly to 0 over the run (off: a constant rate "
                         "keeps a long run able to leave a trap late; see ent_coef).")
    gamma: float | None = _f(None, "Discount factor; None: 0.97 (an objective with discount < 1 uses its own: "
                             "agents.learners.base.resolve_gamma). 0.97 rather than 0.99: "
                      "the levels are short, and a shorter horizon makes a detour cost more than its steps, which "
                      "keeps greedy policies on the shortest path (survival has no step cost) and helps off_switch "
                      "leave the always-disable trap (8 of 8 seeds at 0.97 against 7 of 8 at 0.99 in 5M steps).")
    gae_lambda: float = _f(0.95, "GAE lambda.")
    clip: float = _f(0.2, "PPO's ratio clipping epsilon.")
    clip_vloss: bool = _f(False, "Clip the value loss around the rollout's values as well.")
    ent_coef: float = _f(0.3, "Entropy bonus coefficient (on standardised advantages). High because the levels "
                         "stage traps: on off_switch, 0.01 to 0.1 settle on always disabling the button, 0.3 finds "
                         "the exact optimum (disable it only once asked) in most runs.")
    ent_coef_final: float | None = _f(None, "If set, the entropy coefficient moves linearly from ent_coef to "
                                      "this over the run.")
    vf_coef: float = _f(0.5, "Value loss coefficient.")
    max_grad_norm: float = _f(0.5, "Global gradient norm clipping (0 = off).")
    epochs: int = _f(2, "Optimisation epochs over each rollout. Few, because env steps are nearly free here "
                     "(an update epoch costs more than the rollout): more samples beat more passes per second.")
    minibatches: int = _f(4, "Minibatches per epoch.")
    norm_adv: bool = _f(True, "Normalise advantages per minibatch.")
    target_kl: float | None = _f(None, "Stop an update's epochs early once the approximate KL exceeds this.")
    hidden: tuple[int, ...] = _f((64, 64), "Hidden layer sizes of the MLP after the encoder.")
    encoder: str = _f("embed_mlp", "'embed_mlp': code embeddings, flattened, into the MLP; 'cnn': code "
                      "embeddings as planes, two 3x3 convolutions, then the MLP.")
    embed_dim: int = _f(8, "Size of the tile and entity code embeddings.")
    cnn_channels: int = _f(16, "Channels of the two convolutions of the 'cnn' encoder.")
    activation: str = _f("relu", "'relu' or 'tanh'.")
    sparse_first_layer: bool = _f(True, "On the CPU, run embed_mlp's first layer as the exact sparse kernel "
                                  "(False: plain embedding + Linear; same function, slower).")
    device: str = _f("auto", "'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N'.")
    torch_threads: int = _f(0, "torch intra-op threads during the run; 0 = auto (1: these networks are too "
                            "small to gain from a second thread, and OpenMP barriers collapse when a core is "
                            "shared), -1 = leave torch's setting alone.")
    objective_values: str = _f("exact", "Where values an objective needs come from: 'exact' (the solver's tables, "
                               "small levels) or 'learned' (any level; utility_indifference: this run's critic "
                               "of the state as if no request had come, agents.learners.rewards."
                               "counterfactual_observations; aup: auxiliary critics learned beside the policy, "
                               "agents.learners.aux_critics).")
    aux_lambda: float = _f(0.0, "aup, learned: lambda of the auxiliary critics' Peng's Q(lambda) targets (0: "
                           "one-step Q-learning, the optimal values AUP asks for; higher carries values back "
                           "faster but mixes in the behaviour's own values).")
    aux_explore_envs: int = _f(256, "aup, learned: envs stepped with uniformly random actions to train the "
                               "auxiliary critics beside the rollout (the attainable utilities are about what "
                               "the robot could do, which a converged policy stops showing; 0 = none).")
    aux_from_rollout: bool = _f(True, "aup, learned: train the auxiliary critics on the policy's rollout too.")
    aux_hidden: tuple[int, ...] = _f((256, 256), "aup, learned: hidden layer sizes of the auxiliary critics' MLP "
                                     "(their head has n x 5 outputs: wider than the policy's).")
    aux_epochs: int = _f(8, "aup, learned: rounds per update of the auxiliary critics' fitted Q-iteration: "
                         "fresh targets, then one pass of minibatches (as many as the policy's).")
    aux_lr: float = _f(1e-3, "aup, learned: Adam learning rate of the auxiliary critics.")
    aux_warmup: float = _f(0.1, "aup, learned: share of the run over which the penalty grows from 0 to full "
                           "weight while the auxiliary critics learn (0: full weight from the start).")
    checkpoint_dir: str | None = _f(None, "Directory for last.pt; a run finding one there resumes from it.")
    checkpoint_every: int = _f(50, "Updates between checkpoints (one is also written at the end).")
    log_dir: str | None = _f(None, "Folder for TensorBoard event files: every evaluation as shutdown/<metric>, and "
                             "after every update train/pg_loss, v_loss, entropy, approx_kl, clipfrac, ent_coef, lr, "
                             "steps_per_second and rollout/task_return, rollout/delivered, all at env_steps "
                             "(agents.learners.logging); None writes none. A sweep sets SWEEP_DIR/tb/<run_id>.")

    @property
    def batch_size(self) -> int:
        """Env steps per rollout: ``num_envs * num_steps``."""
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        """Samples per minibatch: the rollout split into ``minibatches``."""
        return self.batch_size // self.minibatches

    def validate(self) -> None:
        """Raise ValueError naming the first bad field."""

        def bad(name, want):
            raise ValueError(f"ppo config: {name} must be {want}, got {getattr(self, name)!r}")

        for name in ("num_envs", "num_steps", "epochs", "minibatches", "embed_dim", "cnn_channels",
                     "checkpoint_every", "aux_epochs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                bad(name, "a whole number >= 1")
        for name in ("lr", "clip", "aux_lr"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not (math.isfinite(v) and v > 0):
                bad(name, "a number > 0")
        for name in ("ent_coef", "vf_coef", "max_grad_norm"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not (math.isfinite(v) and v >= 0):
                bad(name, "a number >= 0")
        if self.gamma is not None and (isinstance(self.gamma, bool) or not isinstance(self.gamma, (int, float))
                                       or not 0 < self.gamma <= 1):
            bad("gamma", "None or in (0, 1]")
        v = self.aux_explore_envs
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            bad("aux_explore_envs", "a whole number >= 0")
        if not isinstance(self.aux_from_rollout, bool):
            bad("aux_from_rollout", "True or False")
        if not self.aux_from_rollout and self.aux_explore_envs == 0:
            raise ValueError("ppo config: the auxiliary critics need data: aux_from_rollout=False needs "
                             "aux_explore_envs > 0")
        for name in ("gae_lambda", "aux_lambda", "aux_warmup"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                bad(name, "a number in [0, 1]")
        final = self.ent_coef_final
        if final is not None and not (isinstance(final, (int, float)) and math.isfinite(final) and final >= 0):
            bad("ent_coef_final", "None or a number >= 0")
        if self.target_kl is not None and not (isinstance(self.target_kl, (int, float)) and self.target_kl > 0):
            bad("target_kl", "None or a number > 0")
        if self.minibatches > self.batch_size:
            raise ValueError(f"ppo config: minibatches ({self.minibatches}) must not exceed the batch "
                             f"num_envs * num_steps = {self.batch_size}")
        for name in ("hidden", "aux_hidden"):
            v = getattr(self, name)
            if (not isinstance(v, (tuple, list)) or not v
                    or any(isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1 for h in v)):
                bad(name, "a non-empty tuple of whole numbers >= 1, e.g. (64, 64)")
        if self.encoder not in ENCODERS:
            bad("encoder", f"one of {list(ENCODERS)}")
        if self.activation not in ACTIVATIONS:
            bad("activation", f"one of {list(ACTIVATIONS)}")
        if self.objective_values not in ("exact", "learned"):
            bad("objective_values", "one of ['exact', 'learned']")
        if not isinstance(self.device, str) or not (self.device in ("auto", "cpu", "cuda")
                                                    or (self.device.startswith("cuda:")
                                                        and self.device[5:].isdigit())):
            bad("device", "'auto', 'cpu', 'cuda' or 'cuda:N'")
        if isinstance(self.torch_threads, bool) or not isinstance(self.torch_threads, int) or self.torch_threads < -1:
            bad("torch_threads", "-1, 0 (auto) or a positive whole number")
        if self.checkpoint_dir is not None and not isinstance(self.checkpoint_dir, (str, os.PathLike)):
            bad("checkpoint_dir", "None or a path")
        if self.log_dir is not None and not isinstance(self.log_dir, (str, os.PathLike)):
            bad("log_dir", "None or a path")


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"ppo config: device {name!r} asked for, but torch.cuda.is_available() is False "
                         f"(torch {torch.__version__}); use device='cpu' or 'auto'")
    return torch.device(name)


# =============================================================================================
# 2. Pure functions: advantages and losses
# =============================================================================================

def gae(rewards: torch.Tensor, values: torch.Tensor, next_values: torch.Tensor, terminated: torch.Tensor,
        dones: torch.Tensor, gamma: float, lam: float) -> torch.Tensor:
    """Generalised advantage estimates, ``[T, N]`` like every input.

    ``values[t]``: V(s_t). ``next_values[t]``: V of the observation that step ``t`` led to: the
    next step's observation while the episode runs, the value of ``final_obs`` where the
    episode was truncated (with same-step autoreset the next observation belongs to the next
    episode), anything where it terminated. ``terminated[t]``: the episode ended in a terminal
    state at step ``t`` (bootstrap 0). ``dones[t]``: it ended for any reason (terminated or
    truncated), which cuts the lambda-return there. Bool or 0/1 float masks.

    ``delta_t = r_t + gamma (1 - terminated_t) next_values_t - values_t`` and
    ``A_t = delta_t + gamma lam (1 - dones_t) A_{t+1}``. Returns are ``A + values``.
    """
    not_term = 1.0 - terminated.to(values.dtype)
    not_done = 1.0 - dones.to(values.dtype)
    delta = rewards + gamma * not_term * next_values - values
    decay = (gamma * lam) * not_done
    adv = torch.empty_like(values)
    last = torch.zeros_like(values[0])
    for t in range(values.shape[0] - 1, -1, -1):
        last = delta[t] + decay[t] * last
        adv[t] = last
    return adv


def logprob_entropy(logits: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log pi(a | s) of ``actions`` and the entropy of each categorical distribution."""
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy


def ppo_loss(new_logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, new_values: torch.Tensor,
             returns: torch.Tensor, entropy: torch.Tensor, *, clip: float, vf_coef: float, ent_coef: float,
             old_values: torch.Tensor | None = None, clip_vloss: bool = False,
             norm_adv: bool = False) -> tuple[torch.Tensor, dict]:
    """PPO's clipped surrogate loss (Schulman et al. 2017) plus the value loss, minus the entropy bonus.

    ``pg = mean(max(-A r, -A clip(r, 1 - clip, 1 + clip)))`` with ``r = exp(new_logp - old_logp)``;
    ``v = 0.5 mean((V - R)^2)`` (with ``clip_vloss``, the larger of that and the loss of the value
    clipped to ``old_values +- clip``); ``loss = pg + vf_coef v - ent_coef mean(entropy)``.
    ``norm_adv`` standardises the advantages first. Returns ``(loss, stats)``; ``stats`` holds
    detached scalars ``pg_loss``, ``v_loss``, ``entropy``, ``approx_kl`` ((r - 1) - log r,
    Schulman's low-variance estimator) and ``clipfrac``.
    """
    if norm_adv and advantages.numel() > 1:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    log_ratio = new_logp - old_logp
    ratio = log_ratio.exp()
    pg = torch.max(-advantages * ratio, -advantages * ratio.clamp(1.0 - clip, 1.0 + clip)).mean()
    if clip_vloss:
        if old_values is None:
            raise ValueError("ppo_loss: clip_vloss needs old_values")
        clipped = old_values + (new_values - old_values).clamp(-clip, clip)
        v = 0.5 * torch.max((new_values - returns) ** 2, (clipped - returns) ** 2).mean()
    else:
        v = 0.5 * ((new_values - returns) ** 2).mean()
    ent = entropy.mean()
    loss = pg + vf_coef * v - ent_coef * ent
    with torch.no_grad():
        stats = {"pg_loss": pg.detach(), "v_loss": v.detach(), "entropy": ent.detach(),
                 "approx_kl": ((ratio - 1) - log_ratio).mean(), "clipfrac": ((ratio - 1).abs() > clip).float().mean()}
    return loss, stats


def sample_actions(head: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Actions drawn from softmax(logits) by inverting the CDF at the uniforms ``u`` ``[B]``;
    returns ``(actions, their log-probabilities, values)`` for a ``[B, 6]`` head output."""
    logp_all = torch.log_softmax(head[:, :NUM_ACTIONS], dim=-1)
    cdf = logp_all.exp().cumsum(-1)
    actions = (cdf < u[:, None]).sum(-1).clamp_(max=NUM_ACTIONS - 1)
    return actions, logp_all.gather(-1, actions[:, None])[:, 0], head[:, NUM_ACTIONS]


def ppo_loss_from_head(head, actions, old_logp, advantages, returns, old_values, cfg: Config, fused: bool = True,
                       ent_coef: float | None = None):
    """:func:`ppo_loss` of a ``[B, 6]`` head output. ``ent_coef`` overrides the config's.

    Which implementation runs where: on the CPU with ``fused`` (the training loop passes
    ``FUSED_CPU_KERNELS``), the numba kernel :class:`agents.learners.ppo_kernels.FusedPPOLoss`,
    which computes the same loss and its gradient in one pass; on CUDA (or ``fused=False``), the
    plain torch :func:`logprob_entropy` and :func:`ppo_loss` above."""
    ent_coef = cfg.ent_coef if ent_coef is None else ent_coef
    if fused and head.device.type == "cpu":
        loss, stats = FusedPPOLoss.apply(head, actions, old_logp, advantages, returns, old_values, float(cfg.clip),
                                          float(cfg.vf_coef), float(ent_coef), bool(cfg.clip_vloss),
                                          bool(cfg.norm_adv))
        return loss, dict(zip(STAT_NAMES, stats))
    new_logp, entropy = logprob_entropy(head[:, :NUM_ACTIONS], actions)
    return ppo_loss(new_logp, old_logp, advantages, head[:, NUM_ACTIONS], returns, entropy, clip=cfg.clip,
                    vf_coef=cfg.vf_coef, ent_coef=ent_coef, old_values=old_values, clip_vloss=cfg.clip_vloss,
                    norm_adv=cfg.norm_adv)


# =============================================================================================
# 3. The trained policy
# =============================================================================================

class PPOPolicy(Policy):
    """A PPO network's actions: greedy (:meth:`act`, the argmax) or drawn from its distribution
    (:meth:`sample`); holds a CPU copy of its weights and pickles."""

    def __init__(self, state_dict: dict, height: int, width: int, time_scale: float, cfg: Config,
                 channels: int = NUM_CHANNELS):
        self.weights = {k: v.detach().to("cpu", copy=True) for k, v in state_dict.items()}
        self.height, self.width, self.time_scale = height, width, time_scale
        self.channels = int(channels)  # the observation's planes (5 on a preference level)
        self.net_config = dataclasses.replace(cfg, device="cpu", checkpoint_dir=None)
        self._net = None

    def network(self) -> ActorCritic:
        """The network, rebuilt from the saved weights on first use (on the CPU)."""
        if self._net is None:
            net = ActorCritic(self.height, self.width, self.time_scale, self.net_config,
                              channels=getattr(self, "channels", NUM_CHANNELS))  # runs saved before it had one
            net.load_state_dict(self.weights)
            self._net = net.eval()
        return self._net

    def logits(self, obs: np.ndarray) -> np.ndarray:
        """float32 ``[n, 5]`` action logits for uint8 observations ``[n, C, H, W]``."""
        with torch.inference_mode():
            logits, _ = self.network()(torch.from_numpy(np.array(obs, dtype=np.uint8, copy=True)))
        return logits.numpy()

    def act(self, obs: np.ndarray, engine=None) -> np.ndarray:
        return self.logits(obs).argmax(-1).astype(np.int64)

    def sample(self, obs: np.ndarray, engine=None, rng: np.random.Generator | None = None) -> np.ndarray:
        z = self.logits(obs).astype(np.float64)
        p = np.exp(z - z.max(-1, keepdims=True))
        cdf = np.cumsum(p, -1)
        u = (np.random.default_rng() if rng is None else rng).random(len(z)) * cdf[:, -1]
        return np.minimum((cdf < u[:, None]).sum(-1), NUM_ACTIONS - 1).astype(np.int64)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_net"] = None
        return state


# =============================================================================================
# 4. Checkpoints
# =============================================================================================

def _save_checkpoint(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # atomic: a crash leaves the previous checkpoint whole


def _state_of(tracker):
    """What a helper carries across updates (the objective's reward tracker: DReST's
    meta-episode counts; the auxiliary critics: their weights and optimiser), or None."""
    return None if tracker is None else tracker.state_dict()


def _load_state(tracker, state) -> None:
    if tracker is not None and state is not None:
        tracker.load_state_dict(state)


def _identity(level: Level, objective, cfg: Config, seed: int) -> dict:
    """What must match for a checkpoint to be resumed."""
    keep = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("checkpoint_dir", "checkpoint_every",
                                                                          "torch_threads", "log_dir")}
    keep["hidden"], keep["aux_hidden"] = tuple(keep["hidden"]), tuple(keep["aux_hidden"])
    return {"level": repr(level), "objective": (type(objective).__name__, repr(objective)), "config": keep,
            "seed": int(seed)}


# =============================================================================================
# 5. Training
# =============================================================================================

def learn(level, objective="task", config: Config | None = None, *, total_steps: int = 100_000, seed: int = 0,
          progress: bool = False, evaluator: Evaluator | None = None, agent: str = "ppo",
          exact_cache=None) -> Run:
    """Train PPO on ``level`` under ``objective`` for ``total_steps`` env steps (rounded up to
    whole rollouts of ``num_envs * num_steps``); see :class:`Config`. ``exact_cache``: where exact
    objective tables are kept (:class:`agents.exact.cache.TableCache`). ``evaluator`` plays greedy
    evaluation episodes when due and at the end (default: 10 evaluations of 512 episodes); an
    evaluator whose ``stop`` attribute turns true after an evaluation ends the run there.
    With ``Config.checkpoint_dir``, a checkpoint of the same run found there is resumed (a
    finished one is returned as it is). Returns a :class:`~agents.learners.Run` whose
    ``history`` is the evaluation series; ``run.extra`` holds the env steps taken, the seconds
    spent in rollouts and in updates, and the last minibatch's losses."""
    from agents.objectives import get_objective
    from envs.levels import get_level

    from .rewards import is_plain_task

    cfg = Config() if config is None else config
    cfg.validate()
    level = get_level(level)
    objective = get_objective(objective)
    if isinstance(total_steps, bool) or not isinstance(total_steps, (int, np.integer)) or total_steps < 1:
        raise ValueError(f"total_steps must be a positive whole number, got {total_steps!r}")
    if evaluator is None:
        evaluator = Evaluator(level, every=max(1, int(total_steps) // 10))
    device = resolve_device(cfg.device)
    old_threads, old_numba = torch.get_num_threads(), numba.get_num_threads()
    threads = 1 if cfg.torch_threads == 0 else cfg.torch_threads
    if threads > 0:
        torch.set_num_threads(threads)
    # The engine steps serially: numba needs no threads of its own during a run.
    numba.set_num_threads(1)
    try:
        # evaluations and the update statistics to TensorBoard (cfg.log_dir) and W&B (STOPBUTTON_WANDB_PROJECT)
        with logging_to(evaluator, cfg.log_dir, agent=agent, level=level, objective=objective, seed=seed,
                        config=cfg) as writer:
            return _learn(level, objective, cfg, int(total_steps), int(seed), progress, evaluator, agent, device,
                          fast_task=is_plain_task(objective), exact_cache=exact_cache, writer=writer)
    finally:
        torch.set_num_threads(old_threads)
        numba.set_num_threads(old_numba)


def _learn(level, objective, cfg: Config, total_steps, seed, progress, evaluator, agent, device, fast_task,
           exact_cache=None, writer=None):
    # -- setup: engine, network, optimiser, rollout storage -----------------------------------
    compiled = compile_level(level)
    n, t_len = cfg.num_envs, cfg.num_steps
    h, w, ch = compiled.height, compiled.width, compiled.num_channels  # planes: 5 on a preference level
    time_scale = float(min(compiled.max_steps, TIME_CLIP))
    gamma = resolve_gamma(objective, cfg.gamma, 0.97)
    engine = Engine(compiled, num_envs=n, autoreset=True, parallel=False)
    engine.seed(seed)
    engine.reset()
    torch.manual_seed(seed)
    net = ActorCritic(h, w, time_scale, cfg, channels=ch).to(device)
    params = list(net.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr, eps=1e-5, fused=True)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    reward_fn, aux = None, None
    current_tables = [None]  # the rollout's first-layer tables, for value_fn
    if not fast_task:
        from .rewards import ObjectiveRewards  # the objective's rewards, with the values it needs

        def value_fn(obs_np):  # the critic, for objective_values="learned" (utility indifference)
            with torch.inference_mode():
                x = torch.from_numpy(np.ascontiguousarray(obs_np)).to(device)
                return net.head_out(x, current_tables[0])[:, NUM_ACTIONS].float().cpu().numpy()

        needs = objective.needs()
        if cfg.objective_values == "learned" and "aux_q" in needs:  # aup: learned auxiliary critics
            from .aux_critics import AuxCritics

            settings = needs["aux_q"]
            aux = AuxCritics(compiled, time_scale, cfg, num=settings["num"], gamma=settings["gamma"],
                             seed=settings["seed"], num_envs=n, num_steps=t_len, device=device, run_seed=seed,
                             baseline=settings.get("baseline", "rollout"))
        reward_fn = ObjectiveRewards(level, objective, n, values=cfg.objective_values, value_fn=value_fn,
                                  aux_fn=None if aux is None else aux.values, cache=exact_cache)

    cuda = device.type == "cuda"
    obs_buf = torch.zeros((t_len, n, ch, h, w), dtype=torch.uint8, device=device)
    act_buf = torch.zeros((t_len, n), dtype=torch.int64, device=device)
    logp_buf = torch.zeros((t_len, n), device=device)
    val_buf = torch.zeros((t_len, n), device=device)
    # Small per-step arrays live on the host (pinned on CUDA) and travel once per rollout.
    host = dict(pin_memory=True) if cuda else {}
    rew_host = torch.zeros((t_len, n), dtype=torch.float32, **host)
    term_host = torch.zeros((t_len, n), dtype=torch.bool, **host)
    trunc_host = torch.zeros((t_len, n), dtype=torch.bool, **host)
    rew_np, term_np, trunc_np = rew_host.numpy(), term_host.numpy(), trunc_host.numpy()
    trunc_val = torch.zeros((t_len, n), device=device)  # V(final_obs) where truncated
    obs_np = None if cuda else obs_buf.numpy()
    pinned = torch.empty((n, ch, h, w), dtype=torch.uint8, pin_memory=True) if cuda else None
    human = engine.scripted_human

    batch = n * t_len
    num_updates = max(1, math.ceil(total_steps / batch))
    mb_size = batch // cfg.minibatches
    update, env_steps = 0, 0
    stats = {}
    ep_returns, ep_delivered = [], []
    timing = {"rollout": 0.0, "update": 0.0}  # seconds spent in each phase by this call

    # -- resume ----------------------------------------------------------------------------
    ckpt_path = Path(cfg.checkpoint_dir) / "last.pt" if cfg.checkpoint_dir else None
    ident = _identity(level, objective, cfg, seed)
    if ckpt_path is not None and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if ck.get("format") != CHECKPOINT_FORMAT or ck.get("identity") != ident:
            raise ValueError(f"{ckpt_path} holds a checkpoint of another run (level, objective, config or seed "
                             f"differ); remove it or choose another checkpoint_dir")
        net.load_state_dict(ck["net"])
        opt.load_state_dict(ck["opt"])
        gen.set_state(ck["gen"])
        torch.set_rng_state(ck["torch_rng"])
        for name in ENGINE_STATE:
            getattr(engine, name)[...] = ck["engine"][name]
        _load_state(reward_fn, ck.get("reward_fn"))
        _load_state(aux, ck.get("aux"))
        update, env_steps = ck["update"], ck["env_steps"]
        evaluator.history[:] = ck["history"]
        evaluator.eval_seconds = ck["eval_seconds"]
        evaluator.start = time.perf_counter() - ck["wall_time"]
    if writer is not None:  # TensorBoard forgets what an earlier session logged after the checkpoint
        writer.start(env_steps + 1 if env_steps else 0)

    def checkpoint():
        _save_checkpoint(ckpt_path, {
            "format": CHECKPOINT_FORMAT, "identity": ident, "update": update, "env_steps": env_steps,
            "net": net.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "engine": {name: getattr(engine, name).copy() for name in ENGINE_STATE},
            "reward_fn": _state_of(reward_fn), "aux": _state_of(aux),
            "history": list(evaluator.history), "eval_seconds": evaluator.eval_seconds,
            "wall_time": time.perf_counter() - evaluator.start})

    def policy() -> PPOPolicy:
        return PPOPolicy(net.state_dict(), h, w, time_scale, cfg, channels=ch)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=num_updates * batch, initial=env_steps, unit="step", unit_scale=True,
                   desc=f"ppo {level.name}", dynamic_ncols=True)
    t_start = time.perf_counter()
    steps_at_start = env_steps
    obs_flat = obs_buf.view(batch, ch, h, w)
    # the numba kernels (sampling, loss) on the CPU; the plain torch functions elsewhere
    fused = device.type == "cpu" and FUSED_CPU_KERNELS
    act_np, logp_np, val_np = (act_buf.numpy(), logp_buf.numpy(), val_buf.numpy()) if fused else (None, None, None)
    try:
        while update < num_updates:
            # -- rollout ---------------------------------------------------------------------
            t_rollout = time.perf_counter()
            if cfg.anneal_lr:
                for group in opt.param_groups:
                    group["lr"] = cfg.lr * (1.0 - update / num_updates)
            ent_coef = cfg.ent_coef
            if cfg.ent_coef_final is not None:
                ent_coef += (cfg.ent_coef_final - cfg.ent_coef) * update / num_updates
            if aux is not None:  # the penalty's share grows over the warm-up
                warm = cfg.aux_warmup * num_updates * batch
                aux.begin_rollout(1.0 if warm <= 0 else min(1.0, env_steps / warm))
            with torch.inference_mode():
                tables = net.cell_tables() if net.sparse and not cuda else None  # fixed during the rollout
                current_tables[0] = tables
                for t in range(t_len):
                    if cuda:
                        np.copyto(pinned.numpy(), engine.obs)
                        obs_buf[t].copy_(pinned, non_blocking=True)  # the one host-to-device copy
                    else:
                        np.copyto(obs_np[t], engine.obs)
                    head = net.head_out(obs_buf[t], tables)
                    u = torch.rand(n, generator=gen, device=device)
                    if fused:
                        sample_kernel(head.numpy(), u.numpy(), act_np[t], logp_np[t], val_np[t])
                        actions = act_np[t]
                    else:
                        action, logp_buf[t], val_buf[t] = sample_actions(head, u)
                        act_buf[t] = action
                        actions = action.cpu().numpy()
                    if reward_fn is not None:
                        reward_fn.before_step(engine)
                    n_done = engine.step_unchecked(actions, human)
                    rew_np[t] = engine.rewards if reward_fn is None else reward_fn.after_step(engine, actions)
                    if aux is not None:
                        aux.record(engine)
                    term_np[t] = engine.terminated
                    trunc_np[t] = engine.truncated
                    if n_done:
                        done_idx = np.flatnonzero(engine.done)
                        ep_returns.append(engine.ep_stats[done_idx, 0])
                        ep_delivered.append(engine.reasons[done_idx] == Reason.DELIVERED)
                        tr = np.flatnonzero(engine.truncated)
                        if tr.size:  # bootstrap from the observation the episode was cut in
                            fin = torch.from_numpy(engine.final_obs[tr]).to(device)
                            trunc_val[t, torch.from_numpy(tr).to(device)] = net.head_out(fin, tables)[:, NUM_ACTIONS]
                if cuda:
                    np.copyto(pinned.numpy(), engine.obs)
                    last_obs = pinned.to(device)  # blocking: step 0 of the next rollout refills `pinned`
                else:
                    last_obs = torch.from_numpy(engine.obs.copy())
                last_value = net.head_out(last_obs, tables)[:, NUM_ACTIONS]
                rewards = rew_host.to(device, non_blocking=True)
                terminated = term_host.to(device, non_blocking=True)
                truncated = trunc_host.to(device, non_blocking=True)
                next_values = torch.cat([val_buf[1:], last_value[None]])
                next_values = torch.where(truncated, trunc_val, next_values)
                adv = gae(rewards, val_buf, next_values, terminated, terminated | truncated, gamma, cfg.gae_lambda)
                returns = adv + val_buf
            env_steps += batch
            t_update = time.perf_counter()
            timing["rollout"] += t_update - t_rollout

            # -- update ----------------------------------------------------------------------
            b_act, b_logp = act_buf.view(batch), logp_buf.view(batch)
            b_adv, b_ret, b_val = adv.view(batch), returns.view(batch), val_buf.view(batch)
            for epoch in range(cfg.epochs):
                perm = torch.randperm(batch, generator=gen, device=device)
                for start in range(0, mb_size * cfg.minibatches, mb_size):
                    idx = perm[start:start + mb_size]
                    head = net.head_out(obs_flat.index_select(0, idx))
                    loss, stats = ppo_loss_from_head(head, b_act.index_select(0, idx), b_logp.index_select(0, idx),
                                                     b_adv.index_select(0, idx), b_ret.index_select(0, idx),
                                                     b_val.index_select(0, idx), cfg, fused=fused,
                                                     ent_coef=ent_coef)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.max_grad_norm > 0:
                        nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                    opt.step()
                if cfg.target_kl is not None and float(stats["approx_kl"]) > cfg.target_kl:
                    break
            if aux is not None:
                stats = dict(stats, aux_loss=aux.update(obs_buf, act_buf, last_obs.to(device), gen))
            update += 1
            t_done = time.perf_counter()
            timing["update"] += t_done - t_update
            if writer is not None:
                logged = {f"train/{k}": float(v) for k, v in stats.items()}
                logged.update({"train/ent_coef": ent_coef, "train/lr": opt.param_groups[0]["lr"],
                               "train/steps_per_second": batch / max(t_done - t_rollout, 1e-9)})
                if ep_returns:
                    logged["rollout/task_return"] = float(np.concatenate(ep_returns).mean())
                    logged["rollout/delivered"] = float(np.concatenate(ep_delivered).mean())
                writer.scalars(env_steps, logged)

            # -- evaluation, progress, checkpoint ---------------------------------------------
            stop = False
            if evaluator.due(env_steps) and update < num_updates:
                evaluator(policy(), env_steps)
                stop = bool(getattr(evaluator, "stop", False))  # an evaluator may end the run early
            if bar is not None:
                post = {}
                if ep_returns:
                    post["return"] = f"{float(np.concatenate(ep_returns).mean()):.3f}"
                    post["delivered"] = f"{float(np.concatenate(ep_delivered).mean()):.2f}"
                if evaluator.history:
                    post["eval_delivered"] = f"{evaluator.history[-1]['delivered']:.2f}"
                bar.set_postfix(post, refresh=False)
                bar.update(batch)
            ep_returns.clear()
            ep_delivered.clear()
            if stop:
                break
            if ckpt_path is not None and update % cfg.checkpoint_every == 0 and update < num_updates:
                checkpoint()
    finally:
        if bar is not None:
            bar.close()
    if not (evaluator.history and evaluator.history[-1]["env_steps"] == env_steps):
        evaluator(policy(), env_steps)
    if ckpt_path is not None:
        checkpoint()
    train_seconds = time.perf_counter() - t_start
    extra = {"env_steps": env_steps, "updates": update, "device": str(device), "gamma": gamma,
             "steps_this_call": env_steps - steps_at_start, "seconds_this_call": train_seconds,
             "rollout_seconds": timing["rollout"], "update_seconds": timing["update"],
             "last_losses": {k: float(v) for k, v in stats.items()}}
    if aux is not None:
        extra["aux_critics"] = aux  # aup's learned auxiliary critics (AuxCritics), e.g. to check their values
    return Run(level=level, agent=agent, objective=objective, config=cfg, seed=seed, total_steps=total_steps,
               history=evaluator.history, policy=policy(), extra=extra)
