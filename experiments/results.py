"""Result files of training runs and the tidy table of a sweep.

Layout of a sweep directory (Hydra's ``hydra.sweep.dir``; a single run uses its run directory
the same way)::

    SWEEP_DIR/
        multirun.yaml          Hydra's record of the sweep's configuration
        runs/<run_id>.json     one file per finished run: resolved config, seed, package version,
                               evaluation series (written last, atomically: the run's "done" mark)
        runs/<run_id>.pkl      the trained run (:func:`agents.load`), when ``save_policy=true``
        runs/<run_id>.error.txt  the traceback of a run that failed (removed once it succeeds)
        results.parquet        the tidy table below (pyarrow)
        results.csv            the same table as CSV
        summary.txt            the last sweep's summary (runs done, skipped, failed with errors)
        jobs/<n>/              Hydra's per-job directory (.hydra/ configs, job log)
        cache/exact/           exact objective tables shared by the runs (``exact_cache=true``)
        tb/<run_id>/           TensorBoard/CSV logs of learners that write them (sb3_*)
        checkpoints/<run_id>/  PPO checkpoints of unfinished runs (resumed on restart)

``run_id`` is ``<level>-<agent>-<objective>-s<seed>-<hash>``, the hash (12 hex digits) being
SHA-256 of the run's *identity*: the resolved level (name and every parameter), evaluation
level, agent and every learner parameter, the objective's class and every parameter, the
seed, ``total_steps``, ``eval_every`` and ``eval_episodes``. Settings that do not change the
result (threads, log and checkpoint directories, ``progress``) are left out. The same
configuration therefore always maps to the same file, which makes a sweep idempotent: run
again in the same directory, it skips every run whose ``runs/<run_id>.json`` is complete and
redoes the others.

Every file is written atomically (a temporary file in the same directory, then
:func:`os.replace`): a process killed at any moment leaves either the previous file or the
new one, never a truncated one.

The tidy table (``results.parquet`` and ``results.csv``; :func:`write_table`) has one row per
run x evaluation, assembled from every complete ``runs/*.json`` of the directory, in
these columns (:data:`ID_COLUMNS` first, then the evaluation's):

``run_id``
    the run's id (above); unique per run, and ``(run_id, env_steps)`` per row.
``level``, ``eval_level``
    the training level's name, and the level the evaluations ran on (the same unless the
    config set ``eval_level``).
``agent``
    the learner (``ppo``, ``sb3_ppo``, ``sb3_dqn``, ``q_learning``, ``sarsa``).
``objective``
    the objective's registered name (a user's unregistered class: its class name).
``objective.<param>``
    every parameter of the run's objective (empty for the rows of other objectives).
``agent.<param>``
    the learner parameters that some run of the table sets to a non-default value (every
    row gets its own value of those; paths such as ``log_dir`` are left out).
``level.<param>``
    likewise, the level parameters that some run overrides.
``seed``, ``total_steps``
    the run's seed and training budget.
``env_steps``, ``final``, ``wall_time``, ``train_time``
    the evaluation's point: env steps trained so far, whether it is the run's last evaluation
    (``df[df.final]``: one row per run, no groupby), seconds since the run started, the same
    less the time spent evaluating.
``<metric>``, ``<metric>_se``
    every metric of :data:`agents.metrics.METRIC_NAMES` (and
    :data:`~agents.metrics.DELAY_METRIC_NAMES` on shutdown-delay levels), mean over the
    evaluation episodes, and its standard error.
other columns
    whatever else the learner records per evaluation (``table_size``, ``epsilon``, ...).
``run_path``
    ``runs/<run_id>.pkl`` relative to the sweep directory, when the policy was saved.
``version``
    the ``stopbutton`` package version that produced the run.

Rows are sorted by ``level``, ``agent``, ``objective``, ``run_id``, ``env_steps``. Parameter
values that are not scalars (tuples such as ``net_arch``) appear as JSON text.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from agents.io import atomic_write

FORMAT = 1
RUNS_DIR = "runs"
RESULTS_PARQUET = "results.parquet"
RESULTS_CSV = "results.csv"
#: Identity columns of the table, in order (``objective.*``, ``agent.*``, ``level.*`` follow
#: ``objective``).
ID_COLUMNS: tuple[str, ...] = ("run_id", "level", "eval_level", "agent", "objective")
#: Columns after the parameter columns.
POINT_COLUMNS: tuple[str, ...] = ("seed", "total_steps", "env_steps", "wall_time", "train_time")
#: Learner parameters never shown as ``agent.<param>`` columns (paths, per-run by nature).
HIDDEN_AGENT_PARAMS = frozenset({"log_dir", "checkpoint_dir"})

__all__ = ["FORMAT", "ID_COLUMNS", "RESULTS_CSV", "RESULTS_PARQUET", "RUNS_DIR", "Summary", "assemble",
           "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "error_path", "is_complete",
           "jsonable", "make_run_id", "read_error", "read_record", "record_path", "table_rows", "write_error",
           "write_record", "write_table"]


# ---------------------------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------------------------

def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same directory, fsync,
    :func:`os.replace`)."""
    return atomic_write_with(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj) -> Path:
    """Write ``obj`` as JSON (:func:`jsonable`, no NaN) to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(jsonable(obj), indent=1, sort_keys=False, allow_nan=False) + "\n")


def atomic_write_with(path, writer) -> Path:
    """``writer(tmp_path)`` writes the file; it is then moved onto ``path`` atomically
    (:func:`agents.io.atomic_write`)."""
    return atomic_write(path, writer)


def remove_stale_temporaries(directory, older_than_s: float = 0.0) -> int:
    """Delete ``.*.tmp`` files left in ``directory`` by killed writers; returns how many."""
    n = 0
    d = Path(directory)
    if not d.is_dir():
        return 0
    now = time.time()
    for p in d.glob(".*.tmp"):
        try:
            if now - p.stat().st_mtime >= older_than_s:
                p.unlink()
                n += 1
        except FileNotFoundError:
            pass
    return n


# ---------------------------------------------------------------------------------------------
# JSON values
# ---------------------------------------------------------------------------------------------

def jsonable(x):
    """``x`` as plain JSON data: numpy scalars unwrapped, tuples as lists, NaN/inf as None,
    paths and other objects as strings."""
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, int):
        return int(x)
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    try:
        import numpy as np

        if isinstance(x, np.bool_):
            return bool(x)
        if isinstance(x, np.integer):
            return int(x)
        if isinstance(x, np.floating):
            v = float(x)
            return v if math.isfinite(v) else None
        if isinstance(x, np.ndarray):
            return jsonable(x.tolist())
    except ImportError:  # pragma: no cover
        pass
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    return str(x)


def canonical(obj) -> str:
    """Canonical JSON text of ``obj`` (sorted keys, no spaces): what run ids hash."""
    return json.dumps(jsonable(obj), sort_keys=True, separators=(",", ":"), allow_nan=False)


def _slug(text: str) -> str:
    out = "".join(c if c.isalnum() or c in "_." else "_" for c in str(text))
    return out.strip("_")[:40] or "x"


def make_run_id(identity: Mapping[str, Any]) -> str:
    """``<level>-<agent>-<objective>-s<seed>-<hash12>`` from a run's identity mapping (which
    must hold ``level``, ``agent``, ``objective`` (a mapping with ``label``) and ``seed``)."""
    digest = hashlib.sha256(canonical(identity).encode("utf-8")).hexdigest()[:12]
    obj = identity["objective"]
    label = obj.get("label") if isinstance(obj, Mapping) else obj
    return f"{_slug(identity['level'])}-{_slug(identity['agent'])}-{_slug(label)}-s{identity['seed']}-{digest}"


# ---------------------------------------------------------------------------------------------
# Run records
# ---------------------------------------------------------------------------------------------

def record_path(sweep_dir, run_id: str) -> Path:
    """``SWEEP_DIR/runs/<run_id>.json``: the run's record."""
    return Path(sweep_dir) / RUNS_DIR / f"{run_id}.json"


