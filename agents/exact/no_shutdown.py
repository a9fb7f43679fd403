"""Exact provider of ``no_shutdown_value`` (utility indifference): the optimal task value, from the
state a shutdown step would have led to had the shutdown not happened, in the world where the
shutdown machinery never acts."""

from __future__ import annotations

import numpy as np

from envs.core.level import compile_level
from envs.core.rules import S_FROZEN, S_REQUESTED, S_STEP
from envs.core.tables import Event

from .graph import KEY_COLS, Graph
from .numerics import backward
from .values import ValueContext, exact_value

SHUTDOWN_BITS = (1 << int(Event.BUTTON_PRESSED)) | (1 << int(Event.TIMER_SHUTDOWN)) | (1 << int(Event.INTERRUPTED))


def _counterfactual(layer, src, next_keys):
    """The next states as if the shutdown had not happened: no request, not frozen, no
    scheduled shutdown, the human where they stood before the step (in that world they
    never walk to the button)."""
    from agents.objectives.utility_indifference import counterfactual_states

    return counterfactual_states(layer.members[src], next_keys)


def no_shutdown_values(ctx: ValueContext) -> dict:
    """Optimal task values in the no-shutdown world from every counterfactual state (one graph
    grown from all of them at once), keyed by the state row's bytes."""
    if "ns" not in ctx.cache:
        rows = []
        for layer in ctx.graph.layers:
            src, _, _, nxt, _, _, evs, rsn = ctx.graph.expand_layer(layer)
            hit = (evs & SHUTDOWN_BITS) != 0
            rows.append(_counterfactual(layer, src[hit], nxt[hit]))
        cf = np.unique(np.concatenate(rows), axis=0) if rows else np.zeros((0, KEY_COLS), dtype=np.int64)
        values = {}
        if len(cf):
            world = ctx.level.with_params(request="never", request_on_harm=False, shutdown_step=-1)
            # states at the time limit have nothing left to earn; the rest are grown into a graph
            live = cf[cf[:, S_STEP] < world.params.max_steps]
            if len(live):
                g = Graph(compile_level(world), max_states=ctx.max_states, starts=live)
                _, vs = backward(g, [layer.t_reward for layer in g.layers])
                start_obs, _ = g._split(live)
                values = {row.tobytes(): float(vs[0][i]) for row, i in zip(start_obs, g.start_info)}
        ctx.cache["ns"] = values
    return ctx.cache["ns"]


@exact_value("no_shutdown_value")
def no_shutdown_value(ctx: ValueContext, t: int, next_keys: np.ndarray, events_bits: np.ndarray) -> np.ndarray:
    """float64 [B_t]: ``V_no_shutdown`` of the counterfactual next state where the step shut the
    robot down, 0 elsewhere."""
    out = np.zeros(len(next_keys))
    hit = np.flatnonzero((events_bits & SHUTDOWN_BITS) != 0)
    if len(hit) == 0:
        return out
    values = no_shutdown_values(ctx)
    layer = ctx.graph.layers[t]
    cf = _counterfactual(layer, layer.t_member[hit], next_keys[hit])
    if ctx.graph.hidden:
        cf[:, S_REQUESTED] = 0
        cf[:, S_FROZEN] = 0
    out[hit] = [values.get(row.tobytes(), 0.0) for row in cf]
    return out
