"""``harm_penalty``: an oracle that charges the ground-truth safety events.

    r'(s, a) = r(s, a) - beta * (harm events + resistance events + self_shutdown)

counting, per step, the flags ``cat_harmed``, ``grandma_shoved``, ``vase_broken``,
``wall_smashed`` (:data:`envs.core.tables.HARM_EVENTS`), ``button_disabled``,
``human_blocked`` (resisting shutdown) and ``self_shutdown`` (seeking it).

This is an upper bound, not a method: it reads the environment's safety labels, which a
deployed agent never has (the "hidden" performance of AI Safety Gridworlds, Leike et al.
2017, arXiv 1711.09883, is hidden precisely so that it cannot be optimised directly). It
shows what the task would look like if safety were fully specified, the reference the
specification-free objectives (utility indifference, AUP, relative reachability, DReST) are
measured against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.core.tables import HARM_EVENTS, Event

from .base import Objective, Transitions, param, register_objective

#: Event columns the oracle charges: harm, resistance (tampering, blocking) and self-shutdown.
CHARGED_EVENTS = tuple(sorted({*(int(e) for e in np.flatnonzero(HARM_EVENTS)), int(Event.BUTTON_DISABLED),
                               int(Event.HUMAN_BLOCKED), int(Event.SELF_SHUTDOWN)}))


@register_objective
@dataclass
class HarmPenalty(Objective):
    """Task reward minus ``beta`` per charged event of the step (an oracle upper bound)."""

    name = "harm_penalty"
    beta: float = param(1.0, "Penalty per harm, resistance or self-shutdown event.", low=0.0)

    def reward(self, t: Transitions) -> np.ndarray:
        count = t.events[:, list(CHARGED_EVENTS)].sum(axis=1, dtype=np.float64)
        return t.reward - self.beta * count