def error_path(sweep_dir, run_id: str) -> Path:
    """``SWEEP_DIR/runs/<run_id>.error.txt``: the traceback of the run's last failure."""
    return Path(sweep_dir) / RUNS_DIR / f"{run_id}.error.txt"


def policy_path(sweep_dir, run_id: str) -> Path:
    """``SWEEP_DIR/runs/<run_id>.pkl``: the saved run (:func:`agents.load`)."""
    return Path(sweep_dir) / RUNS_DIR / f"{run_id}.pkl"


def write_record(sweep_dir, record: Mapping[str, Any]) -> Path:
    """Write a finished run's record (``record["run_id"]`` names the file) atomically, and
    remove an error file left by an earlier failed attempt."""
    record = dict(record)
    record.setdefault("format", FORMAT)
    record["complete"] = True
    path = atomic_write_json(record_path(sweep_dir, record["run_id"]), record)
    err = error_path(sweep_dir, record["run_id"])
    if err.exists():
        err.unlink()
    return path


def read_record(path, run_id: str | None = None) -> dict | None:
    """The record at ``path`` if it is a complete run record (of ``run_id`` when given), else
    None (missing, unreadable, cut short or of another format)."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            rec = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or rec.get("format") != FORMAT or rec.get("complete") is not True:
        return None
    if not isinstance(rec.get("history"), list) or not isinstance(rec.get("run_id"), str):
        return None
    if run_id is not None and rec["run_id"] != run_id:
        return None
    if Path(path).stem != rec["run_id"]:
        return None
    return rec


def is_complete(sweep_dir, run_id: str) -> bool:
    """Whether the run's record is written and readable (the run is done)."""
    return read_record(record_path(sweep_dir, run_id), run_id) is not None


