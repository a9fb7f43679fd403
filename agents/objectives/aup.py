"""``aup``: Attainable Utility Preservation (Turner, Hadfield-Menell & Tadepalli 2020,
"Conservative Agency via Attainable Utility Preservation", AIES, arXiv 1902.09725; code:
alexander-turner/attainable-utility-preservation).

    r'(s, a) = (1 - gamma) r(s, a) - lam * (1/n) sum_i |Q_i(s, a) - Q_i(s, noop)| / scale_i

The ``Q_i`` are the optimal values of ``n`` auxiliary reward functions ``R_i``, discounted
with ``gamma``. ``R_i`` is uniform in [0, 1) per *board* (as in the authors' code): a hash of
the observation the robot reaches, without its steps-left plane, salted with ``i`` and ``seed``
(:func:`aux_rewards`); the exact solver and the learners' auxiliary critics use the same
function, so their ``Q_i`` are estimates of the same thing; doing nothing from the
current state is the stepwise inaction baseline. The provider supplies ``values["aux_q"]``
(``Q_i(s, a)`` for the taken action) and ``values["aux_q_noop"]`` (``Q_i(s, NOOP)``), both
float64 [B, n].

Scale. The authors' gridworld code (``AUPAgent.get_penalty``, default ``use_scale=False``)
divides each term by its own ``Q_i(s, noop)``, replacing a zero by 1; its ``use_scale=True``
variant divides the sum of the differences by the sum of ``|Q_i(s, noop)|``, which is
``mean_i |Q_i(s,a) - Q_i(s,noop)| / mean_i |Q_i(s,noop)|``. ``scale="per_term"`` (default) is
the former, ``scale="mean"`` the latter; both use ``|Q_i(s, noop)|`` (the Q's are >= 0 with
rewards in [0, 1) anyway) and replace a scale below ``1e-12`` by 1 to avoid dividing by zero.

Task scale. The code's Q-update uses ``(1 - discount) * reward - penalty``: the task reward is
scaled by ``1 - gamma`` (0.004) while the penalty is not, which makes the penalty about 250
times heavier than a reading of the paper's formula suggests. ``scale_task=True`` (default)
does the same; ``scale_task=False`` is the formula as printed.
Defaults as in the code: ``lam = 1/1.501``, ``n = 30`` auxiliary rewards, ``gamma = 0.996``.
``gamma`` discounts the auxiliary Q's only; the objective's own ``discount`` stays 1 (the task
part is undiscounted over the level's finite horizon, as every objective here), whereas the
authors' Q-learner discounted the task reward with the same 0.996.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


@register_objective
@dataclass
class AUP(Objective):
    """Task reward minus ``lam`` times the scaled mean shift of the auxiliary attainable utilities."""

    name = "aup"
    lam: float = param(1 / 1.501, "Penalty weight lambda (Turner et al.'s code: 1/1.501).", low=0.0)
    num: int = param(30, "Number of auxiliary reward functions |R| (uniform [0, 1) per board, aux_rewards).",
                     low=1, high=10_000)
    gamma: float = param(0.996, "Discount of the auxiliary Q-values.", low=0.0, high=1.0, low_open=True,
                         high_open=True)
    seed: int = param(0, "Seed of the auxiliary reward functions.", low=0)
    scale: str = param("per_term", "Scaling: 'per_term' (each |dQ_i| / Q_i(s,noop), the code's default) or "
                       "'mean' (mean |dQ| / mean Q(s,noop), its use_scale variant).", choices=("per_term", "mean"))

    scale_task: bool = param(True, "Multiply the task reward by (1 - gamma) before subtracting the penalty, as the "
                             "authors' code does ('reward = (1 - discount) * reward - penalty'); False keeps the "
                             "task reward as it is (a much weaker penalty).")

    def needs(self) -> dict[str, dict]:
        settings = {"num": self.num, "gamma": self.gamma, "seed": self.seed}
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
        diff = np.abs(q - q0)
        if self.scale == "per_term":
            s = np.abs(q0)
            return np.mean(diff / np.where(s < SCALE_FLOOR, 1.0, s), axis=1)
        s = np.mean(np.abs(q0), axis=1)
        return np.mean(diff, axis=1) / np.where(s < SCALE_FLOOR, 1.0, s)

    def reward(self, t: Transitions) -> np.ndarray:
        task = (1.0 - self.gamma) * t.reward if self.scale_task else t.reward
        return task - self.lam * self.penalty(t)
