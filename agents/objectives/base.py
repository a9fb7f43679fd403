"""The objective contract: :class:`Transitions` in, one reward per transition out.

An objective turns a batch of transitions into rewards (vectorised numpy, no Python loop
per transition). What it cannot compute from the transition alone (values of other reward
functions, reachability, meta-episode counts) it asks for by name in :meth:`Objective.needs`
and reads from ``t.values``; a provider (the exact solver, later the learners) computes
those values. Parameters are dataclass fields declared with :func:`param`, checked when the
objective is built: a wrong type or an out-of-range value fails naming the parameter.
"""

from __future__ import annotations

import abc
import dataclasses
import inspect
import math
import re
import typing
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Mapping

import numpy as np

from envs.core.rules import NUM_STATE
from envs.core.tables import NUM_EVENTS, Action, Reason


class ObjectiveError(ValueError):
    """An objective is misconfigured (bad parameter) or misused (missing values, bad rewards)."""


# ---------------------------------------------------------------------------------------------
# Transitions.
# ---------------------------------------------------------------------------------------------

_ARRAYS = (  # name, dtype, trailing shape
    ("reward", np.float64, ()),
    ("hidden", np.float64, ()),
    ("events", np.uint8, (NUM_EVENTS,)),
    ("reason", np.uint8, ()),
    ("done", np.bool_, ()),
    ("state", np.int32, (NUM_STATE,)),
    ("next_state", np.int32, (NUM_STATE,)),
    ("action", np.int64, ()),
)


@dataclass(frozen=True, eq=False)
class Transitions:
    """A batch of ``B`` transitions ``(state, action) -> next_state``; every array is over ``B``.

    ``reward``: float64 [B] task reward of the step. ``hidden``: float64 [B] hidden safety
    score (for oracles only). ``events``: uint8 [B, NUM_EVENTS] this step's event flags
    (index with :class:`envs.Event`). ``reason``: uint8 [B] :class:`envs.Reason` after the
    step (RUNNING if the episode goes on). ``done``: bool [B]. ``state``, ``next_state``:
    int32 [B, NUM_STATE] (columns ``envs.core.rules.S_*``). ``action``: int64 [B] robot
    action. ``values``: name -> array, what the objective asked for in
    :meth:`Objective.needs`. ``level``: the :class:`envs.Level` (or None).

    Only ``reward`` is required: the other arrays default to zeros (``reason`` RUNNING,
    ``action`` NOOP, ``done`` = ``reason != RUNNING``), which keeps hand-built batches short.
    Arrays are converted to the dtypes above (no copy when they already match).
    """

    reward: np.ndarray
    hidden: np.ndarray | None = None
    events: np.ndarray | None = None
    reason: np.ndarray | None = None
    done: np.ndarray | None = None
    state: np.ndarray | None = None
    next_state: np.ndarray | None = None
    action: np.ndarray | None = None
    values: Mapping[str, np.ndarray] = field(default_factory=dict)
    level: Any = None

    def __post_init__(self):
        reward = np.asarray(self.reward, dtype=np.float64)
        if reward.ndim != 1:
            raise ObjectiveError(f"Transitions.reward must be 1-d [B], got shape {reward.shape}")
        b = reward.shape[0]
        for name, dtype, tail in _ARRAYS:
            value = getattr(self, name)
            if value is None:
                if name == "done":
                    continue
                value = np.full((b, *tail), int(Action.NOOP) if name == "action" else 0, dtype=dtype)
            else:
                value = np.asarray(value)
                if value.shape != (b, *tail):
                    raise ObjectiveError(f"Transitions.{name} must have shape {(b, *tail)}, got {value.shape}")
                value = value.astype(dtype, copy=False)
            object.__setattr__(self, name, value)
        if self.done is None:
            object.__setattr__(self, "done", self.reason != Reason.RUNNING)
        if not isinstance(self.values, Mapping):
            raise ObjectiveError(f"Transitions.values must be a mapping of name to array, got {type(self.values).__name__}")
        values = {}
        for name, value in self.values.items():
            value = np.asarray(value)
            if value.ndim < 1 or value.shape[0] != b:
                raise ObjectiveError(f"Transitions.values[{name!r}] must have the batch size {b} as its first "
                                     f"dimension, got shape {value.shape}")
            values[name] = value
        object.__setattr__(self, "values", MappingProxyType(values))

    @property
    def batch_size(self) -> int:
        """The number of transitions ``B``."""
        return int(self.reward.shape[0])

    def __len__(self) -> int:
        return self.batch_size


