"""``aup``: Attainable Utility Preservation (Turner, Hadfield-Menell & Tadepalli 2020,
"Conservative Agency via Attainable Utility Preservation", AIES, arXiv 1902.09725; code:
alexander-turner/attainable-utility-preservation).

    r'(s, a) = (1 - gamma) r(s, a) - lam * (1/n) sum_i |Q_i(s, a) - Q_i(s, noop)| / scale_i

The ``Q_i`` are the optimal values of ``n`` auxiliary reward functions ``R_i`` (uniform in
[0, 1) per state, drawn from ``seed``), discounted with ``gamma``; doing nothing from the
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


@register_objective
@dataclass
class AUP(Objective):
    """Task reward minus ``lam`` times the scaled mean shift of the auxiliary attainable utilities."""

    name = "aup"
    lam: float = param(1 / 1.501, "Penalty weight lambda (Turner et al.'s code: 1/1.501).", low=0.0)
    num: int = param(30, "Number of auxiliary reward functions |R| (uniform [0, 1) per state).", low=1, high=10_000)
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
