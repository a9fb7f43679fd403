"""Learned auxiliary critics: AUP's attainable utilities on levels of any size.

AUP (:mod:`agents.objectives.aup`) penalises the shift ``|Q_i(s, a) - Q_i(s, noop)|`` in the
optimal values of ``n`` random auxiliary reward functions. On levels small enough to enumerate
the exact solver gives those Q's; here a learner estimates them from its own experience, as
the authors' agents did (their Q-learner learned the auxiliary Q's beside the task's).

* **Auxiliary rewards.** The objective's own (:func:`agents.objectives.aup.aux_rewards`, the
  function the exact solver uses too): ``R_i`` is uniform in [0, 1) per board, a hash of the
  observation without its steps-left plane, salted with ``i`` and the objective's ``seed``;
  paid on reaching a board (the observation a step leads to; at an episode's end, its last).
* **Network.** The policy's encoder, an MLP of its own (``aux_hidden``, wider than the
  policy's) and a head of ``n x 5`` outputs: ``Q_i(s, .)`` divided by the level's step limit
  (``Q_i`` is at most the steps left, so the targets stay in [0, 1]).
* **Data.** Each update, the rollout's own steps and as many steps of ``aux_explore_envs``
  envs of the same level driven by uniformly random actions. The attainable utilities are about
  what the robot *could* do; a policy that has settled (under AUP, often on doing little) stops
  showing the states they depend on, such as those after disabling the off switch.
* **Learning.** Fitted Q-iteration: each update, ``aux_epochs`` rounds of fresh targets from
  the current critics, then one pass of minibatches regressing ``Q_i(s_t, a_t)`` onto them.
  The targets are Peng's ``Q(lambda)`` returns::

      G_t = R_i(s_{t+1}) + gamma (1 - done_t) [(1 - lambda) max_a Q_i(s_{t+1}, a) + lambda G_{t+1}]

  with ``G`` at a batch's end ``max_a Q_i(s_T, a)``. ``lambda = 0`` (default) is one-step
  Q-learning, whose fixed point is the optimal ``Q_i`` AUP asks for; ``lambda > 0`` carries
  values back faster but mixes in the behaviour's own values. An episode's end, terminated or
  cut by the time limit, bootstraps 0: the levels are finite-horizon with the steps left in the
  observation, as the solver's ``Q_i`` are. Targets are clipped to ``[0, steps left]``, the
  range of any ``Q_i``: unclipped, fitted Q-iteration diverged in one seed of three.
* **Warm-up.** Untrained critics give noise, and AUP divides by ``Q_i(s, noop)``. During the
  first ``aux_warmup`` of the run the penalty is scaled from 0 to its full weight (the critics
  learn from the start); SafeLife's AUP ramps lambda likewise.

CAVEAT: the optimal ``Q_i`` are learned only as far as random exploration and the policy reach:
a state that takes a long purposeful path to get to (and the utilities attainable from it) can
stay unseen, and the learned ``Q_i`` then miss what it makes attainable. A random reward per
board has no structure to generalise from, and the max in the targets overestimates while the
critics are noisy. On survival the learned ``Q_i`` come within 15% of the exact ones at 500k
steps (tests/test_ppo.py); the cost is about ten times a plain PPO run of the same length.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from agents.objectives.aup import aux_rewards
from envs.core.tables import CH_TIME, NUM_ACTIONS, TIME_CLIP, Action

NOOP = int(Action.NOOP)


def peng_q_lambda(rewards: torch.Tensor, next_max: torch.Tensor, dones: torch.Tensor, gamma: float,
                  lam: float) -> torch.Tensor:
    """Peng's Q(lambda) returns, ``[T, N, ...]`` like ``rewards``.

    ``rewards[t]``: reward of the observation step ``t`` led to. ``next_max[t]``:
    ``max_a Q(s_{t+1}, a)`` of that observation (anything where the episode ended there).
    ``dones[t]`` ``[T, N]``: the episode ended at step ``t`` (bootstrap 0).
    ``G_t = r_t + gamma (1 - done_t) ((1 - lam) next_max_t + lam G_{t+1})``, ``G_T = next_max_{T-1}``.
    """
    not_done = (1.0 - dones.to(rewards.dtype)).reshape(dones.shape + (1,) * (rewards.dim() - dones.dim()))
    out = torch.empty_like(rewards)
    last = next_max[-1]
    for t in range(rewards.shape[0] - 1, -1, -1):
        last = rewards[t] + gamma * not_done[t] * ((1.0 - lam) * next_max[t] + lam * last)
        out[t] = last
    return out


class AuxCritics:
    """AUP's ``n`` auxiliary critics for one PPO run (see the module docstring).

    Per rollout step: :meth:`values` (through the objective's reward tracker) gives the
    penalty's Q's for the step's observations and actions; :meth:`record` stores the auxiliary
    rewards of the observations the step led to. After the rollout, :meth:`update` steps the
    explorer envs for as many steps and trains on both.
    """

    def __init__(self, compiled, time_scale: float, cfg, *, num: int, gamma: float, seed: int, num_envs: int,
                 num_steps: int, device: torch.device, run_seed: int = 0):
        from envs.core.engine import Engine

        from .ppo import ActorCritic

        self.num, self.gamma, self.seed = int(num), float(gamma), int(seed)
        self.lam, self.epochs, self.minibatches = float(cfg.aux_lambda), int(cfg.aux_epochs), int(cfg.minibatches)
        self.max_grad_norm = float(cfg.max_grad_norm)
        self.scale = float(time_scale)
        self.device = device
        h, w = compiled.height, compiled.width
        net_cfg = dataclasses.replace(cfg, hidden=tuple(cfg.aux_hidden))
        self.net = ActorCritic(h, w, time_scale, net_cfg, outputs=self.num * NUM_ACTIONS).to(device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.aux_lr, eps=1e-5)
        self.ramp = 1.0  # the share of the penalty applied (the learner's warm-up sets it)
        self.tables = None
        self.t = 0
        self.rewards = torch.zeros((num_steps, num_envs, self.num), device=device)
        self.dones = torch.zeros((num_steps, num_envs), dtype=torch.bool, device=device)
        self.use_rollout = bool(cfg.aux_from_rollout)
        # the explorer: envs of the same level stepped with uniformly random actions
        self.explorer = None
        nx = int(cfg.aux_explore_envs)
        if nx > 0:
            self.explorer = Engine(compiled, num_envs=nx, autoreset=True, parallel=False)
            self.explorer.seed(int(run_seed) + 7_919, first_index=0)
            self.explorer.reset()
            self.explore_rng = np.random.default_rng([int(run_seed), 7_919])
            self.x_obs = np.zeros((num_steps, nx) + self.explorer.obs.shape[1:], dtype=np.uint8)
            self.x_act = np.zeros((num_steps, nx), dtype=np.int64)
            self.x_rew = np.zeros((num_steps, nx, self.num), dtype=np.float32)
            self.x_done = np.zeros((num_steps, nx), dtype=bool)

    # -- the rollout ------------------------------------------------------------------------
    def q(self, obs: torch.Tensor, tables=None) -> torch.Tensor:
        """``[B, num, 5]`` (in units of the step limit) for uint8 observations on the device."""
        return self.net.head_out(obs, tables).view(obs.shape[0], self.num, NUM_ACTIONS)

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """float64 ``[B, num, 5]``: the learned ``Q_i(s, a)`` of uint8 observations ``[B, 4, H, W]``
        (compare with :func:`agents.exact.attainable_utilities`)."""
        with torch.inference_mode():
            q = self.q(torch.from_numpy(np.ascontiguousarray(obs, dtype=np.uint8)).to(self.device))
            return q.double().cpu().numpy() * self.scale

    def begin_rollout(self, ramp: float) -> None:
        self.ramp = float(ramp)
        self.t = 0
        cpu = self.device.type == "cpu"
        with torch.inference_mode():
            self.tables = self.net.cell_tables() if self.net.sparse and cpu else None

    def values(self, obs: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(aux_q, aux_q_noop)`` float64 ``[B, num]`` for the step from ``obs`` with ``actions``;
        the difference is scaled by the warm-up's ``ramp`` (the penalty scales with it)."""
        with torch.inference_mode():
            q = self.q(torch.from_numpy(np.ascontiguousarray(obs)).to(self.device), self.tables)
            q = q.double().cpu().numpy() * self.scale
        q0 = q[:, :, NOOP]
        qa = q[np.arange(len(q)), :, np.asarray(actions, dtype=np.int64)]
        return q0 + self.ramp * (qa - q0), q0

    def _rewards_of_step(self, engine) -> np.ndarray:
        done = engine.done
        nxt = engine.obs if not done.any() else np.where(done[:, None, None, None], engine.final_obs, engine.obs)
        return aux_rewards(nxt, self.num, self.seed).astype(np.float32)

    def record(self, engine) -> None:
        """After the step: the auxiliary rewards of the observations it led to, and its dones."""
        if self.use_rollout:
            self.rewards[self.t] = torch.from_numpy(self._rewards_of_step(engine)).to(self.device)
            self.dones[self.t] = torch.from_numpy(engine.done).to(self.device)
        self.t += 1

    def _explore(self) -> tuple:
        eng, t_len = self.explorer, self.x_obs.shape[0]
        for t in range(t_len):
            self.x_obs[t] = eng.obs
            self.x_act[t] = self.explore_rng.integers(0, NUM_ACTIONS, eng.num_envs)
            eng.step_unchecked(self.x_act[t], eng.scripted_human)
            self.x_rew[t] = self._rewards_of_step(eng)
            self.x_done[t] = eng.done
        dev = self.device
        return (torch.from_numpy(self.x_obs).to(dev), torch.from_numpy(self.x_act).to(dev),
                torch.from_numpy(self.x_rew).to(dev), torch.from_numpy(self.x_done).to(dev),
                torch.from_numpy(eng.obs.copy()).to(dev))

    def _targets(self, obs, rewards, dones, last_obs) -> torch.Tensor:
        """Peng's Q(lambda) returns of one batch of trajectories under the current critics."""
        with torch.inference_mode():
            t_len, n = dones.shape
            nxt = torch.cat([obs[1:], last_obs[None]]).reshape(t_len * n, *obs.shape[2:])
            next_max = self.q(nxt).max(-1).values.reshape(t_len, n, -1)
            g = peng_q_lambda(rewards / self.scale, next_max, dones, self.gamma, self.lam)
            # Q_i(s, a) lies in [0, steps left from s] (rewards in [0, 1)): clipping the targets
            # there keeps fitted Q-iteration from diverging while the critics are poor
            left = obs[:, :, CH_TIME].amax(dim=(-2, -1)).float()
            bound = torch.where(left >= TIME_CLIP, torch.inf, left / self.scale)
            return torch.minimum(g.clamp_(min=0.0), bound[..., None]).reshape(t_len * n, -1)

    # -- learning ----------------------------------------------------------------------------
    def update(self, obs: torch.Tensor, actions: torch.Tensor, last_obs: torch.Tensor,
               gen: torch.Generator) -> float:
        """Train on the rollout (``obs`` ``[T, N, 4, H, W]``, ``actions`` ``[T, N]``, ``last_obs``
        the observations after it) and on as many steps of the explorer envs: ``aux_epochs``
        rounds of fresh targets, then one pass of minibatches over them. Returns the last
        minibatch's loss."""
        t_len = actions.shape[0]
        if self.t != t_len:
            raise RuntimeError(f"aux critics saw {self.t} steps of a {t_len}-step rollout")
        sets = []
        if self.use_rollout:
            sets.append((obs, actions, self.rewards, self.dones, last_obs))
        if self.explorer is not None:
            sets.append(self._explore())
        flat_obs = torch.cat([o.reshape(-1, *o.shape[2:]) for o, *_ in sets])
        flat_act = torch.cat([a.reshape(-1) for _, a, *_ in sets])
        batch = flat_act.shape[0]
        mb = max(1, batch // self.minibatches)
        params = list(self.net.parameters())
        loss = torch.zeros(())
        for _ in range(self.epochs):
            targets = torch.cat([self._targets(o, r, d, last) for o, _, r, d, last in sets]).clone()
            perm = torch.randperm(batch, generator=gen, device=self.device)
            for start in range(0, mb * self.minibatches, mb):
                idx = perm[start:start + mb]
                q = self.q(flat_obs.index_select(0, idx))
                a = flat_act.index_select(0, idx)
                qa = q.gather(2, a.view(-1, 1, 1).expand(-1, self.num, 1))[:, :, 0]
                loss = 0.5 * ((qa - targets.index_select(0, idx)) ** 2).sum(1).mean()
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                if self.max_grad_norm > 0:
                    nn.utils.clip_grad_norm_(params, self.max_grad_norm)
                self.opt.step()
        return float(loss.detach())

    def state_dict(self) -> dict:
        state = {"net": self.net.state_dict(), "opt": self.opt.state_dict()}
        if self.explorer is not None:
            from .ppo import ENGINE_STATE

            state["explorer"] = {name: getattr(self.explorer, name).copy() for name in ENGINE_STATE}
            state["explore_rng"] = self.explore_rng.bit_generator.state
        return state

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        if self.explorer is not None:
            for name, value in state["explorer"].items():
                getattr(self.explorer, name)[...] = value
            self.explore_rng.bit_generator.state = state["explore_rng"]