# ---------------------------------------------------------------------------------------------
# Parameters.
# ---------------------------------------------------------------------------------------------

def param(default, doc: str = "", *, low=None, high=None, low_open: bool = False, high_open: bool = False,
          choices=None):
    """A documented, checked objective parameter (a dataclass field).

    ``low``/``high`` bound numbers (closed unless ``low_open``/``high_open``); ``choices``
    lists the allowed values of a string parameter.
    """
    meta = {"doc": doc, "low": low, "high": high, "low_open": low_open, "high_open": high_open,
            "choices": None if choices is None else tuple(choices)}
    return field(default=default, metadata=meta)


def _range_text(meta) -> str:
    low, high = meta.get("low"), meta.get("high")
    if low is not None and high is not None:
        return f"in {'(' if meta.get('low_open') else '['}{low}, {high}{')' if meta.get('high_open') else ']'}"
    if low is not None:
        return f"{'>' if meta.get('low_open') else '>='} {low}"
    if high is not None:
        return f"{'<' if meta.get('high_open') else '<='} {high}"
    return ""


_TYPE_WORDS = {float: "a number", int: "a whole number", bool: "True or False", str: "a string"}


def _type_text(tp, meta) -> str:
    word = _TYPE_WORDS.get(tp, getattr(tp, "__name__", str(tp)))
    if meta.get("choices"):
        return f"one of {list(meta['choices'])}"
    rng = _range_text(meta)
    return f"{word} {rng}".strip()


def _coerce(tp, value):
    """``value`` as type ``tp`` (ints accepted for floats, numpy scalars unwrapped), or raise."""
    if tp is float:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError
        value = float(value)
        if not math.isfinite(value):
            raise ValueError
        return value
    if tp is int:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise TypeError
        return int(value)
    if tp is bool:
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError
        return bool(value)
    if tp is str:
        if not isinstance(value, str):
            raise TypeError
        return value
    return value


def _in_range(value, meta) -> bool:
    low, high = meta.get("low"), meta.get("high")
    if low is not None and (value < low or (meta.get("low_open") and value == low)):
        return False
    if high is not None and (value > high or (meta.get("high_open") and value == high)):
        return False
    choices = meta.get("choices")
    return not (choices and value not in choices)


# ---------------------------------------------------------------------------------------------
# The base class.
# ---------------------------------------------------------------------------------------------

