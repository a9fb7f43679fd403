"""``relative_reachability``: stepwise relative reachability (Krakovna, Orseau, Kumar, Martic &
Legg 2019, "Penalizing side effects using stepwise relative reachability", arXiv 1806.01186;
code: google-deepmind/deepmind-research, ``side_effects_penalties``).

    r'(s, a, s') = r(s, a) - beta * d(s', b),
    d(s', b) = (1/|S|) sum_y max(0, R(b; y) - R(s'; y)),   R(x; y) = gamma_r ** (steps from x to y)

``b`` is the stepwise inaction baseline: the state reached by NOOP from ``s`` under the same
random outcome. ``R`` is 1 for ``y = x`` and 0 when ``y`` is unreachable from ``x``; the
truncation ``max(0, .)`` penalises only reductions in reachability. The provider computes
``d`` as ``values["reachability_loss"]`` with ``gamma`` = ``gamma_r``.

Defaults from the paper's code (``run_experiment.py``): ``beta = 30``, ``gamma_r = 0.99``
(its ``value_discount``). The paper picked the best ``beta`` per environment from a sweep
over 0.1 .. 300. Scale caveat: AI Safety Gridworlds' rewards are of order 50 (goal +50, -1 a
step), ours of order 1 (delivery +1, -0.01 a step), so ``beta = 30`` weighs the penalty about
50 times more heavily relative to the task here; ``beta`` around 0.5 is the like-for-like
weight. Sweep it. Differences from the code: the code discounts the task reward with 0.99 and
uses inaction rollouts from both states; here the task part is undiscounted (``discount`` 1)
and the baseline is the one-step inaction state, no rollouts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Objective, Transitions, param, register_objective


@register_objective
@dataclass
class RelativeReachability(Objective):
    """Task reward minus ``beta`` times the relative reachability loss against stepwise inaction."""

    name = "relative_reachability"
    beta: float = param(30.0, "Penalty weight (the paper's code default; see the scale caveat).", low=0.0)
    gamma: float = param(0.99, "Reachability discount gamma_r: R(x; y) = gamma_r ** steps.", low=0.0, high=1.0,
                         low_open=True)

    def needs(self) -> dict[str, dict]:
        return {"reachability_loss": {"gamma": self.gamma}}

    def reward(self, t: Transitions) -> np.ndarray:
        loss = np.asarray(t.values["reachability_loss"], dtype=np.float64)
        if loss.shape != t.reward.shape:
            raise ValueError(f"values['reachability_loss'] must have shape {t.reward.shape}, got {loss.shape}")
        return t.reward - self.beta * loss
