"""Exact objective tables kept on disk: built once per (level, objective, code), read by later runs.

A learner that takes an objective's values from the exact solver applies the objective to every
transition of the level's reachable graph (``agents.learners.rewards``); on a large level that
takes minutes. :class:`TableCache` keeps those per-transition arrays in a directory, one ``.npz``
per key, built by one process at a time (:func:`agents.io.file_lock`; the others wait, then read)
and written atomically (:func:`agents.io.atomic_write`).

The key covers everything the table depends on: the level (its maps, legend and params), the
objective's class path, its parameters, the *source* of its class (editing a user objective's
``reward`` makes a new entry), the state limit, and a digest of the library code that builds
tables (the solver, the value providers, the objectives, the reward tracker).
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from pathlib import Path
from typing import Callable

import numpy as np

from agents.io import atomic_write, file_lock

log = logging.getLogger(__name__)

FORMAT = "npz-v3"


def _library_digest() -> str:
    """Digest of the code that computes exact objective tables (this package, the objectives and
    the learners' reward tracker)."""
    agents_dir = Path(__file__).resolve().parents[1]
    files = sorted((agents_dir / "exact").glob("*.py")) + sorted((agents_dir / "objectives").glob("*.py"))
    files.append(agents_dir / "learners" / "rewards.py")
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def objective_source(objective) -> str:
    """The source of the objective's class and its bases below :class:`Objective` (empty where
    Python cannot find it, e.g. a class typed into a REPL)."""
    from agents.objectives import Objective

    parts = []
    for cls in type(objective).__mro__:
        if cls is Objective or cls is object:
            break
        try:
            parts.append(inspect.getsource(cls))
        except (OSError, TypeError):
            parts.append(f"<no source: {cls.__module__}.{cls.__qualname__}>")
    return "\n".join(parts)


def _compact(a: np.ndarray) -> np.ndarray:
    """An integer array in the smallest integer dtype that holds its values."""
    if a.dtype.kind not in "iu":
        return a
    for dt in (np.int8, np.int16, np.int32):
        info = np.iinfo(dt)
        if a.size == 0 or (a.min() >= info.min and a.max() <= info.max):
            return a.astype(dt)
    return a


class TableCache:
    """A directory of exact objective tables (see the module docstring)::

        cache = TableCache("cache/exact")
        agents.train("coffee_hazards", "ppo", "relative_reachability", exact_cache=cache)
    """

    def __init__(self, directory):
        self.directory = Path(directory)
        self._digest: str | None = None

    def __repr__(self) -> str:
        return f"TableCache({str(self.directory)!r})"

    def key(self, level, objective, max_states: int) -> str:
        """The hex key of a table: level, objective (class path, parameters, source), state limit,
        library code."""
        if self._digest is None:
            self._digest = _library_digest()
        cls = type(objective)
        text = repr((repr(level), f"{cls.__module__}.{cls.__qualname__}", repr(objective), objective_source(objective),
                     int(max_states), self._digest, FORMAT))
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def path(self, level, objective, max_states: int) -> Path:
        """Where the table of (level, objective, max_states) is kept."""
        return self.directory / f"{level.name}-{type(objective).__name__}-{self.key(level, objective, max_states)}.npz"

    def get(self, level, objective, max_states: int, build: Callable[[], dict]) -> dict:
        """The arrays of the table: read from the cache, or ``build()`` (a dict of name -> array),
        stored, and returned. An unreadable entry is built again."""
        path = self.path(level, objective, max_states)
        with file_lock(path.with_suffix(".lock")):
            if path.exists():
                try:
                    with np.load(path, allow_pickle=False) as z:
                        names = [str(n) for n in z["__names__"]]
                        dtypes = [str(d) for d in z["__dtypes__"]]
                        return {n: z[n].astype(d, copy=False) for n, d in zip(names, dtypes)}
                except Exception as e:  # unreadable: build it again
                    log.warning("exact cache %s unreadable (%s); rebuilding", path, e)
            arrays = build()
            bad = [k for k, v in arrays.items() if not isinstance(v, np.ndarray) or k.startswith("__")]
            if bad:
                raise TypeError(f"TableCache.get: build() must return arrays under plain names, got {bad}")

            def write(tmp):
                names = sorted(arrays)
                with open(tmp, "wb") as f:
                    np.savez(f, __names__=np.array(names), __dtypes__=np.array([str(arrays[n].dtype) for n in names]),
                             **{n: _compact(arrays[n]) for n in names})

            atomic_write(path, write)
            return arrays
