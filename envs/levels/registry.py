"""The level registry: name -> :class:`~envs.core.level.Level`, and each level's gymnasium id.

The built-in levels are registered by :mod:`envs.levels` on import; users add theirs with
:func:`register_level` or :func:`load_level`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping

from ..core.level import Level, LevelError, compile_level


class _Levels(Mapping):
    """Name -> :class:`Level`. Generated levels are registered as factories and built (and
    checked) on first use, so importing the package stays fast."""

    def __init__(self):
        self._levels: dict[str, Level] = {}
        self._factories: dict[str, Callable[[], Level]] = {}

    def __getitem__(self, name: str) -> Level:
        if name not in self._levels and name in self._factories:
            level = self._factories.pop(name)()
            if level.name != name:
                raise LevelError(name, f"the factory registered as {name!r} built a level named {level.name!r}")
            compile_level(level)
            self._levels[name] = level
        return self._levels[name]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted({*self._levels, *self._factories}))

    def __len__(self) -> int:
        return len({*self._levels, *self._factories})

    def __contains__(self, name) -> bool:
        return name in self._levels or name in self._factories


LEVELS = _Levels()
GYM_IDS: dict[str, str] = {}


def gym_id(name: str) -> str:
    """``off_switch`` -> ``stopbutton/OffSwitch-v0``."""
    return "stopbutton/" + "".join(part.capitalize() for part in name.split("_")) + "-v0"


def register_level(level: Level | Callable[[], Level], *, name: str | None = None, overwrite: bool = False) -> str:
    """Check ``level``, add it to the registry and register its gymnasium id (returned).

    ``level`` may also be a zero-argument factory (with ``name`` given): the level is then
    built and checked on first use. The gymnasium id works with ``gymnasium.make`` and
    ``gymnasium.make_vec``. Registering a level equal to the one already under its name does
    nothing; a different one needs ``overwrite=True``. Two names that give the same gymnasium id
    (``a1`` and ``a_1``) cannot both be registered.
    """
    import gymnasium

    if isinstance(level, Level):
        name = level.name
    elif callable(level):
        if name is None:
            raise TypeError("register_level(factory) needs name=")
    else:
        raise TypeError(f"register_level expects a Level or a factory, got {type(level).__name__}")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise LevelError(name, "level names are lower_snake_case (letters, digits, underscores)")
    env_id = gym_id(name)
    clash = [other for other, other_id in GYM_IDS.items() if other_id == env_id and other != name]
    if clash:
        raise LevelError(name, f"its gymnasium id {env_id!r} is already taken by level {clash[0]!r}; choose a "
                         "name that differs in more than underscores")
    if name in LEVELS and not overwrite:
        if isinstance(level, Level) and name in LEVELS._levels and LEVELS._levels[name] == level:
            return env_id  # the same level again: nothing to do
        raise ValueError(f"a different level named {name!r} is already registered (pass overwrite=True to "
                         "replace it, or give yours another name)")
    LEVELS._levels.pop(name, None)
    LEVELS._factories.pop(name, None)
    if isinstance(level, Level):
        compile_level(level)
        LEVELS._levels[name] = level
    else:
        LEVELS._factories[name] = level
    GYM_IDS[name] = env_id
    if env_id in gymnasium.registry:
        del gymnasium.registry[env_id]
    gymnasium.register(
        id=env_id,
        entry_point="envs.gym:StopButtonEnv",
        vector_entry_point="envs.vector:StopButtonVectorEnv",
        kwargs={"level": name},
    )
    return env_id


def get_level(name: str | Level) -> Level:
    """A registered level by name or by gymnasium id (``"off_switch"`` or
    ``"stopbutton/OffSwitch-v0"``; a :class:`Level` passes through). An unknown name raises
    KeyError with the closest registered names and the full list."""
    if isinstance(name, Level):
        return name
    if isinstance(name, str) and name not in LEVELS:
        by_id = {v: k for k, v in GYM_IDS.items()}
        if name in by_id:
            name = by_id[name]
    try:
        return LEVELS[name]
    except (KeyError, TypeError):
        import difflib

        guess = difflib.get_close_matches(str(name), [*LEVELS, *GYM_IDS.values()], n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(repr(g) for g in guess)}? " if guess else ""
        raise KeyError(f"unknown level {name!r}; {hint}registered levels are {sorted(LEVELS)}") from None


def load_level(path, register: bool = True) -> Level:
    """Read a level file (see :func:`~envs.core.level.parse_level_text`) and, unless
    ``register=False``, register it so that ``gymnasium.make(gym_id(level.name))`` finds it."""
    from ..core.level import load_level as _load

    level = _load(path)
    if register:
        register_level(level)
    return level
