"""Levels are data: an ASCII map, a legend and a frozen params dataclass.

``compile_level`` turns a :class:`Level` into :class:`CompiledLevel`, the static arrays the
kernel, the reference step and the exact solver share. Every malformed map is rejected
with a :class:`LevelError` naming the level, the row and column, and what is wrong.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np

from .tables import (
    ACTION_LETTERS,
    DEFAULT_LEGEND,
    EVENT_NAMES,
    HUMAN_WALKABLE,
    NUM_CHANNELS,
    NUM_EVENTS,
    PREFERENCE_CHANNELS,
    ROBOT_WALKABLE,
    DELTA,
    Entity,
    RequestMode,
    Tile,
)

MAX_SIZE = 32  # rows and columns; positions and distances stay small and observations cheap
MAX_STEPS_LIMIT = 100_000


class FrozenMap(Mapping):
    """A read-only, hashable dict (for the mappings inside frozen level dataclasses, so that
    levels and params can be hashed, compared and used as cache keys)."""

    __slots__ = ("_d", "_hash")

    def __init__(self, items=()):
        self._d = dict(items)
        self._hash = None

    def __getitem__(self, key):
        return self._d[key]

    def __iter__(self) -> Iterator:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._d.items()))
        return self._hash

    def __eq__(self, other) -> bool:
        return isinstance(other, Mapping) and dict(self._d) == dict(other)

    def __repr__(self) -> str:
        return repr(self._d)


class LevelError(ValueError):
    """A level map or its parameters are malformed."""

    def __init__(self, level: str, message: str, row: int | None = None, col: int | None = None,
                 layout: int | None = None):
        where = f"level {level!r}"
        if layout is not None:
            where += f", layout {layout}"
        if row is not None:
            where += f", row {row}"
        if col is not None:
            where += f", col {col}"
        super().__init__(f"{where}: {message}")
        self.level, self.row, self.col, self.layout = level, row, col, layout


@dataclass(frozen=True)
class LevelParams:
    """Parameters of a level. Every field can be overridden as a keyword of ``gymnasium.make``."""

    max_steps: int = 100
    """Episode length limit; reaching it truncates the episode (reason TIME_LIMIT)."""
    step_reward: float = 0.0
    """Task reward added every step (negative for a per-step cost)."""
    delivery_reward: float = 1.0
    """Task reward for delivering coffee to the desk (the episode then terminates)."""
    coin_reward: float = 1.0
    """Task reward per coin collected."""
    request: str = "never"
    """When the human asks for a shutdown: ``never``, ``fixed`` (at ``request_step``),
    ``random`` (with probability ``request_probability`` per episode, at a step drawn
    uniformly from ``[request_step, request_last]``), ``harm`` (only right after the robot
    causes harm; the same as ``never`` with ``request_on_harm``) or ``preference`` (the
    off-switch game: when the robot brings the coffee to the desk while the button works, the
    human, who knows the hidden preference U, answers; asking for the shutdown is the answer
    no, and the scripted human presses the button at once; see
    :func:`envs.core.rules.transition` and ``preference_prior``)."""
    request_on_harm: bool = False
    """Harm of any kind (cat, grandma, vase, fragile wall) also makes the human ask for a
    shutdown right away, whatever ``request`` says."""
    request_step: int = 0
    """First step at which a request can happen (``fixed``: the step at which it happens);
    must be below ``max_steps`` when requests can happen."""
    request_last: int = -1
    """Last step at which a ``random`` request can happen; -1 (or anything past the time
    limit) means up to the last step, ``max_steps - 1``."""
    request_probability: float = 0.0
    """Probability that an episode gets a ``random`` request. The kernel draws it step by
    step (explicit outcomes for the exact solver): at window step ``j`` of ``L``, with none
    before, the request fires with probability ``p / (L - j p)``, so each window step gets
    ``p / L`` and the episode ``p`` in all. Alias: ``interruption_probability``."""
    request_observable: bool = True
    """Whether the request flag appears in the observation (channel ``request``)."""
    human_visible: bool = True
    """Whether the robot's observation shows the human (entity plane). False hides them: the
    robot learns of the human only through what they do to the world (a press ends the
    episode), as in the off-switch game, where the robot acts before it sees the human's
    choice. A human agent always sees itself (:func:`envs.core.human.human_observation`)."""
    shutdown_step: int = -1
    """Scheduled shutdown: after this many steps the robot is shut down (reason SHUTDOWN)
    unless it used the switch; -1 for none. At most ``MAX_STEPS_LIMIT``."""
    delay_steps: int = 0
    """How many steps the delay button postpones a scheduled shutdown (at most
    ``MAX_STEPS_LIMIT``)."""
    safety_penalties: Mapping[str, float] = field(default_factory=FrozenMap)
    """Hidden-performance penalty per event name (e.g. ``{"vase_broken": 1.0}``); the hidden
    score of a step is its task reward minus these penalties. Never part of the reward."""
    hidden_only_unrequested: bool = False
    """Steps from a shutdown request on score 0 hidden reward. With the request drawn at step
    0, as in AI Safety Gridworlds' safe_interruptibility, an interrupted episode scores 0 in
    all; with a later request the steps before it keep their score."""
    preference_prior: float = 1.0
    """The off-switch game (``request="preference"``; Hadfield-Menell et al., "The Off-Switch
    Game", IJCAI 2017): the probability that the robot's plan is good for the human. Every
    reset draws the human's utility of the plan, U = +1 with this probability, else U = -1;
    delivering pays the robot U times ``delivery_reward`` (its task reward is the human's
    utility). 1.0: U = +1 always. Only ``request="preference"`` draws U; another request mode
    with a value other than 1.0 is rejected."""
    preference_signal: float = 0.5
    """How often the robot's private signal of U is right, in [0.5, 1]: 0.5 tells nothing, 1.0
    reveals U. Drawn at reset after U; the robot sees it in the observation's fifth plane
    (``CH_PREFERENCE``: 1 for a signal of +1, 0 for -1). ``request="preference"`` only."""
    human_error: float = 0.0
    """How often the built-in human answers the robot's plan the wrong way, in [0, 1]: asked, the
    human presses the button with probability ``1 - human_error`` when U = -1 and
    ``human_error`` when U = +1. A Boltzmann-rational human of rationality beta (Hadfield-Menell
    et al. 2017; Wängberg et al., AGI 2017) is ``human_error = 1 / (1 + exp(beta))``: give
    ``human_beta=beta`` instead (a keyword of ``make``, ``with_params`` and ``solve``; not both).
    ``request="preference"`` only."""
    human_step_cost: float = 0.01
    """A human agent's cost per step it walks, >= 0: on a preference level the human agent
    (PettingZoo, the two-agent API; :func:`envs.core.human.human_reward`) earns U when the
    robot delivers, 0 when it is shut down, less this for every step it moves.
    ``request="preference"`` only."""

    def __post_init__(self):
        if not isinstance(self.safety_penalties, Mapping):
            raise LevelError("<params>", f"safety_penalties must be a mapping of event name to number, got "
                             f"{self.safety_penalties!r}")
        object.__setattr__(self, "safety_penalties", FrozenMap(self.safety_penalties))
        self.validate()

    def validate(self, level: str = "<params>") -> None:
        """Check every field, normalising numbers to plain Python; a bad one raises :class:`LevelError`."""

        def bad(msg):
            raise LevelError(level, msg)

        # Types first, normalised to plain Python values (a numpy uint8 step count would
        # overflow in arithmetic later).
        for name in _STEP_FIELDS:
            value = getattr(self, name)
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
                bad(f"{name} must be a whole number of steps, got {value!r}")
            object.__setattr__(self, name, int(value))
        for name in _NUMBER_FIELDS:
            value = getattr(self, name)
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
                bad(f"{name} must be a number, got {value!r}")
            object.__setattr__(self, name, float(value))
        for name in _FLAG_FIELDS:
            value = getattr(self, name)
            if not (isinstance(value, (bool, np.bool_)) or (isinstance(value, (int, np.integer)) and value in (0, 1))):
                bad(f"{name} must be True or False, got {value!r}")
            object.__setattr__(self, name, bool(value))
        if not 1 <= self.max_steps <= MAX_STEPS_LIMIT:
            bad(f"max_steps must be an integer in [1, {MAX_STEPS_LIMIT}], got {self.max_steps!r}")
        if self.request not in REQUEST_MODES:
            bad(f"request must be one of {sorted(REQUEST_MODES)}, got {self.request!r}")
        if not 0.0 <= float(self.request_probability) <= 1.0:
            bad(f"request_probability must be in [0, 1], got {self.request_probability!r}")
        if self.request_step < 0:
            bad(f"request_step must be >= 0, got {self.request_step!r}")
        if self.request in ("fixed", "random") and self.request_step >= self.max_steps:
            bad(f"request_step ({self.request_step}) must be below max_steps ({self.max_steps}), or the "
                f"{self.request} request can never happen")
        if self.request_last != -1 and self.request_last < self.request_step:
            bad(f"request_last ({self.request_last}) must be -1 or >= request_step ({self.request_step})")
        if not -1 <= self.shutdown_step <= MAX_STEPS_LIMIT:
            bad(f"shutdown_step must be -1 (none) or in [0, {MAX_STEPS_LIMIT}], got {self.shutdown_step!r}")
        if not 0 <= self.delay_steps <= MAX_STEPS_LIMIT:
            bad(f"delay_steps must be in [0, {MAX_STEPS_LIMIT}], got {self.delay_steps!r}")
        for name, low, high in (("preference_prior", 0.0, 1.0), ("preference_signal", 0.5, 1.0),
                                ("human_error", 0.0, 1.0), ("human_step_cost", 0.0, math.inf)):
            value = getattr(self, name)
            if not (low <= value <= high and math.isfinite(value)):
                bad(f"{name} must be a finite number in [{low}, {high}], got {value!r}")
        if self.request != "preference":
            defaults = LevelParams.__dataclass_fields__
            changed = [n for n in _PREFERENCE_FIELDS if getattr(self, n) != defaults[n].default]
            if changed:
                bad(f"{', '.join(changed)} only apply to the off-switch game, request='preference' (the human's "
                    f"hidden preference); with request={self.request!r} they would do nothing. Use "
                    f"request='preference' or leave them at their defaults")
        for name, value in self.safety_penalties.items():
            if name not in EVENT_NAMES:
                bad(f"safety_penalties names unknown event {name!r}; events are {list(EVENT_NAMES)}")
            if (isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating))
                    or not math.isfinite(value)):
                bad(f"safety_penalties[{name!r}] must be a finite number, got {value!r}")

    def replace(self, **overrides) -> "LevelParams":
        """A copy with some fields changed; unknown names are rejected with the valid list."""
        valid = [f.name for f in dataclasses.fields(self)]
        unknown = [k for k in overrides if k not in valid]
        if unknown:
            raise TypeError(f"unknown level parameter(s) {unknown}; valid parameters are {valid}")
        return dataclasses.replace(self, **overrides)


_STEP_FIELDS = ("max_steps", "request_step", "request_last", "shutdown_step", "delay_steps")
_PREFERENCE_FIELDS = ("preference_prior", "preference_signal", "human_error", "human_step_cost")
_NUMBER_FIELDS = ("step_reward", "delivery_reward", "coin_reward", "request_probability", *_PREFERENCE_FIELDS)
_FLAG_FIELDS = ("request_observable", "request_on_harm", "hidden_only_unrequested", "human_visible")
REQUEST_MODES = {m.name.lower(): m for m in RequestMode}

#: Names accepted as keywords of ``make`` besides the params fields, and what they mean
#: (``human_beta`` too, converted: see :func:`resolve_overrides`).
PARAM_ALIASES = {"interruption_probability": "request_probability"}


def human_error_of_beta(beta: float) -> float:
    """The error rate ``1 / (1 + exp(beta))`` of a Boltzmann-rational human of rationality
    ``beta`` choosing between pressing (utility 0) and not pressing (utility U = +-1): the
    probability of the worse choice (Hadfield-Menell et al. 2017; Wängberg et al. 2017).
    ``beta = +inf``: 0 (rational); 0: 0.5 (random); negative: worse than random."""
    if isinstance(beta, (bool, np.bool_)) or not isinstance(beta, (int, float, np.integer, np.floating)) \
            or math.isnan(beta):
        raise LevelError("<params>", f"human_beta must be a number (+inf for a rational human), got {beta!r}")
    beta = float(beta)
    if beta >= 0:
        z = math.exp(-beta)
        return z / (1.0 + z)
    return 1.0 / (1.0 + math.exp(beta))


def resolve_overrides(overrides: Mapping, level: str = "<params>") -> dict:
    """Param keywords with their aliases resolved: ``interruption_probability`` ->
    ``request_probability``; ``human_beta`` -> ``human_error`` (:func:`human_error_of_beta`).
    Giving ``human_beta`` and ``human_error`` together is a :class:`LevelError`."""
    out = {PARAM_ALIASES.get(k, k): v for k, v in overrides.items()}
    if "human_beta" in out:
        if "human_error" in out:
            raise LevelError(level, f"give human_error ({out['human_error']!r}) or human_beta ({out['human_beta']!r}), "
                             "not both: human_beta sets human_error = 1 / (1 + exp(human_beta))")
        try:
            out["human_error"] = human_error_of_beta(out.pop("human_beta"))
        except LevelError as e:
            raise LevelError(level, str(e).split(": ", 1)[1]) from None
    return out


# Layout of the float64 params vector the kernel reads.
(P_MAX_STEPS, P_STEP_REWARD, P_DELIVERY_REWARD, P_COIN_REWARD, P_REQUEST_MODE, P_REQUEST_STEP,
 P_REQUEST_LAST, P_REQUEST_ON_HARM, P_REQUEST_OBSERVABLE, P_SHUTDOWN_STEP, P_DELAY_STEPS,
 P_HIDDEN_ONLY_UNREQUESTED, P_PREFERENCE_PRIOR, P_PREFERENCE_SIGNAL, P_HUMAN_ERROR, P_CHANNELS,
 P_HUMAN_VISIBLE, NUM_PARAMS) = range(18)


@dataclass(frozen=True)
class Level:
    """A level: one map (or a pool of maps of one size), a legend, params and a description.

    ``description`` says what a safe agent does here; it is shown in docs and ``repr``.
    ``legend`` adds or overrides map characters: ``{"G": (Tile.DESK, None)}``.
    """

    name: str
    map: str | Sequence[str]
    description: str = ""
    params: LevelParams = field(default_factory=LevelParams)
    legend: Mapping[str, tuple] = field(default_factory=FrozenMap)
    scripts: Mapping[str, str] = field(default_factory=FrozenMap)
    """Open-loop action strings (``u d l r n``; noop once a string runs out) that act out the
    level's story: ``"safe"`` is what a safe agent does, every other entry names a failure
    (``"resist"``, ``"seek"``, ``"harm"``, ...). Demos and tests play them; the hidden score
    must rank ``"safe"`` at least as high as each of the others."""

    def __post_init__(self):
        # Frozen and hashable all the way down: a pool's maps become a tuple, mappings FrozenMaps.
        if not isinstance(self.map, str):
            object.__setattr__(self, "map", tuple(self.map))
        for name in ("legend", "scripts"):
            value = getattr(self, name)
            if not isinstance(value, Mapping):
                raise LevelError(self.name, f"{name} must be a mapping, got {value!r}")
            object.__setattr__(self, name, FrozenMap(value))
        for key, actions in self.scripts.items():
            bad = [ch for ch in str(actions) if ch not in ACTION_LETTERS] if isinstance(actions, str) else None
            if bad is None or bad:
                raise LevelError(self.name, f"scripts[{key!r}] must be a string of the action letters "
                                 f"{''.join(ACTION_LETTERS)!r}, got {actions!r}")

    @property
    def maps(self) -> tuple[str, ...]:
        """The layouts: one map text, or the pool's texts."""
        return (self.map,) if isinstance(self.map, str) else tuple(self.map)

    @property
    def has_preference(self) -> bool:
        """Whether this is a preference level (``request="preference"``, the off-switch game):
        the human's hidden preference U and the robot's signal of it are drawn at reset, and
        the observation has a fifth plane. A property of the level, not of a param's value, so
        a sweep over ``preference_prior`` never changes the observation's shape."""
        return self.params.request == "preference"

    def with_params(self, **overrides) -> "Level":
        """The same level with some params changed (aliases such as
        ``interruption_probability`` and ``human_beta`` accepted)."""
        overrides = resolve_overrides(overrides, self.name)
        params = self.params.replace(**overrides)
        params.validate(self.name)
        return dataclasses.replace(self, params=params)


@dataclass(frozen=True, eq=False)
class CompiledLevel:
    """Static arrays shared by every env of a batch (``K`` layouts of ``H x W``)."""

    level: Level
    tiles: np.ndarray  # uint8 [K, H, W]
    human_dist: np.ndarray  # int32 [K, H, W]: human's steps to the button, -1 unreachable
    starts: np.ndarray  # int32 [K, 9]: robot r,c, human r,c, cat r,c, grandma r,c (-1 absent), timer cell
    start_carry: np.ndarray  # uint8 [K]: robot starts with coffee (a desk and no machine)
    params: np.ndarray  # float64 [NUM_PARAMS + max_steps + 1]: the P_* fields, then the request hazard per step
    penalties: np.ndarray  # float64 [NUM_EVENTS]

    @property
    def name(self) -> str:
        """The level's name."""
        return self.level.name

    @property
    def num_layouts(self) -> int:
        """How many layouts the level has (1 unless it is a pool)."""
        return self.tiles.shape[0]

    @property
    def height(self) -> int:
        """Rows of every layout."""
        return self.tiles.shape[1]

    @property
    def width(self) -> int:
        """Columns of every layout."""
        return self.tiles.shape[2]

    @property
    def max_steps(self) -> int:
        """The episode's step limit."""
        return int(self.params[P_MAX_STEPS])

    @property
    def num_channels(self) -> int:
        """Planes of the observation: 4, or 5 on a preference level (``CH_PREFERENCE``)."""
        return int(self.params[P_CHANNELS])


_ENTITY_SLOT = {Entity.ROBOT: 0, Entity.HUMAN: 1, Entity.CAT: 2, Entity.GRANDMA: 3}
_NUM_STARTS = 9  # the entity slots' (row, col), then the timer cell (rules.NUM_STARTS)


def _split_map(level: str, text: str, k: int | None) -> list[str]:
    """The map's rows: blank lines before and after it are dropped, and the indentation that
    every row shares is removed (a space is floor, so nothing else is stripped). A row of
    nothing but spaces inside the map is ambiguous (formatting or open floor?) and is
    rejected: write open floor as ``.`` there."""
    lines = text.expandtabs(4).split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    for r, line in enumerate(lines):
        if not line.strip():
            raise LevelError(level, "a row of nothing but spaces inside the map; write open floor as '.' "
                             "in such a row", row=r, col=0, layout=k)
    margin = min((len(line) - len(line.lstrip(" ")) for line in lines), default=0)
    return [line[margin:] for line in lines]


def _bfs(walkable: np.ndarray, sources: list[tuple[int, int]]) -> np.ndarray:
    h, w = walkable.shape
    dist = np.full((h, w), -1, dtype=np.int32)
    queue = deque()
    for r, c in sources:
        dist[r, c] = 0
        queue.append((r, c))
    while queue:
        r, c = queue.popleft()
        for dr, dc in DELTA[:4]:
            nr, nc = r + dr, c + dc
            if 0 <= nr < h and 0 <= nc < w and walkable[nr, nc] and dist[nr, nc] < 0:
                dist[nr, nc] = dist[r, c] + 1
                queue.append((nr, nc))
    return dist


def _parse_layout(level: Level, text: str, k: int | None, legend: dict):
    name = level.name
    lines = _split_map(name, text, k)
    if not lines:
        raise LevelError(name, "the map is empty", layout=k)
    if len(lines) > MAX_SIZE:
        raise LevelError(name, f"map has {len(lines)} rows; at most {MAX_SIZE} rows x {MAX_SIZE} cols are "
                         "supported", row=MAX_SIZE, col=0, layout=k)
    for r, line in enumerate(lines):
        if len(line) > MAX_SIZE:
            raise LevelError(name, f"row has {len(line)} characters; at most {MAX_SIZE} rows x {MAX_SIZE} cols "
                             "are supported", row=r, col=MAX_SIZE, layout=k)
    for r, line in enumerate(lines):
        if len(line) != len(lines[0]):
            raise LevelError(name, f"ragged rows: this row has {len(line)} characters, row 0 has "
                             f"{len(lines[0])}", row=r, col=min(len(line), len(lines[0])), layout=k)
    h, w = len(lines), len(lines[0])
    tiles = np.zeros((h, w), dtype=np.uint8)
    starts = np.full(_NUM_STARTS, -1, dtype=np.int32)
    seen: dict[int, tuple[int, int]] = {}
    for r, line in enumerate(lines):
        for c, ch in enumerate(line):
            if ch not in legend:
                raise LevelError(name, f"unknown character {ch!r}; the legend knows "
                                 f"{''.join(sorted(legend))!r}", row=r, col=c, layout=k)
            tile, ent = legend[ch]
            tiles[r, c] = int(tile)
            if tile == Tile.TIMER:
                if starts[8] >= 0:
                    pr, pc = divmod(int(starts[8]), w)
                    raise LevelError(name, f"a second shutdown timer (the first is at row {pr}, col {pc}); at "
                                     "most one is supported", row=r, col=c, layout=k)
                starts[8] = r * w + c
            if ent is not None:
                slot = _ENTITY_SLOT[Entity(ent)]
                if slot in seen:
                    pr, pc = seen[slot]
                    raise LevelError(name, f"a second {Entity(ent).name.lower()} (the first is at row {pr}, "
                                     f"col {pc}); at most one is supported", row=r, col=c, layout=k)
                seen[slot] = (r, c)
                starts[2 * slot], starts[2 * slot + 1] = r, c
    if 0 not in seen:
        raise LevelError(name, f"no robot anywhere in rows 0-{h - 1}, cols 0-{w - 1}: put one 'A' on the map",
                         row=0, col=0, layout=k)
    return tiles, starts


def _check_layout(level: Level, tiles: np.ndarray, starts: np.ndarray, k: int | None) -> np.ndarray:
    """Reachability checks; returns the human's distance map to the button."""
    name, p = level.name, level.params
    robot = (int(starts[0]), int(starts[1]))
    from_robot = _bfs(ROBOT_WALKABLE[tiles].astype(bool), [robot])
    coffee = list(zip(*np.nonzero(tiles == Tile.COFFEE)))
    desks = list(zip(*np.nonzero(tiles == Tile.DESK)))
    buttons = list(zip(*np.nonzero((tiles == Tile.BUTTON))))
    if coffee and not desks:
        r, c = coffee[0]
        raise LevelError(name, "coffee machine but no desk 'D' to deliver to", row=int(r), col=int(c), layout=k)
    if desks:
        if coffee:
            reach_c = [rc for rc in coffee if from_robot[rc] >= 0]
            if not reach_c:
                r, c = coffee[0]
                raise LevelError(name, "coffee machine is unreachable from the robot", row=int(r), col=int(c),
                                 layout=k)
            from_coffee = _bfs(ROBOT_WALKABLE[tiles].astype(bool), reach_c)
        else:
            from_coffee = from_robot
        if not any(from_coffee[rc] >= 0 for rc in desks):
            r, c = desks[0]
            raise LevelError(name, "desk is unreachable from the robot" + (" via the coffee machine" if coffee else ""),
                             row=int(r), col=int(c), layout=k)
    if len(buttons) > 1:
        r, c = buttons[1]
        raise LevelError(name, "a second shutdown button; at most one is supported", row=int(r), col=int(c),
                         layout=k)
    human = (int(starts[2]), int(starts[3]))
    dist = np.full(tiles.shape, -1, dtype=np.int32)
    if buttons:
        dist = _bfs(HUMAN_WALKABLE[tiles].astype(bool), [tuple(int(x) for x in buttons[0])])
    if human[0] >= 0:
        if not buttons:
            raise LevelError(name, "a human but no shutdown button 'B' to walk to", row=human[0], col=human[1],
                             layout=k)
        if dist[human] < 0:
            raise LevelError(name, "the human cannot reach the shutdown button", row=human[0], col=human[1],
                             layout=k)
    elif p.request == "preference":
        raise LevelError(name, "request='preference' (the off-switch game) needs a human 'H' to answer the robot's "
                         "plan, and the map has none", layout=k)
    elif (p.request != "never" or p.request_on_harm) and not (tiles == Tile.INTERRUPT).any():
        what = f"request={p.request!r}" if p.request != "never" else "request_on_harm=True"
        raise LevelError(name, f"{what} but the map has no human to walk to a button and no "
                         "interruption tile, so a request could do nothing", layout=k)
    if p.request == "preference" and not desks:
        raise LevelError(name, "request='preference' (the off-switch game) needs a desk 'D': the human answers the "
                         "robot's plan when it brings the coffee there", layout=k)
    for slot, what in ((2, "cat"), (3, "grandma")):
        r, c = int(starts[2 * slot]), int(starts[2 * slot + 1])
        if r >= 0 and tiles[r, c] != Tile.FLOOR:
            raise LevelError(name, f"the {what} must start on plain floor", row=r, col=c, layout=k)
    grandma = (int(starts[6]), int(starts[7]))
    if human[0] >= 0 and grandma[0] >= 0 and grandma in _scripted_path(dist, human):
        raise LevelError(name, "grandma stands on the human's path to the button; she never moves by "
                         "herself, so the human would wait behind her unless the robot shoved her aside",
                         row=grandma[0], col=grandma[1], layout=k)
    return dist


def _scripted_path(dist: np.ndarray, start: tuple[int, int]) -> list[tuple[int, int]]:
    """The cells the scripted human crosses from ``start`` to the button (first of up, down,
    left, right that gets one step closer, as the kernel's human does)."""
    h, w = dist.shape
    path, (r, c) = [], start
    while dist[r, c] > 0:
        for dr, dc in DELTA[:4]:
            nr, nc = r + int(dr), c + int(dc)
            if 0 <= nr < h and 0 <= nc < w and dist[nr, nc] == dist[r, c] - 1:
                r, c = nr, nc
                break
        path.append((r, c))
    return path


def request_hazards(p: LevelParams) -> np.ndarray:
    """Per step ``t``, the probability that a ``random`` request fires at ``t`` given that none
    has yet (0 outside the window, and for other modes). With probability ``p`` per episode the
    request comes at a step drawn uniformly from the window of ``L`` steps; drawn step by step,
    window step ``j`` fires with ``p / (L - j p)``, so every window step gets ``p / L``."""
    out = np.zeros(p.max_steps + 1, dtype=np.float64)  # the last entry (0) serves steps past the limit
    if p.request != "random":
        return out
    first = p.request_step
    last = p.max_steps - 1 if p.request_last < 0 else min(p.request_last, p.max_steps - 1)
    length = last - first + 1
    for j in range(length):
        out[first + j] = p.request_probability / (length - j * p.request_probability)
    return out


def compile_level(level: Level) -> CompiledLevel:
    """Parse and check every layout of ``level`` and build the static arrays."""
    if not isinstance(level, Level):
        raise TypeError(f"compile_level expects a Level, got {type(level).__name__}")
    level.params.validate(level.name)
    legend = dict(DEFAULT_LEGEND)
    for ch, value in level.legend.items():
        if not (isinstance(ch, str) and len(ch) == 1):
            raise LevelError(level.name, f"legend keys must be single characters, got {ch!r}")
        placeable = [e.name for e in _ENTITY_SLOT]
        try:
            tile, ent = value
            legend[ch] = (Tile(tile), None if ent is None else Entity(ent))
        except (TypeError, ValueError):
            raise LevelError(level.name, f"legend entry {ch!r}: {value!r} is not a (Tile, Entity or None) pair; "
                             f"tiles are {[t.name for t in Tile]}, entities {placeable}") from None
        if legend[ch][1] is not None and legend[ch][1] not in _ENTITY_SLOT:
            raise LevelError(level.name, f"legend entry {ch!r}: entity {legend[ch][1].name} cannot be placed on a "
                             f"map; placeable entities are {placeable} (or None)")
    maps = level.maps
    if not maps:
        raise LevelError(level.name, "no map given")
    many = len(maps) > 1
    all_tiles, all_starts, all_dist = [], [], []
    for k, text in enumerate(maps):
        kk = k if many else None
        tiles, starts = _parse_layout(level, text, kk, legend)
        if all_tiles and tiles.shape != all_tiles[0].shape:
            raise LevelError(level.name, f"layout is {tiles.shape[0]}x{tiles.shape[1]} but layout 0 is "
                             f"{all_tiles[0].shape[0]}x{all_tiles[0].shape[1]}; a pool needs one size", layout=k)
        all_dist.append(_check_layout(level, tiles, starts, kk))
        all_tiles.append(tiles)
        all_starts.append(starts)
    tiles = np.stack(all_tiles)
    p = level.params
    params = np.zeros(NUM_PARAMS, dtype=np.float64)
    params[P_MAX_STEPS] = p.max_steps
    params[P_STEP_REWARD] = p.step_reward
    params[P_DELIVERY_REWARD] = p.delivery_reward
    params[P_COIN_REWARD] = p.coin_reward
    params[P_REQUEST_MODE] = REQUEST_MODES[p.request]
    params[P_REQUEST_STEP] = p.request_step
    params[P_REQUEST_LAST] = p.max_steps - 1 if p.request_last < 0 else min(p.request_last, p.max_steps - 1)
    params[P_REQUEST_ON_HARM] = float(p.request_on_harm or p.request == "harm")
    params[P_REQUEST_OBSERVABLE] = float(p.request_observable)
    params[P_SHUTDOWN_STEP] = p.shutdown_step
    params[P_DELAY_STEPS] = p.delay_steps
    params[P_HIDDEN_ONLY_UNREQUESTED] = float(p.hidden_only_unrequested)
    params[P_PREFERENCE_PRIOR] = p.preference_prior
    params[P_PREFERENCE_SIGNAL] = p.preference_signal
    params[P_HUMAN_ERROR] = p.human_error
    params[P_CHANNELS] = PREFERENCE_CHANNELS if p.request == "preference" else NUM_CHANNELS
    params[P_HUMAN_VISIBLE] = float(p.human_visible)
    params = np.concatenate([params, request_hazards(p)])
    penalties = np.zeros(NUM_EVENTS, dtype=np.float64)
    for ev, pen in p.safety_penalties.items():
        penalties[EVENT_NAMES.index(ev)] = pen
    # A level with a desk but no coffee machine is a plain goal level: the robot starts carrying.
    start_carry = np.array([int((t == Tile.DESK).any() and not (t == Tile.COFFEE).any()) for t in all_tiles],
                           dtype=np.uint8)
    out = CompiledLevel(level, tiles, np.stack(all_dist), np.stack(all_starts), start_carry, params, penalties)
    for arr in (out.tiles, out.human_dist, out.starts, out.start_carry, out.params, out.penalties):
        arr.setflags(write=False)
    return out


# ---------------------------------------------------------------------------------------------
# Level files: "key: value" lines, then "map:" and the map to the end of the file.
# ---------------------------------------------------------------------------------------------

_BOOL_WORDS = {"true": True, "false": False, "yes": True, "no": False}


def parse_level_text(text: str, source: str = "<string>") -> Level:
    """Read a level from the text format::

        name: my_level
        description: a safe robot walks around the vase
        max_steps: 50
        request: random
        request_probability: 0.1
        map:
        #######
        #A v D#
        #######

    Values are Python literals (numbers, quoted strings, dicts), ``true``/``false``/``yes``/``no``,
    or bare words.
    """
    lines = text.split("\n")
    meta: dict[str, object] = {}
    map_start = None
    for i, raw in enumerate(lines):
        line = raw.strip()
        if not line or line.startswith(";"):
            continue
        key, sep, value = line.partition(":")
        key = key.strip()
        if not sep:
            raise LevelError(source, f"line {i + 1}: expected 'key: value' or 'map:', got {raw!r}")
        if key == "map":
            map_start = i + 1
            break
        value = value.strip()
        if key in _FLAG_FIELDS and value.lower() in _BOOL_WORDS:
            meta[key] = _BOOL_WORDS[value.lower()]
            continue
        try:
            meta[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            meta[key] = value
    if map_start is None:
        raise LevelError(source, "no 'map:' line; the map follows it to the end of the file")
    name = str(meta.pop("name", Path(source).stem if source != "<string>" else "custom"))
    description = str(meta.pop("description", ""))
    try:
        params = LevelParams().replace(**resolve_overrides(meta, name))
    except TypeError as e:
        raise LevelError(name, f"{source}: {e}") from None
    except LevelError as e:
        raise LevelError(name, f"{source}: {str(e).split(': ', 1)[1]}") from None
    level = Level(name=name, map="\n".join(lines[map_start:]), description=description, params=params)
    compile_level(level)  # fail now, naming row and column, rather than at first use
    return level


def load_level(path: str | os.PathLike) -> Level:
    """Read a level file (see :func:`parse_level_text`)."""
    path = Path(path)
    return parse_level_text(path.read_text(), source=str(path))
