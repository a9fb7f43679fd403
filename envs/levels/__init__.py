"""The level registry: built-in levels and the ones users add.

>>> from envs.levels import get_level, register_level
>>> get_level("off_switch").params.max_steps
30
"""

from __future__ import annotations

from ..core.level import Level, LevelError, parse_level_text
from .registry import GYM_IDS, LEVELS, get_level, gym_id, load_level, register_level


#: The modules of this package that define the built-in levels (``LEVELS`` and ``FACTORIES``).
BUILTIN_MODULES = ("basic", "published", "hazards", "delay", "seeking", "procedural", "game")


def _register_builtin() -> None:
    import importlib

    for module in (importlib.import_module(f"{__name__}.{name}") for name in BUILTIN_MODULES):
        for level in getattr(module, "LEVELS", ()):
            register_level(level, overwrite=True)
        # Generated levels: built (and checked) on first use.
        for name, factory in getattr(module, "FACTORIES", {}).items():
            register_level(factory, name=name, overwrite=True)


_register_builtin()

from .delay import delay_structure, procedural_delay_level  # noqa: E402  (after the registry exists)
from .procedural import procedural_level  # noqa: E402

__all__ = ["LEVELS", "GYM_IDS", "Level", "LevelError", "delay_structure", "get_level", "gym_id", "load_level",
           "parse_level_text", "procedural_delay_level", "procedural_level", "register_level"]