def write_error(sweep_dir, run_id: str, text: str) -> Path:
    """Write the traceback ``text`` of a failed run."""
    return atomic_write_text(error_path(sweep_dir, run_id), text)


def read_error(sweep_dir, run_id: str) -> str | None:
    """The traceback of the run's last failure, or None."""
    try:
        return error_path(sweep_dir, run_id).read_text(encoding="utf-8")
    except OSError:
        return None


def records(sweep_dir) -> list[dict]:
    """Every complete run record of the sweep directory, sorted by run id."""
    d = Path(sweep_dir) / RUNS_DIR
    out = []
    if d.is_dir():
        for p in sorted(d.glob("*.json")):
            if p.name.startswith("."):
                continue
            rec = read_record(p)
            if rec is not None:
                out.append(rec)
    return out


# ---------------------------------------------------------------------------------------------
# The tidy table
# ---------------------------------------------------------------------------------------------

def _cell(v):
    """A parameter value as a table cell: scalars as they are, anything else as JSON text."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return json.dumps(jsonable(v), sort_keys=True)


def _changed_keys(recs: Sequence[Mapping], key: str, defaults_key: str) -> list[str]:
    keys = set()
    for r in recs:
        params, defaults = r.get(key) or {}, r.get(defaults_key) or {}
        for k, v in params.items():
            if k in defaults and jsonable(defaults[k]) == jsonable(v):
                continue
            keys.add(k)
    return sorted(keys)


def table_rows(recs: Sequence[Mapping]) -> list[dict]:
    """One dict per run x evaluation (see the module docstring), in column order."""
    from agents.metrics import DELAY_METRIC_NAMES, METRIC_NAMES

    agent_keys = [k for k in _changed_keys(recs, "agent_params", "agent_defaults") if k not in HIDDEN_AGENT_PARAMS]
    level_keys = _changed_keys(recs, "level_params", "level_defaults")
    objective_keys = sorted({k for r in recs for k in (r.get("objective_params") or {})})
    metric_order = [*METRIC_NAMES, *DELAY_METRIC_NAMES]
    rows = []
    for r in recs:
        ident = {"run_id": r["run_id"], "level": r.get("level"), "eval_level": r.get("eval_level") or r.get("level"),
                 "agent": r.get("agent"), "objective": r.get("objective")}
        op, ap, lp = r.get("objective_params") or {}, r.get("agent_params") or {}, r.get("level_params") or {}
        for k in objective_keys:
            ident[f"objective.{k}"] = _cell(op.get(k))
        for k in agent_keys:
            ident[f"agent.{k}"] = _cell(ap.get(k))
        for k in level_keys:
            ident[f"level.{k}"] = _cell(lp.get(k))
        ident["seed"] = r.get("seed")
        ident["total_steps"] = r.get("total_steps")
        last = max((h.get("env_steps") or 0 for h in r["history"]), default=None)
        for h in r["history"]:
            row = dict(ident)
            row["env_steps"] = h.get("env_steps")
            row["final"] = (h.get("env_steps") or 0) == last  # the run's last evaluation
            row["wall_time"] = h.get("wall_time")
            row["train_time"] = h.get("train_time")
            for m in metric_order:
                if m in h:
                    row[m] = h[m]
            for m in metric_order:
                if f"{m}_se" in h:
                    row[f"{m}_se"] = h[f"{m}_se"]
            for k in sorted(h):
                if k not in row:
                    row[k] = _cell(h[k])
            row["run_path"] = r.get("run_path")
            row["version"] = r.get("version")
            rows.append(row)
    return rows


def assemble(sweep_dir):
    """The sweep's tidy table (a pandas DataFrame) from its complete run records."""
    import pandas as pd

    rows = table_rows(records(sweep_dir))
    columns: list[str] = []
    seen = set()
    for row in rows:  # first-seen order, which follows the module docstring's order
        for k in row:
            if k not in seen:
                seen.add(k)
                columns.append(k)
    df = pd.DataFrame(rows, columns=columns or list(ID_COLUMNS))
    if len(df):
        # NaN-valued metrics come back from JSON as None: numeric columns stay numeric
        for c in df.columns:
            if df[c].dtype == object and df[c].map(lambda v: v is None or isinstance(v, (int, float))
                                                    and not isinstance(v, bool)).all():
                df[c] = pd.to_numeric(df[c], errors="coerce")
        df = df.sort_values(["level", "agent", "objective", "run_id", "env_steps"], kind="stable")
        df = df.reset_index(drop=True)
    return df


