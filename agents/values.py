"""The registry of value providers: one entry per value name, with an exact and an online side.

An objective reads what the transition alone does not tell it (the value of going on had the
shutdown not come, auxiliary Q-values, reachability, meta-episode counts) from ``t.values``, and
names those values in :meth:`~agents.objectives.Objective.needs`. Each name has one
:class:`ValueProvider` here:

``exact``
    a function ``exact(ctx, t, next_keys, events_bits, **settings)`` that gives the value of
    every transition of step layer ``t`` of a level's reachable graph
    (:class:`agents.exact.values.ValueContext`); the exact solver and the learners' exact tables
    use it. Register with :func:`agents.exact.values.exact_value`.
``online``
    a class computed inside a learner's loop, from the engine, every batched step
    (:class:`agents.learners.values.OnlineValue`): learned (a critic of the learner's) or tracked
    (counted from the episodes, DReST's meta-episode counts). Register with
    :func:`agents.learners.values.online_value`.

A user's objective that needs a new value is its own module plus one provider (either side or
both), registered there: no edit of the library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass
class ValueProvider:
    """How one value is computed: ``exact`` on the solver's graph, ``online`` in a learner's loop
    (either may be None: not available that way)."""

    name: str
    exact: Callable | None = None
    online: type | None = None


#: Value name -> its provider.
PROVIDERS: dict[str, ValueProvider] = {}


def provider(name: str) -> ValueProvider:
    """The provider of value ``name`` (created empty on first use)."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"value names are non-empty strings, got {name!r}")
    return PROVIDERS.setdefault(name, ValueProvider(name))


def register(name: str, side: str, impl, overwrite: bool = False) -> None:
    """Set the ``side`` (``"exact"`` or ``"online"``) of value ``name``'s provider to ``impl``; a
    different implementation already there needs ``overwrite=True``."""
    if side not in ("exact", "online"):
        raise ValueError(f"side must be 'exact' or 'online', got {side!r}")
    p = provider(name)
    old = getattr(p, side)
    if old is not None and old is not impl and not overwrite:
        raise ValueError(f"value {name!r} already has an {side} provider ({old.__module__}.{old.__qualname__}); pass "
                         "overwrite=True to replace it")
    setattr(p, side, impl)


def available(side: str) -> list[str]:
    """The value names with an implementation on ``side``, sorted."""
    return sorted(n for n, p in PROVIDERS.items() if getattr(p, side) is not None)
