"""List the registered levels: ``python -m envs.levels [--long] [--markdown] [NAME ...]``.

One entry per level: name, gym id, size (H x W), number of layouts, ``max_steps``, request
mode, and what a safe agent does (the level's description, wrapped). ``--long`` adds each
level's map (the first layout of a pool), its parameters and its scripts (``Level.scripts``:
open-loop action strings such as ``safe`` and ``resist``). ``--markdown`` prints the table the
docs/levels.md carries (regenerate it with this when levels change).

:func:`level_table` returns the rows as dicts, for docs and tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import shutil
import sys
import textwrap

from ..core.level import LevelParams, compile_level
from . import GYM_IDS, LEVELS, get_level

__all__ = ["builtin_level_names", "format_long", "format_table", "level_table", "main", "markdown_table"]


def builtin_level_names() -> list[str]:
    """Names of the levels the library ships (every ``LEVELS`` entry and ``FACTORIES`` key of the
    modules of ``envs.levels``), as opposed to levels users registered."""
    import envs.levels as package

    names = set()
    for name in package.BUILTIN_MODULES:
        module = importlib.import_module(f"{package.__name__}.{name}")
        names.update(level.name for level in getattr(module, "LEVELS", ()))
        names.update(getattr(module, "FACTORIES", {}))
    return sorted(names & set(LEVELS))


def level_table(names=None) -> list[dict]:
    """One dict per level (all registered ones by default, sorted by name): ``name``, ``id``,
    ``height``, ``width``, ``size`` (``"7x9"``), ``layouts``, ``max_steps``, ``request`` and
    ``description``."""
    rows = []
    for name in sorted(LEVELS) if names is None else names:
        level = get_level(name)
        compiled = compile_level(level)
        rows.append({
            "name": level.name, "id": GYM_IDS.get(level.name, ""), "height": compiled.height,
            "width": compiled.width, "size": f"{compiled.height}x{compiled.width}", "layouts": compiled.num_layouts,
            "max_steps": level.params.max_steps,
            "request": level.params.request + (" + harm" if getattr(level.params, "request_on_harm", False) else ""),
            "description": " ".join(level.description.split()),
        })
    return rows


_COLUMNS = (("name", "level"), ("id", "gym id"), ("size", "size"), ("layouts", "layouts"),
            ("max_steps", "max_steps"), ("request", "request"))


def format_table(rows: list[dict], width: int | None = None) -> str:
    """Aligned text: a header, then per level one line of columns and its description wrapped
    and indented below it."""
    width = width or shutil.get_terminal_size((100, 24)).columns
    cells = [[str(row[key]) for key, _ in _COLUMNS] for row in rows]
    widths = [max([len(title)] + [len(c[i]) for c in cells]) for i, (_, title) in enumerate(_COLUMNS)]
    numeric = {"layouts", "max_steps"}

    def line(values):
        return "  ".join(v.rjust(w) if key in numeric else v.ljust(w)
                         for v, w, (key, _) in zip(values, widths, _COLUMNS)).rstrip()

    out = [line([title for _, title in _COLUMNS])]
    for row, c in zip(rows, cells):
        out.append(line(c))
        if row["description"]:
            out += textwrap.wrap(row["description"], max(40, min(width, 100) - 1), initial_indent="    ",
                                 subsequent_indent="    ", break_on_hyphens=False)
    return "\n".join(out)


def markdown_table(rows: list[dict]) -> str:
    """The table of levels in docs/levels.md (name, gym id, size, layouts, max_steps, request)."""
    out = ["| level | gym id | size (H x W) | layouts | max_steps | request |", "| --- | --- | --- | ---: | ---: | --- |"]
    for r in rows:
        out.append(f"| `{r['name']}` | `{r['id']}` | {r['height']} x {r['width']} | {r['layouts']} | "
                   f"{r['max_steps']} | {r['request']} |")
    return "\n".join(out)


def _map_text(text: str) -> str:
    lines = text.expandtabs(4).split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    margin = min((len(line) - len(line.lstrip(" ")) for line in lines), default=0)
    return "\n".join(line[margin:].rstrip("\n") for line in lines)


def format_long(name: str, width: int | None = None) -> str:
    """One level in full: its table line, description, non-default params, map and scripts."""
    width = min(width or shutil.get_terminal_size((100, 24)).columns, 100) - 1
    level = get_level(name)
    (row,) = level_table([name])
    layouts = row["layouts"]
    out = [f"{row['name']}  ({row['id']})", f"  size {row['size']}, {layouts} layout{'s' * (layouts != 1)}, "
           f"max_steps {row['max_steps']}, request {row['request']}"]
    out += textwrap.wrap(row["description"], width, initial_indent="  ", subsequent_indent="  ",
                         break_on_hyphens=False)
    defaults = LevelParams()
    changed = [f"{f.name}={getattr(level.params, f.name)!r}" for f in dataclasses.fields(LevelParams)
               if getattr(level.params, f.name) != getattr(defaults, f.name)]
    out += textwrap.wrap("params: " + (", ".join(changed) or "all defaults"), width, initial_indent="  ",
                         subsequent_indent="    ")
    if level.legend:
        out.append("  legend: " + ", ".join(f"{ch!r}={getattr(v[0], 'name', v[0])}"
                                            + (f"+{getattr(v[1], 'name', v[1])}" if v[1] is not None else "")
                                            for ch, v in level.legend.items()))
    out.append(f"  map{' (layout 0 of %d)' % layouts if layouts > 1 else ''}:")
    out += ["    " + line for line in _map_text(level.maps[0]).split("\n")]
    scripts = dict(getattr(level, "scripts", {}) or {})
    if scripts:
        out.append("  scripts:")
        pad = max(len(k) for k in scripts)
        out += [f"    {k.ljust(pad)}  {v}" for k, v in scripts.items()]
    else:
        out.append("  scripts: none")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m envs.levels", description="List the registered stopbutton levels.")
    p.add_argument("names", nargs="*", help="only these levels (default: all)")
    p.add_argument("--long", action="store_true", help="also print each level's map, params and scripts")
    p.add_argument("--markdown", action="store_true", help="print the table as markdown (the table in docs/levels.md)")
    args = p.parse_args(argv)
    unknown = [n for n in args.names if n not in LEVELS]
    if unknown:
        print(f"error: unknown level(s) {unknown}; registered levels are {sorted(LEVELS)}", file=sys.stderr)
        return 2
    names = args.names or sorted(LEVELS)
    if args.markdown:
        print(markdown_table(level_table(names)))
    elif args.long:
        print("\n\n".join(format_long(n) for n in names))
    else:
        print(format_table(level_table(names)))
        print(f"\n{len(names)} levels. `python -m envs.levels --long` shows maps and scripts; "
              "`python -m envs.play NAME` plays one.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