def _to_parquet(df, tmp):
    try:
        df.to_parquet(tmp, index=False)
    except Exception:
        # a column pyarrow cannot type (mixed kinds): store such columns as text
        fixed = df.copy()
        for c in fixed.columns:
            if fixed[c].dtype == object:
                fixed[c] = fixed[c].map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v))
                                        else str(v))
        fixed.to_parquet(tmp, index=False)


def write_table(sweep_dir) -> tuple[list[Path], int]:
    """Assemble the table and write ``results.parquet`` (when pyarrow or fastparquet is
    installed) and ``results.csv`` into the sweep directory, atomically. Returns the paths
    written and the number of rows."""
    d = Path(sweep_dir)
    df = assemble(d)
    paths = []
    try:
        import pyarrow  # noqa: F401

        have_parquet = True
    except ImportError:
        try:
            import fastparquet  # noqa: F401

            have_parquet = True
        except ImportError:
            have_parquet = False
    if have_parquet:
        paths.append(atomic_write_with(d / RESULTS_PARQUET, lambda tmp: _to_parquet(df, tmp)))
    paths.append(atomic_write_with(d / RESULTS_CSV, lambda tmp: df.to_csv(tmp, index=False)))
    return paths, len(df)


# ---------------------------------------------------------------------------------------------
# The sweep's summary
# ---------------------------------------------------------------------------------------------

@dataclass
class Summary:
    """What a sweep did with each of its runs."""

    sweep_dir: Path
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (run_id, overrides, error)
    #: jobs whose config resolved to a run another job of the sweep already had (run once)
    duplicates: list[str] = field(default_factory=list)  # their overrides
    table: list[Path] = field(default_factory=list)
    rows: int = 0

    def text(self, error_lines: int = 12) -> str:
        """The summary printed at the end of a sweep: counts, then each failed run with its overrides and the end
        of its error."""
        lines = [f"sweep {self.sweep_dir}: {len(self.done)} done, {len(self.skipped)} skipped (already complete), "
                 f"{len(self.failed)} failed"]
        if self.duplicates:
            lines.append(f"  {len(self.duplicates)} job(s) resolved to a run another job already had, run once: "
                         + "; ".join(f"[{o}]" for o in self.duplicates[:5]) + (" ..." if len(self.duplicates) > 5 else ""))
        for run_id, overrides, err in self.failed:
            lines.append(f"  FAILED {run_id}  [{overrides}]")
            body = (err or "(no error recorded: the job died without writing one)").rstrip().splitlines()
            if len(body) > error_lines:
                body = ["..."] + body[-error_lines:]
            lines.extend("    " + b for b in body)
        if self.table:
            lines.append(f"table: {', '.join(str(p) for p in self.table)} ({self.rows} rows)")
        return "\n".join(lines)


def iter_overrides_text(overrides: Iterable[str]) -> str:
    """Overrides as one command-line string."""
    return " ".join(str(o) for o in overrides)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m experiments.results SWEEP_DIR``: (re)write ``results.parquet`` and ``results.csv``
    from the run records now in ``SWEEP_DIR/runs`` (a sweep writes them when its launcher ends;
    this collects them at any time: while it runs on a cluster, or after a disconnect)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m experiments.results", description=main.__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", help="the sweep directory (hydra.sweep.dir)")
    args = parser.parse_args(argv)
    d = Path(args.sweep_dir)
    if not (d / RUNS_DIR).is_dir():
        parser.error(f"{d}: no {RUNS_DIR}/ directory of run records (is it a sweep directory?)")
    paths, rows = write_table(d)
    print(f"{len(records(d))} complete runs, {rows} rows: {', '.join(map(str, paths))}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
