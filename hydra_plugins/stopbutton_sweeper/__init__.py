"""Hydra's side of ``hydra/sweeper=union`` (:mod:`experiments.sweeper` documents it): Hydra instantiates
sweepers only from the ``hydra_plugins`` namespace package."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from experiments.sweeper import union_jobs

__all__ = ["UnionSweeper"]


class UnionSweeper(BasicSweeper):
    """The basic sweeper over the union of ``grids`` (:mod:`experiments.sweeper`)."""

    def __init__(self, max_batch_size: Optional[int], params: Optional[Dict[str, str]] = None,
                 grids: Optional[List[Dict[str, Any]]] = None) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.grids = [dict(g) for g in grids] if grids else None
        self._arguments: list[str] = []

    def sweep(self, arguments: List[str]) -> Any:
        self._arguments = list(arguments)
        return super().sweep(arguments)

    def split_arguments(self, overrides, max_batch_size):  # called by BasicSweeper.sweep
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        jobs = union_jobs(self.params, self.grids, self._arguments, parser)
        if max_batch_size is None:
            return [jobs]
        return list(BasicSweeper.split_overrides_to_chunks(jobs, max_batch_size))
