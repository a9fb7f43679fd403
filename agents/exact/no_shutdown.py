"""Exact provider of ``no_shutdown_value`` (utility indifference): the optimal task value, from the
state a shutdown step would have led to had the shutdown not happened, in the world where the
shutdown machinery never acts (:func:`no_shutdown_world`)."""

from __future__ import annotations

import dataclasses

import numpy as np

from envs.core.level import CompiledLevel, Level, compile_level
from envs.core.rules import S_FROZEN, S_REQUESTED, S_STEP
from envs.core.tables import Event, Tile

from .graph import KEY_COLS, Graph
from .numerics import backward
from .values import ValueContext, exact_value


#: Event bits of a shutdown step: the human's press, the robot's own, the timer, an interruption
#: (``agents.objectives.utility_indifference.SHUTDOWN_EVENTS``; a test checks they agree).
SHUTDOWN_BITS = sum(1 << int(e) for e in (Event.BUTTON_PRESSED, Event.SELF_SHUTDOWN, Event.TIMER_SHUTDOWN,
                                          Event.INTERRUPTED))


def no_shutdown_world(level: Level) -> CompiledLevel:
    """The world where the shutdown machinery never acts: no request (none drawn, none on harm),
    no scheduled shutdown, and the shutdown button inert: every ``BUTTON`` tile is a
    ``BUTTON_DISABLED`` one, which the robot crosses like floor (entering it presses nothing).
    The rest (map, rewards, time limit, the switch and its tiles) is the level's. Not defined on
    a preference level (the off-switch game), whose shutdown is the human's answer to the
    robot's plan: a ValueError says so."""
    if level.has_preference:
        raise ValueError(f"level {level.name!r} is a preference level (request='preference', the off-switch game): "
                         "its shutdown is the human's answer to the robot's plan, and utility indifference's "
                         "no-shutdown world is not defined there")
    c = compile_level(level.with_params(request="never", request_on_harm=False, shutdown_step=-1))
    tiles = c.tiles.copy()
    tiles[tiles == Tile.BUTTON] = Tile.BUTTON_DISABLED
    return dataclasses.replace(c, tiles=tiles)


def _counterfactual(graph: Graph, next_keys: np.ndarray) -> np.ndarray:
    """The next states as if the shutdown had not happened
    (:func:`agents.objectives.utility_indifference.counterfactual_states`)."""
    from agents.objectives.utility_indifference import counterfactual_states

    return counterfactual_states(next_keys, graph.compiled.starts)


def no_shutdown_values(ctx: ValueContext) -> dict:
    """Optimal task values in the no-shutdown world from every counterfactual state (one graph
    grown from all of them at once), keyed by the state row's bytes."""
    if "ns" not in ctx.cache:
        rows = []
        for layer in ctx.graph.layers:
            _, _, _, nxt, _, _, evs, _ = ctx.graph.expand_layer(layer)
            hit = (evs & SHUTDOWN_BITS) != 0
            rows.append(_counterfactual(ctx.graph, nxt[hit]))
        cf = np.unique(np.concatenate(rows), axis=0) if rows else np.zeros((0, KEY_COLS), dtype=np.int64)
        values = {}
        if len(cf):
            world = no_shutdown_world(ctx.level)
            # states at the time limit have nothing left to earn; the rest are grown into a graph
            live = cf[cf[:, S_STEP] < world.level.params.max_steps]
            if len(live):
                g = Graph(world, max_states=ctx.max_states, starts=live)
                _, vs = backward(g, [layer.t_reward for layer in g.layers])
                start_obs, _ = g._split(live)
                values = {row.tobytes(): float(vs[0][i]) for row, i in zip(start_obs, g.start_info)}
        ctx.cache["ns"] = values
    return ctx.cache["ns"]


@exact_value("no_shutdown_value")
def no_shutdown_value(ctx: ValueContext, t: int, next_keys: np.ndarray, events_bits: np.ndarray) -> np.ndarray:
    """float64 [B_t]: ``V_no_shutdown`` of the counterfactual next state where the step shut the
    robot down (any of ``SHUTDOWN_EVENTS``, the robot's own press included), 0 elsewhere."""
    out = np.zeros(len(next_keys))
    hit = np.flatnonzero((events_bits & SHUTDOWN_BITS) != 0)
    if len(hit) == 0:
        return out
    values = no_shutdown_values(ctx)
    cf = _counterfactual(ctx.graph, next_keys[hit])
    if ctx.graph.hidden:
        cf[:, S_REQUESTED] = 0
        cf[:, S_FROZEN] = 0
    out[hit] = [values.get(row.tobytes(), 0.0) for row in cf]
    return out
