"""Values objectives ask for, computed exactly on a level's reachable graph: a registry of providers.

An objective names the values it reads in :meth:`~agents.objectives.Objective.needs`
(``{"aux_q": {"num": 30, ...}}``). The exact solver looks each name up here: a provider is a
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

from typing import Callable

import numpy as np

from envs.core.level import Level

from .graph import Graph

#: Value name -> exact provider.
EXACT_VALUES: dict[str, Callable] = {}


def exact_value(*names: str, overwrite: bool = False):
    """Register a function as the exact provider of the values ``names`` (a decorator)::

        @exact_value("steps_to_goal")
        def steps_to_goal(ctx, t, next_keys, events_bits, **settings):
            return ...  # one entry per transition of layer t
    """
    if not names:
        raise TypeError("exact_value needs at least one value name")

    def register(fn):
        for name in names:
            if name in EXACT_VALUES and EXACT_VALUES[name] is not fn and not overwrite:
                raise ValueError(f"an exact provider of {name!r} is already registered "
                                 f"({EXACT_VALUES[name].__module__}.{EXACT_VALUES[name].__qualname__}); pass "
                                 "overwrite=True to replace it")
            EXACT_VALUES[name] = fn
        return fn

    return register


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
            provider = EXACT_VALUES.get(name)
            if provider is None:
                raise ValueError(f"the exact solver cannot provide value {name!r}; it provides {sorted(EXACT_VALUES)} "
                                 "(register a provider with agents.exact.values.exact_value)")
            out[name] = provider(self, t, next_keys, events_bits, **dict(settings or {}))
        return out

