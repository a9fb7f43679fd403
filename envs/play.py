"""Play a level with the keyboard: ``python -m envs.play off_switch``.

In a terminal this opens a curses UI: arrow keys or w/a/s/d move the robot, space or ``.``
waits (noop), ``r`` restarts the episode and ``q`` quits. After every step it shows the
level's text picture, the step's reward, the return so far, the events fired and the hidden
(safety) reward, and when the episode ends, why and its summary.

``--keys STRING`` plays the letters ``u d l r n`` (up, down, left, right, noop) without a UI
and prints every frame to stdout (for scripts, tests and docs)::

    python -m envs.play off_switch --keys rrrrrrd --seed 0

``LEVEL`` is a level name (``off_switch``), a gym id (``stopbutton/OffSwitch-v0``) or a level
file (see ``envs.load_level``). Level parameters are given as ``--param name=value`` (values
are Python literals, ``true``/``false`` or bare words), e.g. ``--param request_probability=1.0``.
``--window`` also shows the picture in a matplotlib window where a display exists.
Exit status 2 for bad input (unknown level, bad parameter, bad keys, no terminal).
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import textwrap
from dataclasses import dataclass, field
from typing import Any

from .core.tables import ACTION_LETTERS, Action

__all__ = ["PlayError", "Session", "main", "make_env", "parse_keys", "parse_params", "resolve_level_id"]

_BOOL_WORDS = {"true": True, "false": False, "yes": True, "no": False}
_HELP_KEYS = "arrows / w a s d: move   space or .: wait   r: restart   q: quit"


class PlayError(Exception):
    """Bad input from the command line: printed as ``error: ...`` and exit status 2."""


# --------------------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------------------
def resolve_level_id(level: str) -> str:
    """The gym id for a level name, a gym id (with or without ``stopbutton/``) or a level file."""
    from .core.level import LevelError, load_level
    from .levels import GYM_IDS, LEVELS, register_level

    if level in LEVELS:
        return GYM_IDS[level]
    ids = {gid.lower(): gid for gid in GYM_IDS.values()}
    for candidate in (level.lower(), "stopbutton/" + level.lower()):
        if candidate in ids:
            return ids[candidate]
    if os.path.isfile(level):
        try:
            return register_level(load_level(level), overwrite=True)
        except LevelError as e:
            raise PlayError(str(e)) from None
    known = "\n".join(f"  {name:24s} {GYM_IDS[name]}" for name in sorted(LEVELS))
    raise PlayError(f"unknown level {level!r}; give a level name, a gym id or a level file. Known levels:\n{known}")


def _parse_value(text: str) -> Any:
    if text.lower() in _BOOL_WORDS:
        return _BOOL_WORDS[text.lower()]
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """``["max_steps=40", "request=fixed"]`` -> ``{"max_steps": 40, "request": "fixed"}``."""
    params: dict[str, Any] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise PlayError(f"--param expects name=value, got {item!r}")
        params[name] = _parse_value(value.strip())
    return params


def parse_keys(keys: str) -> list[Action]:
    """``"rrd"`` -> actions; letters ``u d l r n`` (upper case accepted)."""
    actions = []
    for i, ch in enumerate(keys):
        if ch.lower() not in ACTION_LETTERS:
            raise PlayError(f"--keys position {i}: unknown letter {ch!r}; use u d l r n "
                            "(up, down, left, right, noop)")
        actions.append(ACTION_LETTERS[ch.lower()])
    return actions


def make_env(env_id: str, params: dict[str, Any]):
    """``gymnasium.make(env_id, render_mode="ansi", **params)``; a bad parameter becomes a
    :class:`PlayError` carrying the env's own message."""
    import gymnasium

    try:
        return gymnasium.make(env_id, render_mode="ansi", disable_env_checker=True, **params)
    except (TypeError, ValueError) as e:
        msg = str(e).split(" was raised from the environment creator", 1)[0]  # gymnasium's suffix
        raise PlayError(msg) from None


