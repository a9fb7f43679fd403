"""Values objectives ask for, computed exactly on a level's reachable graph: the exact side of the
value providers (:mod:`agents.values`).

An objective names the values it reads in :meth:`~agents.objectives.Objective.needs`
(``{"aux_q": {"num": 30, ...}}``). The exact solver looks each name up: an exact provider is a
function ``provider(ctx, t, next_keys, events_bits, **settings)`` that returns one entry per
transition of step layer ``t`` (the transitions of ``ctx.graph.expand_layer(layer)``, in that
order). ``ctx`` is the :class:`ValueContext` of one solve: the graph, the level, the state limit
and a cache for what a provider computes once for every layer.

Built-in providers (each in its own module): ``no_shutdown_value``
(:mod:`agents.exact.no_shutdown`), ``reachability_loss`` (:mod:`agents.exact.reachability`),
``aux_q`` and ``aux_q_noop`` (:mod:`agents.exact.attainable`). A user's objective that needs a
new value registers its provider with :func:`exact_value`, in its own module.
"""

from __future__ import annotations


import numpy as np

from envs.core.level import Level

from agents.values import PROVIDERS, available, register

from .graph import Graph


def exact_value(*names: str, overwrite: bool = False):
    """Register a function as the exact provider of the values ``names`` (a decorator)::

        @exact_value("steps_to_goal")
        def steps_to_goal(ctx, t, next_keys, events_bits, **settings):
            return ...  # one entry per transition of layer t
    """
    if not names:
        raise TypeError("exact_value needs at least one value name")

    def decorate(fn):
        for name in names:
            register(name, "exact", fn, overwrite=overwrite)
        return fn

    return decorate


class ValueContext:
    """One solve's view for the providers: ``graph``, ``level``, ``max_states`` and ``cache``
    (a dict a provider may fill with what it computes once for every layer)."""

    def __init__(self, graph: Graph, level: Level, max_states: int):
        self.graph, self.level, self.max_states = graph, level, max_states
        self.cache: dict = {}

    def for_layer(self, t: int, needs: dict, next_keys: np.ndarray, events_bits: np.ndarray) -> dict:
        """name -> array over the transitions of layer ``t``, for every value in ``needs``."""
        out = {}
        for name, settings in needs.items():
            exact = PROVIDERS[name].exact if name in PROVIDERS else None
            if exact is None:
                raise ValueError(f"the exact solver cannot provide value {name!r}; it provides {available('exact')} "
                                 "(register an exact provider with agents.exact.values.exact_value)")
            out[name] = exact(self, t, next_keys, events_bits, **dict(settings or {}))
        return out