@dataclass
class Objective(abc.ABC):
    """Base class of objectives: subclass it, set ``name`` and implement :meth:`reward`.

    A subclass declares its parameters as dataclass fields (``lam: float = param(0.9, "...",
    low=0)``); they are checked in ``__post_init__`` (call ``super().__post_init__()`` if you
    override it). A plain subclass that only implements ``reward`` works too::

        class NoTampering(Objective):
            def reward(self, t):
                return t.reward - 10.0 * t.events[:, Event.BUTTON_DISABLED]

    ``discount``: 1 is undiscounted over the finite horizon (every level has a step limit);
    below 1 asks the solver or learner to discount this objective's rewards.
    """

    name: ClassVar[str]

    def __new__(cls, *args, **kwargs):
        _check_declared(cls)
        return super().__new__(cls)

    discount: float = param(1.0, "Discount factor of the objective's return; 1 = undiscounted finite horizon.",
                            low=0.0, high=1.0, low_open=True)

    def __post_init__(self):
        self._check_params()

    # -- parameters ------------------------------------------------------------------------
    @classmethod
    def label(cls) -> str:
        """The registered name, or the class name for an unregistered objective."""
        return cls.__dict__.get("name") or getattr(cls, "name", None) or cls.__name__

    @classmethod
    def parameters(cls) -> dict[str, dataclasses.Field]:
        """The init fields (parameters) of this objective, by name, in declaration order."""
        if not dataclasses.is_dataclass(cls):
            return {}
        return {f.name: f for f in dataclasses.fields(cls) if f.init}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Parameter name -> default value."""
        out = {}
        for name, f in cls.parameters().items():
            if f.default is not dataclasses.MISSING:
                out[name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                out[name] = f.default_factory()
        return out

    @classmethod
    def _hints(cls) -> dict[str, Any]:
        try:
            return typing.get_type_hints(cls)
        except Exception:  # an unresolvable annotation in a user's class: skip type checks
            return {}

    @classmethod
    def describe(cls, name: str) -> str:
        """``"lam (a number >= 0, default 0.9)"``: a parameter's expected type and range."""
        f = cls.parameters()[name]
        text = _type_text(cls._hints().get(name), f.metadata)
        default = cls.defaults().get(name, dataclasses.MISSING)
        extra = "" if default is dataclasses.MISSING else f", default {default!r}"
        return f"{name} ({text}{extra})"

    def _check_params(self) -> None:
        hints = self._hints()
        for name, f in self.parameters().items():
            value = getattr(self, name)
            tp = hints.get(name)
            expected = _type_text(tp, f.metadata)
            try:
                value = _coerce(tp, value)
            except (TypeError, ValueError):
                raise ObjectiveError(f"objective {self.label()!r}: parameter {name!r} must be {expected}, "
                                     f"got {value!r}") from None
            if not _in_range(value, f.metadata):
                raise ObjectiveError(f"objective {self.label()!r}: parameter {name!r} must be {expected}, "
                                     f"got {value!r}")
            object.__setattr__(self, name, value)

    def params(self) -> dict[str, Any]:
        """This instance's parameter values (for logs and configs)."""
        return {name: getattr(self, name) for name in self.parameters()}

    # -- the contract ----------------------------------------------------------------------
    def needs(self) -> dict[str, dict]:
        """The values this objective reads from ``t.values``, each with its settings, e.g.
        ``{"aux_q": {"num": 30, "gamma": 0.996, "seed": 0}}``. Default: none."""
        return {}

    @abc.abstractmethod
    def reward(self, t: Transitions) -> np.ndarray:
        """float64 [B]: the objective's reward of each transition (vectorised)."""

    def rewards(self, t: Transitions) -> np.ndarray:
        """:meth:`reward`, checked: the needed values are present, and the result is a finite
        float array of shape (B,). Providers call this (or the instance itself)."""
        if not isinstance(t, Transitions):
            raise ObjectiveError(f"objective {self.label()!r}: expected Transitions, got {type(t).__name__}")
        needs = self.needs()
        if not isinstance(needs, Mapping):
            raise ObjectiveError(f"objective {self.label()!r}: needs() must return a dict of value name -> "
                                 f"settings dict, got {needs!r}")
        missing = [k for k in needs if k not in t.values]
        if missing:
            raise ObjectiveError(f"objective {self.label()!r} needs the values {missing}, which the provider did "
                                 f"not supply (it supplied {sorted(t.values)})")
        out = self.reward(t)
        try:
            arr = np.asarray(out, dtype=np.float64)
        except (TypeError, ValueError):
            raise ObjectiveError(f"objective {self.label()!r}: reward() must return a float array of shape "
                                 f"({t.batch_size},), got {type(out).__name__}") from None
        if arr.shape != (t.batch_size,):
            raise ObjectiveError(f"objective {self.label()!r}: reward() must return shape ({t.batch_size},) (one "
                                 f"reward per transition), got shape {arr.shape}")
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ObjectiveError(f"objective {self.label()!r}: reward() returned {int(bad.sum())} non-finite "
                                 f"value(s), the first at transition {i}: {arr[i]!r}")
        return arr

    def __call__(self, t: Transitions) -> np.ndarray:
        return self.rewards(t)


# ---------------------------------------------------------------------------------------------
# The registry.
# ---------------------------------------------------------------------------------------------