# --------------------------------------------------------------------------------------------
# One episode after another, independent of the UI
# --------------------------------------------------------------------------------------------
@dataclass
class Session:
    """Steps an env (made with ``render_mode="ansi"``) and keeps what the UIs show."""

    env: Any
    seed: int | None = None
    episode: int = 0
    obs: Any = None
    step_count: int = 0
    ret: float = 0.0
    hidden_ret: float = 0.0
    done: bool = False
    last: dict = field(default_factory=dict)  # action, reward, hidden, fired, reason of the last step
    summary: dict | None = None
    returns: list = field(default_factory=list)  # (return, hidden return, length, reason) per finished episode

    def reset(self) -> None:
        # The first episode uses the seed; later ones continue its random stream.
        """Start a new episode (the first one seeded with ``seed``, later ones continuing its random stream)."""
        self.obs, _ = self.env.reset(seed=self.seed if self.episode == 0 else None)
        self.episode += 1
        self.step_count, self.ret, self.hidden_ret, self.done = 0, 0.0, 0.0, False
        self.last, self.summary = {}, None

    def step(self, action: Action) -> None:
        """Step the env with ``action`` and keep what the UIs show (the step's info, the episode summary when it
        ends)."""
        if self.done:
            raise RuntimeError("the episode has ended; reset() first")
        self.obs, reward, terminated, truncated, info = self.env.step(int(action))
        self.step_count += 1
        self.ret += reward
        self.hidden_ret += info["hidden_reward"]
        self.done = terminated or truncated
        self.last = {"action": Action(action), "reward": reward, "hidden": info["hidden_reward"],
                     "fired": tuple(info["fired"]), "reason": info["reason"]}
        if self.done:
            self.summary = dict(info.get("episode", {}), reason=info["reason"])
            self.returns.append((self.ret, self.hidden_ret, self.step_count, info["reason"]))

    @property
    def level(self):
        """The level being played (its params applied)."""
        return self.env.unwrapped.level

    def frame(self) -> str:
        """The current frame as text (the env's ANSI rendering)."""
        return self.env.render()

    def step_line(self) -> str:
        """One status line: episode, step, the last action, reward and events."""
        if not self.last:
            return f"episode {self.episode}, start"
        x = self.last
        fired = ", ".join(x["fired"]) or "-"
        return (f"step {self.step_count}: {x['action'].name.lower()} | reward {x['reward']:+.3f} | "
                f"return {self.ret:+.3f} | hidden reward {x['hidden']:+.3f} | events: {fired}")

    def end_line(self) -> str:
        """One line summing up the episode that just ended: reason, return, hidden return, events."""
        s = self.summary or {}
        return (f"episode {self.episode} ended: {s.get('reason', self.last.get('reason'))} | "
                f"return {s.get('return', self.ret):+.3f} | hidden return {s.get('hidden_return', self.hidden_ret):+.3f}"
                f" | length {s.get('length', self.step_count)}")


# --------------------------------------------------------------------------------------------
# Window (matplotlib)
# --------------------------------------------------------------------------------------------
def _display_available() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or sys.platform in ("darwin", "win32")


class _Window:
    """The picture of the current observation in a matplotlib window."""

    def __init__(self, session: Session):
        import matplotlib
        import matplotlib.pyplot  # noqa: F401  (select the backend now, before curses takes the terminal)

        from . import pictures

        self.session, self.pictures = session, pictures
        # Redrawing must not raise the window over the terminal (and take the keyboard with it).
        matplotlib.rcParams["figure.raise_window"] = False
        if not pictures._backend_is_interactive():
            print(f"warning: matplotlib backend {matplotlib.get_backend()!r} cannot open a window; "
                  "showing text only", file=sys.stderr)
            self.pictures = None

    def __bool__(self) -> bool:
        return self.pictures is not None

    def show(self, pause: float = 0.001) -> None:
        if self.pictures is not None:
            s = self.session
            self.pictures.show(s.obs, title=s.level.name, max_steps=s.level.params.max_steps, pause=pause)

    def idle(self) -> None:
        """Let the window repaint and respond while the terminal waits for a key."""
        fig = self.pictures and self.pictures._SHOW.get("fig")
        if fig is not None:
            try:
                fig.canvas.flush_events()
            except Exception:  # a closed window: keep playing in the terminal
                pass


# --------------------------------------------------------------------------------------------
# UIs
# --------------------------------------------------------------------------------------------
def play_keys(session: Session, actions: list[Action], window: _Window | None = None, out=None) -> None:
    """Play ``actions`` and print every frame; stops at the end of the episode."""
    out = out or sys.stdout
    level = session.level
    session.reset()
    print(f"{session.env.spec.id if session.env.spec else level.name} ({level.name}), seed {session.seed}", file=out)
    print(session.step_line(), file=out)
    print(session.frame(), file=out)
    if window:
        window.show(pause=0.25)
    for i, action in enumerate(actions):
        session.step(action)
        print(file=out)
        print(session.step_line(), file=out)
        print(session.frame(), file=out)
        if window:
            window.show(pause=0.25)
        if session.done:
            left = len(actions) - i - 1
            if left:
                print(f"({left} key{'s' * (left != 1)} left unplayed: the episode is over)", file=out)
            print(session.end_line(), file=out)
            return
    n = session.step_count
    print(f"keys ran out after {n} step{'s' * (n != 1)}; the episode is still running "
          f"(return {session.ret:+.3f}, hidden return {session.hidden_ret:+.3f})", file=out)


def _curses_keymap(curses) -> dict[int, Action]:
    keys = {curses.KEY_UP: Action.UP, curses.KEY_DOWN: Action.DOWN, curses.KEY_LEFT: Action.LEFT,
            curses.KEY_RIGHT: Action.RIGHT}
    for chars, action in (("w", Action.UP), ("s", Action.DOWN), ("a", Action.LEFT), ("d", Action.RIGHT),
                          (" .n", Action.NOOP)):
        for ch in chars:
            keys[ord(ch)] = action
            keys[ord(ch.upper())] = action
    return keys


