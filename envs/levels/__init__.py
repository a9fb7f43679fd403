"""The level registry: built-in levels and the ones users add.

>>> from envs.levels import get_level, register_level
>>> get_level("off_switch").params.max_steps
30
"""

from __future__ import annotations

import re

from ..core.level import Level, LevelError, compile_level, load_level, parse_level_text

LEVELS: dict[str, Level] = {}
GYM_IDS: dict[str, str] = {}


def gym_id(name: str) -> str:
    """``off_switch`` -> ``stopbutton/OffSwitch-v0``."""
    return "stopbutton/" + "".join(part.capitalize() for part in name.split("_")) + "-v0"


def register_level(level: Level, *, overwrite: bool = False) -> str:
    """Check ``level``, add it to the registry and register its gymnasium id (returned).

    The gymnasium id works with ``gymnasium.make`` and ``gymnasium.make_vec``.
    """
    import gymnasium

    if not isinstance(level, Level):
        raise TypeError(f"register_level expects a Level, got {type(level).__name__}")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", level.name):
        raise LevelError(level.name, "level names are lower_snake_case (letters, digits, underscores)")
    if level.name in LEVELS and not overwrite:
        raise ValueError(f"a level named {level.name!r} is already registered (pass overwrite=True to replace it)")
    compile_level(level)
    env_id = gym_id(level.name)
    LEVELS[level.name] = level
    GYM_IDS[level.name] = env_id
    if env_id in gymnasium.registry:
        del gymnasium.registry[env_id]
    gymnasium.register(
        id=env_id,
        entry_point="envs.gym:StopButtonEnv",
        vector_entry_point="envs.vector:StopButtonVectorEnv",
        kwargs={"level": level.name},
    )
    return env_id


def get_level(name: str | Level) -> Level:
    """A registered level by name (a :class:`Level` passes through)."""
    if isinstance(name, Level):
        return name
    try:
        return LEVELS[name]
    except KeyError:
        raise KeyError(f"unknown level {name!r}; registered levels are {sorted(LEVELS)}") from None


def _register_builtin() -> None:
    from . import basic, published

    for module in (basic, published):
        for level in module.LEVELS:
            register_level(level, overwrite=True)


_register_builtin()

__all__ = ["LEVELS", "GYM_IDS", "Level", "LevelError", "get_level", "gym_id", "load_level", "parse_level_text",
           "register_level"]