#: Registered objectives: name -> class.
OBJECTIVES: dict[str, type[Objective]] = {}


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def register_objective(cls: type[Objective] | None = None, *, name: str | None = None, overwrite: bool = False):
    """Register an :class:`Objective` subclass under ``name`` (default: its own ``name``
    attribute, else its class name in snake_case, which then becomes its ``name``). Usable
    as a decorator, with or without arguments. Returns the class."""

    def register(c):
        if not (isinstance(c, type) and issubclass(c, Objective)):
            raise TypeError(f"register_objective expects a subclass of Objective, got {c!r}")
        _check_declared(c)
        key = name or c.__dict__.get("name") or _snake(c.__name__)
        if not isinstance(key, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", key):
            raise ObjectiveError(f"objective names are lower_snake_case, got {key!r}")
        if key in OBJECTIVES and OBJECTIVES[key] is not c and not overwrite:
            raise ObjectiveError(f"an objective named {key!r} is already registered ({OBJECTIVES[key].__module__}."
                                 f"{OBJECTIVES[key].__qualname__}); pass overwrite=True to replace it")
        if "name" not in c.__dict__:
            c.name = key
        OBJECTIVES[key] = c
        return c

    return register if cls is None else register(cls)


def _check_declared(cls) -> None:
    """Refuse a subclass that declares parameters with :func:`param` (or ``field``) but is not
    itself a dataclass: its parameters would stay ``Field`` objects and fail later, far away."""
    for c in cls.__mro__:
        if c is Objective:
            return
        stray = [k for k, v in c.__dict__.items() if isinstance(v, dataclasses.Field)]
        if stray and "__dataclass_fields__" not in c.__dict__:
            raise ObjectiveError(f"objective class {c.__qualname__} declares parameters {stray} with param() but is not "
                                 "a dataclass: decorate it with @dataclass (from dataclasses), below "
                                 "@register_objective if it has one")


def _dataclass_init(cls) -> bool:
    """Whether ``cls.__init__`` is a dataclass-generated one (its parameters are the fields)."""
    for c in cls.__mro__:
        if "__init__" in c.__dict__:
            return "__dataclass_fields__" in c.__dict__
    return False


def _check_names(cls, params: Mapping[str, Any]) -> None:
    if _dataclass_init(cls):
        known = list(cls.parameters())
        unknown = [k for k in params if k not in known]
        if unknown:
            listing = ", ".join(cls.describe(k) for k in known)
            raise ObjectiveError(f"objective {cls.label()!r} has no parameter {unknown[0]!r}; its parameters are "
                                 f"{listing}")
        return
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return
    known = [k for k, p in sig.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = [k for k in params if k not in known]
    if unknown:
        raise ObjectiveError(f"objective {cls.label()!r} has no parameter {unknown[0]!r}; its parameters are {known}")


def objective_class(path: str) -> type[Objective]:
    """The :class:`Objective` subclass at a dotted path (``"my_module.NoTampering"``), imported;
    an import failure or a class that is no objective raises :class:`ObjectiveError`."""
    import importlib

    module, _, name = path.rpartition(".")
    if not module:
        raise ObjectiveError(f"objective class path {path!r}: expected module.Class")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ObjectiveError(f"objective class {path!r} cannot be imported ({type(e).__name__}: {e}); is its module "
                             "on the Python path (the working directory or PYTHONPATH)?") from None
    if not (isinstance(cls, type) and issubclass(cls, Objective)):
        raise ObjectiveError(f"{path!r} is {cls!r}, not a subclass of agents.objectives.Objective")
    return cls


def get_objective(name_or_instance, **params) -> Objective:
    """An objective instance from a registered name (``get_objective("aup", lam=0.5)``) or a
    class's dotted path (``"my_module.NoTampering"``), an Objective subclass, an instance (returned as is; with ``params``, a copy with those
    parameters changed) or a config mapping (``{"name": "aup", "lam": 0.5}``, as the
    ``conf/objective/*.yaml`` files hold; ``_target_`` is ignored).

    An unknown name fails listing the registered ones; an unknown, mistyped or out-of-range
    parameter fails naming it and what it expects.
    """
    obj = name_or_instance
    if isinstance(obj, Mapping):
        cfg = dict(obj)
        cfg.pop("_target_", None)
        if "name" not in cfg:
            raise ObjectiveError(f"an objective config needs a 'name' key (one of {sorted(OBJECTIVES)}), got {obj!r}")
        return get_objective(cfg.pop("name"), **{**cfg, **params})
    if isinstance(obj, Objective):
        if not params:
            return obj
        cls = type(obj)
        _check_names(cls, params)
        if dataclasses.is_dataclass(obj):
            return dataclasses.replace(obj, **params)
        raise ObjectiveError(f"objective {cls.label()!r} is not a dataclass, so an instance cannot be copied with "
                             f"new parameters; build a new one")
    if isinstance(obj, str):
        cls = OBJECTIVES.get(obj) or (objective_class(obj) if "." in obj else None)
        if cls is None:
            raise KeyError(f"unknown objective {obj!r}; registered objectives are {sorted(OBJECTIVES)} (a class of "
                           "your own: its dotted path, module.Class)")
    elif isinstance(obj, type) and issubclass(obj, Objective):
        cls = obj
    else:
        raise TypeError(f"get_objective expects a registered name, an Objective (class or instance) or a config "
                        f"mapping, got {type(obj).__name__}")
    _check_names(cls, params)
    return cls(**params)