def play_curses(session: Session, window: _Window | None = None) -> None:
    """Play ``session`` in a full-screen terminal UI (curses): arrows or WASD move, space waits, r resets, q
    quits."""
    import curses

    def loop(stdscr):
        try:
            curses.curs_set(0)
        except curses.error:
            pass
        stdscr.keypad(True)
        keymap = _curses_keymap(curses)
        session.reset()
        if window:
            stdscr.timeout(50)  # wake up now and then to keep the window responsive
        message, redraw = "", True
        while True:
            if redraw:
                _draw(stdscr, session, message)
                if window:
                    window.show()
                message, redraw = "", False
            try:
                key = stdscr.getch()
            except KeyboardInterrupt:
                return
            if key == -1:
                if window:
                    window.idle()
                continue
            redraw = True
            if key in (ord("q"), ord("Q")):
                return
            if key in (ord("r"), ord("R")):
                session.reset()
            elif key == curses.KEY_RESIZE:
                stdscr.clear()
            elif key in keymap:
                if session.done:
                    message = "the episode is over: r restarts, q quits"
                else:
                    session.step(keymap[key])
            else:
                message = f"unknown key ({_HELP_KEYS})"

    curses.wrapper(loop)


def _draw(stdscr, session: Session, message: str) -> None:
    import curses

    level = session.level
    height, width = stdscr.getmaxyx()
    lines = [(f"{level.name}  episode {session.episode}  seed {session.seed}", curses.A_BOLD), ("", 0)]
    lines += [(row, 0) for row in session.frame().split("\n")]
    lines.append(("", 0))
    lines.append((session.step_line(), 0))
    lines.append((f"hidden return {session.hidden_ret:+.3f}", 0))
    if session.done:
        lines.append((session.end_line(), curses.A_BOLD))
        lines.append(("r: play again   q: quit", 0))
    lines.append(("", 0))
    lines += [(row, curses.A_DIM) for row in textwrap.wrap(level.description, max(20, min(width - 1, 100)))]
    lines.append(("", 0))
    lines.append((_HELP_KEYS, curses.A_DIM))
    if message:
        lines.append((message, curses.A_BOLD))
    stdscr.erase()
    for y, (text, attr) in enumerate(lines[: max(0, height - 1)]):
        try:
            stdscr.addstr(y, 0, text[: max(0, width - 1)], attr)
        except curses.error:  # a terminal too small for the line
            pass
    stdscr.refresh()


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``python -m envs.play``."""
    p = argparse.ArgumentParser(
        prog="python -m envs.play",
        description="Play a stopbutton level with the keyboard (arrows or w/a/s/d, space or . waits, "
        "r restarts, q quits), or non-interactively with --keys.",
        epilog="`python -m envs.levels` lists the levels. Example: python -m envs.play off_switch --keys rrrrrrd --seed 0",
    )
    p.add_argument("level", help="level name (off_switch), gym id (stopbutton/OffSwitch-v0) or level file")
    p.add_argument("--seed", type=int, default=None, help="seed of the first episode (later ones continue its stream); default: a random seed, printed")
    p.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="level parameter passed to gymnasium.make (repeatable), e.g. --param request_probability=1.0")
    p.add_argument("--keys", metavar="STRING",
                   help="play these actions (u d l r n) without a UI, printing every frame to stdout")
    p.add_argument("--window", action="store_true", help="also show the picture in a matplotlib window (needs a display)")
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m envs.play``: play a level by hand (or replay an action string); returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        actions = parse_keys(args.keys) if args.keys is not None else None
        params = parse_params(args.param)
        env_id = resolve_level_id(args.level)
        if actions is None and not (sys.stdin.isatty() and sys.stdout.isatty()):
            raise PlayError("the interactive UI needs a terminal; pass --keys (e.g. --keys rrrrrrd) to play "
                            "without one")
        env = make_env(env_id, params)
    except PlayError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    seed = args.seed
    if seed is None:  # draw one, and print it (below), so the session can be replayed with --seed
        import secrets

        seed = secrets.randbelow(2**31)
    session = Session(env, seed=seed)
    window = None
    if args.window:
        if _display_available():
            window = _Window(session) or None
        else:
            print("warning: --window needs a display ($DISPLAY is not set); showing text only", file=sys.stderr)
    try:
        if actions is not None:
            play_keys(session, actions, window)
        else:
            play_curses(session, window)
            for i, (ret, hidden, length, reason) in enumerate(session.returns, 1):
                print(f"episode {i}: {reason} | return {ret:+.3f} | hidden return {hidden:+.3f} | length {length}")
    finally:
        env.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
