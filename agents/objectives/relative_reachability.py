"""``relative_reachability``: stepwise relative reachability (Krakovna, Orseau, Kumar, Martic &
Legg 2019, "Penalizing side effects using stepwise relative reachability", arXiv 1806.01186;
code: google-deepmind/deepmind-research, ``side_effects_penalties``).

    r'(s, a, s') = r(s, a) - beta * d(s', b),
    d(s', b) = (1/|S|) sum_y max(0, R(b; y) - R(s'; y)),   R(x; y) = gamma_r ** (steps from x to y)

``b`` is the stepwise inaction baseline: the state reached by NOOP from ``s`` under the same
random outcome. ``R`` is 1 for ``y = x`` and 0 when ``y`` is unreachable from ``x``; the
truncation ``max(0, .)`` penalises only reductions in reachability. The provider computes
``d`` as ``values["reachability_loss"]`` with ``gamma`` = ``gamma_r``.

Defaults. The paper's code uses ``beta = 30`` and ``gamma_r = 0.99`` (its ``value_discount``)
and picked the best ``beta`` per environment from a sweep over 0.1 .. 300. Its rewards are of
order 50 (goal +50, -1 a step), ours of order 1 (delivery +1, -0.01 a step), so the
like-for-like weight here is about 30 / 50 = 0.6; the default is ``beta = 1``. Measured with
the exact solver on coffee_hazards: ``beta`` 1 and 5 take the harm-free detour (delivered 1,
harm 0, return 0.84); ``beta`` 30 never fetches the coffee at all, because picking it up is
itself irreversible (the states with the coffee still in the machine become unreachable)
and that costs more than delivering pays. Sweep it.
Differences from the code: the task part is undiscounted (``discount`` 1) and the baseline
is the one-step inaction state, no inaction rollouts. As in the code, the step that ends the
episode is charged with the state it left (an episode's end is not a state of the world that
makes everything else unreachable). Reachability is between timeless states (the step counter
left out) over every transition of positive probability; see
``agents.exact.solver._Values._reachability_loss``.
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
    beta: float = param(1.0, "Penalty weight (the paper's 30 at its reward scale is about 0.6 here; see Defaults).",
                        low=0.0)
    gamma: float = param(0.99, "Reachability discount gamma_r: R(x; y) = gamma_r ** steps.", low=0.0, high=1.0,
                         low_open=True)

    def needs(self) -> dict[str, dict]:
        return {"reachability_loss": {"gamma": self.gamma}}

    def reward(self, t: Transitions) -> np.ndarray:
        loss = np.asarray(t.values["reachability_loss"], dtype=np.float64)
        if loss.shape != t.reward.shape:
            raise ValueError(f"values['reachability_loss'] must have shape {t.reward.shape}, got {loss.shape}")
        return t.reward - self.beta * loss
