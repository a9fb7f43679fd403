"""A sweep as a union of grids: ``hydra/sweeper=union``.

Hydra's basic sweeper runs one grid, the cartesian product of every swept key. A study often
wants several grids in one sweep: deference against the human's error at a fixed signal, and
against the signal at a fixed error, and a learner that needs neither. ``union`` takes the basic
sweeper's ``params`` (crossed into every grid) and a list ``grids``, each a mapping of key to
values like ``params``; the jobs are the union of ``params x grid x command line`` over the grids,
in order, each distinct job once (a point two grids share runs once)::

    defaults:
      - override /hydra/sweeper: union
    hydra:
      sweeper:
        params:
          seed: range(3)
        grids:
          - {level.params.human_error: "0,0.1,0.2", level.params.preference_signal: "0.5"}
          - {level.params.human_error: "0.1", level.params.preference_signal: "0.5,0.75,1.0"}

A key given on the command line overrides the same key of ``params`` and of every grid
(``seed='range(5)'`` reruns all the grids with five seeds). Without ``grids`` the union sweeper is
the basic sweeper. Everything else (``max_batch_size``, the launchers, resuming) is the basic
sweeper's. The sweeper class lives in ``hydra_plugins.stopbutton_sweeper`` (Hydra instantiates
sweepers only from its ``hydra_plugins`` namespace); this module holds its config and job expansion.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

__all__ = ["UnionSweeperConf", "union_jobs"]


@dataclass
class UnionSweeperConf:
    """``hydra/sweeper=union``: the basic sweeper's settings plus ``grids``."""

    _target_: str = "hydra_plugins.stopbutton_sweeper.UnionSweeper"
    #: Jobs handed to the launcher at a time (None: all at once), as the basic sweeper's.
    max_batch_size: Optional[int] = None
    #: Swept in every grid (key -> values, as in the basic sweeper).
    params: Optional[Dict[str, str]] = None
    #: The grids whose union is the sweep; each maps key -> values and is crossed with ``params``.
    grids: Optional[List[Dict[str, Any]]] = None


ConfigStore.instance().store(group="hydra/sweeper", name="union", node=UnionSweeperConf, provider="stopbutton")


def _as_override(key: str, value: Any) -> str:
    if isinstance(value, bool):
        value = str(value).lower()
    return f"{key}={value}"


def union_jobs(params: dict | None, grids: Sequence[dict] | None, arguments: Sequence[str],
               parser: OverridesParser | None = None, dedupe: bool = True) -> list[list[str]]:
    """The override list of every job: ``params x grid x arguments`` for each grid (``arguments``, the
    command line, win over both), in grid order, each distinct job once (``dedupe=False``: as the
    basic sweeper, which runs a value listed twice twice)."""
    parser = parser or OverridesParser.create()
    grids = list(grids) if grids else [{}]
    jobs, seen = [], set()
    for i, grid in enumerate(grids):
        if not hasattr(grid, "items"):
            raise HydraException(f"hydra.sweeper.grids[{i}] must be a mapping of key to values, got {grid!r}")
        merged = {**(params or {}), **grid}
        conf = [_as_override(k, v) for k, v in merged.items()] + list(arguments)
        for batch in BasicSweeper.split_arguments(parser.parse_overrides(conf), None):
            for job in batch:
                key = tuple(sorted(job))
                if not dedupe or key not in seen:
                    seen.add(key)
                    jobs.append(list(job))
    return jobs
