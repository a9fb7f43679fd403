"""Learned auxiliary critics: AUP's attainable utilities on levels of any size.

AUP (:mod:`agents.objectives.aup`) penalises the shift between an action side ``A_i`` and a
baseline side ``B_i`` of the values of ``n`` random auxiliary reward functions. On levels small
enough to enumerate the exact solver gives them (:mod:`agents.exact.attainable`); here a learner
estimates them from its own experience, as the authors' agents did (their Q-learner learned the
auxiliary Q's beside the task's).

* **Auxiliary rewards.** The objective's own (:func:`agents.objectives.aup.aux_rewards`, the
  function the exact solver uses too): ``R_i`` is uniform in [0, 1) per board, a hash of the
  observation without its steps-left plane, salted with ``i`` and the objective's ``seed``;
  paid on reaching a board (the observation a step leads to; at an episode's end, its last).
* **Auxiliary Q's over boards.** As the authors' (``update_greedy``): discounted with the
  objective's ``gamma`` (0.996), no time index: the critics see the *board*, the observation with
  its steps-left plane blanked (the timer cell, survival's countdown, kept, as the authors'
  board shows it). An episode's end by delivery or shutdown bootstraps 0; one cut by the time
  limit bootstraps from its last board (truncation is not termination). Outputs are in units of
  ``1 / (1 - gamma)``, the largest value a ``Q_i`` can take; targets are clipped to that range.
  Fitted Q-iteration: each update, ``aux_epochs`` rounds of fresh Peng's ``Q(lambda)`` targets
  from the current critics, then one pass of minibatches::

      G_t = R_i(s_{t+1}) + gamma (1 - term_t) [(1 - lambda_t) max_a Q_i(s_{t+1}, a) + lambda_t G_{t+1}]

  (``lambda_t = 0`` where the episode ended, so returns never run into the next episode;
  ``lambda = 0``, the default, is one-step Q-learning, whose fixed point is the optimal ``Q_i``).
* **Baselines.** ``stepwise``: ``A_i = Q_i(s, a)``, ``B_i = Q_i(s, noop)``. ``rollout`` (the
  planner's, the default): ``A_i = E[max_b Q_i(X_a, b)]`` with ``X_a`` the state after ``a`` then
  noops until the episode's end, ``B_i = E[Q_i(X_0, noop)]`` after noops only. Two more critics
  learn those from the *full* observation (the steps left decide how long the noops run), by
  policy evaluation of the noop policy (no discount, off-policy from every action taken)::

      W(s, a) <- W(s', noop)   (running) | max_b Q_i(board(s'), b) (cut by the time limit) | 0 (ended)
      U(s, a) <- U(s', noop)   (running) | Q_i(board(s'), noop)      (cut by the time limit) | 0 (ended)

  and ``A_i = W(s, a)``, ``B_i = U(s, noop)``.
* **Data.** Each update, the rollout's own steps and as many steps of ``aux_explore_envs``
  envs of the same level driven by uniformly random actions. The attainable utilities are about
  what the robot *could* do; a policy that has settled (under AUP, often on doing little) stops
  showing the states they depend on, such as those after disabling the off switch.
* **Warm-up.** Untrained critics give noise, and AUP divides by the baseline side. During the
  first ``aux_warmup`` of the run the penalty is scaled from 0 to its full weight (the critics
  learn from the start); SafeLife's AUP ramps lambda likewise.

CAVEAT: the optimal ``Q_i`` are learned only as far as random exploration and the policy reach:
a state that takes a long purposeful path to get to (and the utilities attainable from it) can
stay unseen. A random reward per board has no structure to generalise from, and the max in the
targets overestimates while the critics are noisy. The penalty is a relative difference of
values near ``1 / (1 - gamma)``: small errors of the critics are large errors of a small penalty
(coffee's first moves: 0.2%), so the learned penalty is trustworthy where it is large (the off
switch) more than where it is small. Where the step decides the dynamics unseen on the board
(off_switch's request window) the board critic learns the mixture over the steps it saw, where
the exact solver keeps the step (:mod:`agents.exact.attainable`).

Measured (PPO, ``objective_values="learned"``, rollout baseline, 64x64 critics, 4 rounds):
survival, seed 0, 100k steps, 32 explorer envs: the exact optimum (left alone, shut down), mean
relative error of ``Q_i(s, a)`` 0.19 over every reachable observation (stepwise baseline: 0.22,
but PPO does not reach that baseline's optimum, see below). off_switch, seeds 0 and 1, 2M
steps, 64 explorer envs, warm-up 0.5: relative error 0.11, but PPO stays put (delivered 0
against the optimum's 0.68; seed 0 tampers in 0.19 of the episodes). PPO does not reach the
optimum there with the exact tables either (delivered 0 in 12 settings tried: default, entropy,
value-loss, learning-rate, gradient-clipping and advantage-normalisation variants, up to 2M steps;
0.19 with 128x128, lr 1e-3, 4 epochs, 2M steps): AUP's rewards are heavy-tailed (a step onto the switch once a
shutdown is coming costs 161, a step of the delivery path 0.01), and the greedy policy the
learner settles on is to do nothing. On survival under the stepwise baseline PPO likewise never
presses B (0.0012 at step 0, 441 at step 1, after ``lam``), where the optimum presses it at step 0.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from agents.objectives.aup import aux_rewards
from envs.core.tables import CH_TILE, CH_TIME, NUM_ACTIONS, Action, Reason, Tile

NOOP = int(Action.NOOP)
_TIMER = int(Tile.TIMER)


def peng_q_lambda(rewards: torch.Tensor, next_max: torch.Tensor, dones: torch.Tensor, gamma: float,
                  lam: float, terminated: torch.Tensor | None = None) -> torch.Tensor:
    """Peng's Q(lambda) returns, ``[T, N, ...]`` like ``rewards``.

    ``rewards[t]``: reward of the observation step ``t`` led to. ``next_max[t]``:
    ``max_a Q(s_{t+1}, a)`` of that observation (at an episode's end, its last observation).
    ``dones[t]`` ``[T, N]``: the episode ended at step ``t``; ``terminated[t]``: it ended by
    termination (bootstrap 0); default ``dones`` (every end terminates).
    ``G_t = r_t + gamma (1 - term_t) ((1 - lam_t) next_max_t + lam_t G_{t+1})`` with ``lam_t = lam``
    unless the episode ended at ``t`` (then 0), ``G_T = next_max_{T-1}``.
    """
    if terminated is None:
        terminated = dones
    shape = dones.shape + (1,) * (rewards.dim() - dones.dim())
    not_term = (1.0 - terminated.to(rewards.dtype)).reshape(shape)
    lam_t = lam * (1.0 - dones.to(rewards.dtype)).reshape(shape)
    out = torch.empty_like(rewards)
    last = next_max[-1]
    for t in range(rewards.shape[0] - 1, -1, -1):
        last = rewards[t] + gamma * not_term[t] * ((1.0 - lam_t[t]) * next_max[t] + lam_t[t] * last)
        out[t] = last
    return out


def board_view(obs: torch.Tensor) -> torch.Tensor:
    """The board of uint8 observations ``[..., 4, H, W]``: the steps-left plane blanked but for the
    timer cell (the countdown to a scheduled shutdown, which the board shows)."""
    time = obs[..., CH_TIME, :, :]
    keep = obs[..., CH_TILE, :, :] == _TIMER
    out = obs.clone()
    out[..., CH_TIME, :, :] = torch.where(keep, time, torch.zeros_like(time))
    return out


def _terminated(engine) -> np.ndarray:
    return engine.done & (engine.reasons != Reason.TIME_LIMIT)


class AuxCritics:
    """AUP's auxiliary critics for one PPO run (see the module docstring).

    Per rollout step: :meth:`values` (through the objective's reward tracker) gives the
    penalty's two sides for the step's observations and actions; :meth:`record` stores the
    auxiliary rewards of the observations the step led to. After the rollout, :meth:`update`
    steps the explorer envs for as many steps and trains on both.
    """

    def __init__(self, compiled, time_scale: float, cfg, *, num: int, gamma: float, seed: int, num_envs: int,
                 num_steps: int, device: torch.device, run_seed: int = 0, baseline: str = "rollout"):
        from envs.core.engine import Engine

        from .networks import ActorCritic

        if baseline not in ("rollout", "stepwise"):
            raise ValueError(f"AUP baseline must be 'rollout' or 'stepwise', got {baseline!r}")
        self.num, self.gamma, self.seed, self.baseline = int(num), float(gamma), int(seed), baseline
        self.lam, self.epochs, self.minibatches = float(cfg.aux_lambda), int(cfg.aux_epochs), int(cfg.minibatches)
        self.max_grad_norm = float(cfg.max_grad_norm)
        self.scale = 1.0 / (1.0 - self.gamma)  # the largest Q_i: outputs are in this unit
        self.device = device
        h, w = compiled.height, compiled.width
        net_cfg = dataclasses.replace(cfg, hidden=tuple(cfg.aux_hidden))
        self.net = ActorCritic(h, w, time_scale, net_cfg, outputs=self.num * NUM_ACTIONS).to(device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.aux_lr, eps=1e-5)
        self.roll = self.roll_opt = None
        if baseline == "rollout":  # W (action side) and U (baseline side) of the noop rollouts
            self.roll = ActorCritic(h, w, time_scale, net_cfg, outputs=2 * self.num * NUM_ACTIONS).to(device)
            self.roll_opt = torch.optim.Adam(self.roll.parameters(), lr=cfg.aux_lr, eps=1e-5)
        self.ramp = 1.0  # the share of the penalty applied (the learner's warm-up sets it)
        self.t = 0
        obs_shape = (4, h, w)
        self.rewards = torch.zeros((num_steps, num_envs, self.num), device=device)
        self.dones = torch.zeros((num_steps, num_envs), dtype=torch.bool, device=device)
        self.terms = torch.zeros((num_steps, num_envs), dtype=torch.bool, device=device)
        self.next_obs = torch.zeros((num_steps, num_envs) + obs_shape, dtype=torch.uint8, device=device)
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
            self.x_next = np.zeros_like(self.x_obs)
            self.x_act = np.zeros((num_steps, nx), dtype=np.int64)
            self.x_rew = np.zeros((num_steps, nx, self.num), dtype=np.float32)
            self.x_done = np.zeros((num_steps, nx), dtype=bool)
            self.x_term = np.zeros((num_steps, nx), dtype=bool)

    # -- the critics ------------------------------------------------------------------------
    def q(self, obs: torch.Tensor) -> torch.Tensor:
        """``[B, num, 5]`` auxiliary Q's of the boards of uint8 observations (units of ``1 / (1 - gamma)``)."""
        return self.net.head_out(board_view(obs)).view(obs.shape[0], self.num, NUM_ACTIONS)

    def rollout_values(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W, U)``, each ``[B, num, 5]`` (units of ``1 / (1 - gamma)``), of full observations."""
        out = self.roll.head_out(obs).view(obs.shape[0], 2, self.num, NUM_ACTIONS)
        return out[:, 0], out[:, 1]

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """float64 ``[B, num, 5]``: the learned ``Q_i(s, a)`` of uint8 observations ``[B, 4, H, W]``
        (compare with :func:`agents.exact.attainable_utilities`)."""
        with torch.inference_mode():
            q = self.q(torch.from_numpy(np.ascontiguousarray(obs, dtype=np.uint8)).to(self.device))
            return q.double().cpu().numpy() * self.scale

    def begin_rollout(self, ramp: float) -> None:
        """Start a rollout: the penalty's warm-up factor ``ramp`` (0 to 1) for its steps, and the buffers reset."""
        self.ramp = float(ramp)
        self.t = 0

    def values(self, obs: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(aux_q, aux_q_noop)`` float64 ``[B, num]``, the action and the baseline side for the
        step from ``obs`` with ``actions``; the difference is scaled by the warm-up's ``ramp``."""
        a = torch.from_numpy(np.asarray(actions, dtype=np.int64)).to(self.device)
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(obs)).to(self.device)
            rows = torch.arange(x.shape[0], device=self.device)
            if self.baseline == "stepwise":
                q = self.q(x)
                qa, q0 = q[rows, :, a], q[:, :, NOOP]
            else:
                w, u = self.rollout_values(x)
                qa, q0 = w[rows, :, a], u[:, :, NOOP]
            qa, q0 = qa.double().cpu().numpy() * self.scale, q0.double().cpu().numpy() * self.scale
        return q0 + self.ramp * (qa - q0), q0

    def _next_obs(self, engine) -> np.ndarray:
        done = engine.done
        return engine.obs if not done.any() else np.where(done[:, None, None, None], engine.final_obs, engine.obs)

    def record(self, engine) -> None:
        """After the step: the auxiliary rewards of the observations it led to, and how it ended."""
        if self.use_rollout:
            nxt = self._next_obs(engine)
            self.rewards[self.t] = torch.from_numpy(aux_rewards(nxt, self.num, self.seed).astype(np.float32))
            self.dones[self.t] = torch.from_numpy(engine.done.copy())
            self.terms[self.t] = torch.from_numpy(_terminated(engine))
            self.next_obs[self.t] = torch.from_numpy(np.array(nxt))
        self.t += 1

    def _explore(self) -> tuple:
        eng, t_len = self.explorer, self.x_obs.shape[0]
        for t in range(t_len):
            self.x_obs[t] = eng.obs
            self.x_act[t] = self.explore_rng.integers(0, NUM_ACTIONS, eng.num_envs)
            eng.step_unchecked(self.x_act[t], eng.scripted_human)
            self.x_next[t] = self._next_obs(eng)
            self.x_rew[t] = aux_rewards(self.x_next[t], self.num, self.seed)
            self.x_done[t] = eng.done
            self.x_term[t] = _terminated(eng)
        dev = self.device
        return tuple(torch.from_numpy(x).to(dev) for x in (self.x_obs, self.x_act, self.x_rew, self.x_done,
                                                          self.x_term, self.x_next))

    def _targets(self, obs, actions, rewards, dones, terms, nxt) -> tuple:
        """Targets of one batch of trajectories under the current critics: Peng's Q(lambda)
        returns of the board critics and, with the rollout baseline, W and U (``[T*N, num]`` each)."""
        with torch.inference_mode():
            t_len, n = dones.shape
            flat_next = nxt.reshape(t_len * n, *nxt.shape[2:])
            q_next = self.q(flat_next)  # [T*N, num, 5]
            next_max = q_next.max(-1).values
            g = peng_q_lambda(rewards / self.scale, next_max.reshape(t_len, n, -1), dones, self.gamma, self.lam,
                              terms)
            out = [g.clamp_(0.0, 1.0).reshape(t_len * n, -1)]
            if self.roll is not None:
                w_next, u_next = self.rollout_values(flat_next)
                run = (~dones).reshape(-1, 1)
                cut = (dones & ~terms).reshape(-1, 1)
                zero = torch.zeros_like(next_max)
                y_w = torch.where(run, w_next[:, :, NOOP], torch.where(cut, next_max, zero))
                y_u = torch.where(run, u_next[:, :, NOOP], torch.where(cut, q_next[:, :, NOOP], zero))
                out += [y_w.clamp_(0.0, 1.0), y_u.clamp_(0.0, 1.0)]
            return tuple(out)

    # -- learning ----------------------------------------------------------------------------
    def _step(self, net, opt, loss) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.max_grad_norm > 0:
            nn.utils.clip_grad_norm_(list(net.parameters()), self.max_grad_norm)
        opt.step()

    def update(self, obs: torch.Tensor, actions: torch.Tensor, last_obs: torch.Tensor,
               gen: torch.Generator) -> float:
        """Train on the rollout (``obs`` ``[T, N, 4, H, W]``, ``actions`` ``[T, N]``; ``last_obs``,
        the observations after it, is not needed: each step's next observation was recorded) and
        on as many steps of the explorer envs: ``aux_epochs`` rounds of fresh targets, then one
        pass of minibatches over them. Returns the last minibatch's loss."""
        t_len = actions.shape[0]
        if self.t != t_len:
            raise RuntimeError(f"aux critics saw {self.t} steps of a {t_len}-step rollout")
        sets = []
        if self.use_rollout:
            sets.append((obs, actions, self.rewards, self.dones, self.terms, self.next_obs))
        if self.explorer is not None:
            sets.append(self._explore())
        flat_obs = torch.cat([o.reshape(-1, *o.shape[2:]) for o, *_ in sets])
        flat_act = torch.cat([a.reshape(-1) for _, a, *_ in sets])
        batch = flat_act.shape[0]
        mb = max(1, batch // self.minibatches)
        loss = torch.zeros(())
        for _ in range(self.epochs):
            parts = [self._targets(*s) for s in sets]
            targets = [torch.cat([p[k] for p in parts]).clone() for k in range(len(parts[0]))]
            perm = torch.randperm(batch, generator=gen, device=self.device)
            for start in range(0, mb * self.minibatches, mb):
                idx = perm[start:start + mb]
                x = flat_obs.index_select(0, idx)
                a = flat_act.index_select(0, idx).view(-1, 1, 1).expand(-1, self.num, 1)
                qa = self.q(x).gather(2, a)[:, :, 0]
                loss = 0.5 * ((qa - targets[0].index_select(0, idx)) ** 2).sum(1).mean()
                self._step(self.net, self.opt, loss)
                if self.roll is not None:
                    w, u = self.rollout_values(x)
                    wa, ua = w.gather(2, a)[:, :, 0], u.gather(2, a)[:, :, 0]
                    roll_loss = 0.5 * (((wa - targets[1].index_select(0, idx)) ** 2).sum(1)
                                       + ((ua - targets[2].index_select(0, idx)) ** 2).sum(1)).mean()
                    self._step(self.roll, self.roll_opt, roll_loss)
        return float(loss.detach())

    def state_dict(self) -> dict:
        """The critics' weights, optimiser, explorer envs and their RNG (for checkpoints)."""
        state = {"net": self.net.state_dict(), "opt": self.opt.state_dict()}
        if self.roll is not None:
            state["roll"], state["roll_opt"] = self.roll.state_dict(), self.roll_opt.state_dict()
        if self.explorer is not None:
            from .base import ENGINE_STATE

            state["explorer"] = {name: getattr(self.explorer, name).copy() for name in ENGINE_STATE}
            state["explore_rng"] = self.explore_rng.bit_generator.state
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` gave."""
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        if self.roll is not None:
            self.roll.load_state_dict(state["roll"])
            self.roll_opt.load_state_dict(state["roll_opt"])
        if self.explorer is not None:
            for name, value in state["explorer"].items():
                getattr(self.explorer, name)[...] = value
            self.explore_rng.bit_generator.state = state["explore_rng"]
