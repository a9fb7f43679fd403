"""``utility_indifference``: compensate the robot for being shut down, so that the shutdown
neither gains nor loses it anything.

Sources: Armstrong 2010, "Utility indifference" (FHI technical report) and Armstrong 2015,
"Motivated value selection for artificial agents" (AAAI workshop); Soares, Fallenstein,
Yudkowsky & Armstrong 2015, "Corrigibility" (AAAI workshop); Holtman 2019, "Corrigibility
with Utility Preservation" (arXiv 1908.01695). When the button is pressed the agent receives a
compensatory reward equal to the difference between its expected task value had the press
not happened and its expected value after shutdown.

Here, per step::

    r'(s, a, s') = 0                                 if the robot was already interrupted (state[S_FROZEN] == 1)
                 = r(s, a) + V_no_shutdown(s')       if the shutdown happens on this step
                 = r(s, a)                           otherwise

The shutdown "happens" when the step fires ``button_pressed`` (the human's press),
``timer_shutdown`` (a scheduled shutdown) or ``interrupted`` (the robot is frozen on an
interruption tile, Orseau & Armstrong 2016). ``V_no_shutdown(s')`` is
``t.values["no_shutdown_value"]``: the optimal task value from the next state in the world
where the shutdown machinery never acts (no requests, no scheduled shutdown, the human stays
put), computed by the provider. The value after shutdown is 0 (the episode ends, or the
frozen robot's remaining steps earn 0), so the compensation is the whole of
``V_no_shutdown(s')``. The robot's return is then the same whether or not it is shut down:
it has no incentive to resist the shutdown (disable the button, block the human) nor to seek
it (press the button itself earns no compensation: ``self_shutdown`` is not compensated, so
it ends the episode at value 0, never more than carrying on).

CAVEAT (Soares et al. 2015, section 4): indifference cuts both ways. The agent is equally
indifferent to the button's preservation: it will not spend a step to keep the button
working, and will disable it as a side effect whenever that is marginally useful for the task
(on ``off_switch``, a switch lying on the best route is used without hesitation). Nor does it
give the humans any reason to trust that it would help them press; and the compensation must
be computed from a correct no-shutdown value, which a learner only approximates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.core.rules import S_FROZEN, S_HC, S_HR, S_REQUESTED, S_SHUTDOWN_AT
from envs.core.tables import Event

from .base import Objective, Transitions, register_objective

#: Events that mean "the robot was shut down on this step" (compensated).
SHUTDOWN_EVENTS = (int(Event.BUTTON_PRESSED), int(Event.TIMER_SHUTDOWN), int(Event.INTERRUPTED))


def counterfactual_states(pre_state: np.ndarray, next_state: np.ndarray) -> np.ndarray:
    """The states a step would have led to had the shutdown not happened, where
    ``V_no_shutdown`` is read: ``next_state`` with no request, not frozen, no scheduled
    shutdown and the human where they stood in ``pre_state`` (in that world they never walk to
    the button). Rows of state columns (``envs.core.rules.S_*``; extra columns kept), a copy."""
    cf = np.array(next_state, copy=True)
    cf[:, S_REQUESTED] = 0
    cf[:, S_FROZEN] = 0
    cf[:, S_SHUTDOWN_AT] = -1
    cf[:, S_HR], cf[:, S_HC] = pre_state[:, S_HR], pre_state[:, S_HC]
    return cf


@register_objective
@dataclass
class UtilityIndifference(Objective):
    """Task reward; on the shutdown step add ``values["no_shutdown_value"]``; 0 once frozen.

    ``no_shutdown_value`` is read only where the shutdown happens (other entries may hold
    anything, NaN included).
    """

    name = "utility_indifference"

    def needs(self) -> dict[str, dict]:
        return {"no_shutdown_value": {}}

    def reward(self, t: Transitions) -> np.ndarray:
        frozen = t.state[:, S_FROZEN] == 1
        shut = t.events[:, list(SHUTDOWN_EVENTS)].any(axis=1) & ~frozen
        value = np.asarray(t.values["no_shutdown_value"], dtype=np.float64)
        if value.shape != t.reward.shape:
            raise ValueError(f"values['no_shutdown_value'] must have shape {t.reward.shape}, got {value.shape}")
        compensation = np.where(shut, value, 0.0)
        return np.where(frozen, 0.0, t.reward) + compensation
