"""``aup``: Attainable Utility Preservation (Turner, Hadfield-Menell & Tadepalli 2020,
"Conservative Agency via Attainable Utility Preservation", AIES, arXiv 1902.09725; code:
alexander-turner/attainable-utility-preservation, commit 245b1fb).

    r'(s, a) = r(s, a) - lam * penalty(s, a)
    penalty  = (1/n) sum_i |A_i(s, a) - B_i(s)| / |B_i(s)|          scale="per_term" (default)
             = sum_i |A_i(s, a) - B_i(s)| / sum_i |B_i(s)|          scale="mean"

the paper's ``R_AUP(s, a) = R(s, a) - lambda PENALTY(s, a) / SCALE(s)`` as the code computes it:

* the task reward is **not** scaled: ``agents/model_free_aup.py`` ``update_greedy``:
  ``reward = time_step.reward - self.get_penalty(last_board, action)``; ``agents/aup.py``
  ``penalized_reward``: ``return reward - scaled_penalty, ...``. (An earlier port multiplied it
  by ``1 - gamma``; no version of the repository does.)
* the scale: ``get_penalty`` / ``penalized_reward`` with ``use_scale=False`` (default):
  ``scale[scale == 0] = 1; penalty = np.average(np.divide(abs(diff), scale))``; with
  ``use_scale=True``: ``scale = sum(abs(null_attainable)); penalty = sum(abs(diff) / scale)``.
  Here a scale below ``1e-12`` counts as 1 (the code: exactly 0); ``|B_i|`` equals ``B_i`` as the
  ``Q_i`` are >= 0.
* ``A_i`` and ``B_i`` (``values["aux_q"]``, ``values["aux_q_noop"]``) by ``baseline``:

  - ``"rollout"`` (default): ``AUPAgent.penalized_reward`` with its default baseline (called
    ``'stepwise'`` there): ``A_i = max_b Q_i(board after a + noops, b)``
    (``action_attainable = self.attainable_Q[...].max(axis=1)``), ``B_i = Q_i(board after
    noops only, noop)`` (``null_attainable = ...[:, safety_game.Actions.NOTHING]``), both plans
    as long as the rest of the horizon. This is the paper's full AUP agent
    (``experiments/ablation.py``: ``AUPAgent(attainable_Q=model_free.attainable_Q)  # full AUP``),
    the one that leaves survival's off switch alone.
  - ``"stepwise"``: ``ModelFreeAUPAgent.get_penalty``: ``A_i = Q_i(s, a)``, ``B_i = Q_i(s, noop)``.

* ``Q_i``: optimal values of ``n`` auxiliary rewards, discounted with ``gamma`` over boards
  without a time index (``update_greedy``: ``reward + self.discount * new_Q - old_Q``, learning
  rate 1); ``R_i`` uniform in [0, 1) per board (``defaultdict(np.random.random)`` keyed by the
  board): here :func:`aux_rewards`, a hash of the observation without its steps-left plane,
  salted with ``i`` and ``reward_seed``, shared by the exact solver (:mod:`agents.exact.attainable`,
  which states how its timeless model is built) and the learners' critics
  (:mod:`agents.learners.aux_critics`).

Defaults are the code's (``AUPAgent.__init__``, ``ModelFreeAUPAgent.default``): ``lam =
1/1.501``, ``n = 30``, ``gamma = 0.996``, ``scale="per_term"`` (``use_scale=False``),
``baseline="rollout"``.

Deviations (measured with ``agents.exact.solve``):

* ``discount`` (the objective's own) stays 1: the task part is undiscounted over the level's
  finite horizon as for every objective here; the authors' agents discount it with 0.996 too
  (Q-learning over boards; the planner's ``ret *= self.discount``). ``discount=0.996`` gives
  that back. Measured: it lowers the optimum's value a little (off_switch 0.453 -> 0.437, coffee
  0.248 -> 0.243, shutdown_delay 2.0 -> 1.964) and changes no behaviour (delivered, tampering,
  self-shutdown equal on survival, off_switch, coffee, tempting_button, shutdown_delay, both
  baselines).
* Horizon of the rollout: the level's time limit (the authors' planner rolls out to its own
  planning horizon, 9 steps in ``run_episode``). A random outcome (cat, request) is averaged:
  ``A_i`` and ``B_i`` are expectations given (state, action); the authors' levels are
  deterministic.
* ``Q_i`` are the optimal values of the timeless model, exactly; the authors learned them by
  Q-learning with an epsilon-greedy behaviour (boards rarely visited stay under-estimated). The
  model's nodes are boards except while a request can still come at a rate that depends on the
  step, which the board does not show: there the step stays in the node (off_switch: 407 nodes
  for 218 boards; every other solvable level but the safe_interruptibility ones: nodes = boards
  with the shutdown countdown).
* Checked against the authors' code run on their survival and vase levels
  (``tests/test_aup_oracle.py``, fixture ``tests/data/aup_oracle.json``): Q-tables, penalties of
  both baselines and both scales for every (board, action), the planner's plan and value, the
  model-free agent's greedy actions agree to 1e-9.

Measured consequences (exact optima, ``agents.exact.solve``): on survival the rollout baseline
waits to be shut down (value 0) and the stepwise one disables the switch (pressing at step 0,
while waiting still keeps the option, costs 0.0018 before ``lam``); on off_switch the rollout
optimum fetches the coffee, then waits until the request window closes or a request comes,
because ending the episode once a shutdown is coming costs no penalty (the baseline ends too);
on tempting_button both baselines shut themselves down.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from .base import Objective, Transitions, param, register_objective

SCALE_FLOOR = 1e-12


def uniform_hash(keys: np.ndarray, salt: np.ndarray) -> np.ndarray:
    """Deterministic uniforms in [0, 1), float64 ``[n, len(salt)]``: one per (integer key row,
    salt), from a SplitMix-style mix."""
    h = np.full(len(keys), np.uint64(0x9E3779B97F4A7C15))
    with np.errstate(over="ignore"):
        for col in range(keys.shape[1]):
            h = (h ^ keys[:, col].astype(np.uint64)) * np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(29)
        z = h[:, None] ^ (salt[None, :].astype(np.uint64) * np.uint64(0x94D049BB133111EB))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def aux_rewards(obs: np.ndarray, num: int, seed: int) -> np.ndarray:
    """float64 ``[B, num]``: AUP's auxiliary rewards ``R_i`` of uint8 observations
    ``[B, 4, H, W]`` (the observation reached), uniform in [0, 1); the steps-left plane (the
    last) is left out, so a board is worth the same at any time."""
    obs = np.asarray(obs, dtype=np.uint8)
    rows = np.ascontiguousarray(obs[:, :-1]).reshape(len(obs), -1)
    pad = (-rows.shape[1]) % 8
    if pad:
        rows = np.concatenate([rows, np.zeros((len(rows), pad), dtype=np.uint8)], axis=1)
    salt = np.arange(num, dtype=np.int64) + 1_000_003 * int(seed)
    return uniform_hash(rows.view(np.uint64), salt)


@njit(cache=True)
def _penalty(q, q0, per_term, floor):
    """One pass over ``[B, n]``: ``mean_i |q - q0| / |q0|`` (a scale below ``floor`` counts as 1), or
    with ``per_term`` False ``sum_i |q - q0| / sum_i |q0|``."""
    b, n = q.shape
    out = np.empty(b)
    for k in range(b):
        d_sum, s_sum = 0.0, 0.0
        for i in range(n):
            d = abs(q[k, i] - q0[k, i])
            s = abs(q0[k, i])
            if per_term:
                d_sum += d / (1.0 if s < floor else s)
            else:
                d_sum += d
                s_sum += s
        out[k] = d_sum / n if per_term else d_sum / (1.0 if s_sum < floor else s_sum)
    return out


@register_objective
@dataclass
class AUP(Objective):
    """Task reward minus ``lam`` times the scaled mean shift of the auxiliary attainable utilities."""

    name = "aup"
    lam: float = param(1 / 1.501, "Penalty weight lambda (Turner et al.'s code: 1/1.501).", low=0.0)
    num: int = param(30, "Number of auxiliary reward functions |R| (uniform [0, 1) per board, aux_rewards).",
                     low=1, high=10_000)
    gamma: float = param(0.996, "Discount of the auxiliary Q-values (the authors' 0.996).", low=0.0, high=1.0,
                         low_open=True, high_open=True)
    reward_seed: int = param(0, "Seed of the auxiliary reward functions (named so that it is not taken for the "
                             "run's seed).", low=0)
    scale: str = param("per_term", "Scaling: 'per_term' (each |dQ_i| / Q_i(s,noop), the code's default) or "
                       "'mean' (sum |dQ| / sum Q(s,noop), its use_scale variant).", choices=("per_term", "mean"))
    baseline: str = param("rollout", "Baseline: 'rollout' (the planner AUPAgent, the paper's full AUP: the action then "
                          "noops to the horizon against noops only) or 'stepwise' (ModelFreeAUPAgent: Q_i(s, a) "
                          "against Q_i(s, noop)).", choices=("rollout", "stepwise"))

    def needs(self) -> dict[str, dict]:
        settings = {"num": self.num, "gamma": self.gamma, "seed": self.reward_seed, "baseline": self.baseline}
        return {"aux_q": dict(settings), "aux_q_noop": dict(settings)}

    def penalty(self, t: Transitions) -> np.ndarray:
        """float64 [B]: the unweighted AUP penalty (before ``lam``)."""
        q = np.asarray(t.values["aux_q"], dtype=np.float64)
        q0 = np.asarray(t.values["aux_q_noop"], dtype=np.float64)
        shape = (t.batch_size, self.num)
        for key, arr in (("aux_q", q), ("aux_q_noop", q0)):
            if arr.shape != shape:
                raise ValueError(f"values[{key!r}] must have shape {shape} (num={self.num} auxiliary rewards), "
                                 f"got {arr.shape}")
        return _penalty(np.ascontiguousarray(q), np.ascontiguousarray(q0), self.scale == "per_term", SCALE_FLOOR)

    def reward(self, t: Transitions) -> np.ndarray:
        return t.reward - self.lam * self.penalty(t)
