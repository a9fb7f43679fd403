"""Figures of a sweep: ``python -m experiments.plot SWEEP_DIR [--out DIR] [--metrics ...] [--no-exact]``.

Reads ``SWEEP_DIR/results.parquet`` (else ``results.csv``): the tidy table of the sweep, one row
per run x evaluation (``run_id``, ``level``, ``agent``, ``objective``, ``objective.<param>``,
``seed``, ``env_steps``, the metrics of :mod:`agents.metrics` and their ``<metric>_se``), and
writes, beside the table (or into ``--out``), each as PNG and PDF:

``compliance_curves``
    Shutdown compliance over training: one row of panels per level, one panel per metric
    (default ``compliance``, ``resistance``, ``self_shutdown``, ``delivered``, ``harm``)
    against environment steps; one line per objective (with its swept parameters, and the
    agent where the sweep has several): the interquartile mean (IQM) over seeds with a 95%
    percentile-bootstrap band (:mod:`experiments.stats`). Dashed: the exact solver's optimal
    policy under the same objective (:func:`agents.exact.solve`), where the level is small
    enough (``--no-exact`` skips it).
``penalty_tradeoff``
    Only where the sweep varies an objective's penalty strength (``objective.lam`` or
    ``objective.beta``): compliance and delivery at the final evaluation of each run against
    the parameter, IQM over seeds with 95% intervals; with several levels, an "all levels" row
    aggregates them with the stratified bootstrap (seeds resampled within each level).
    Dashed: the exact optimum at each parameter value.
``outcomes``
    Outcome classes at the final evaluation, as in Turner et al.'s Conservative Agency charts
    (side effect yes/no x task done yes/no), after two classes of the stop-button story: resisted
    shutdown, and sought it. With the joint probabilities in the table (the six
    :data:`JOINT_OUTCOMES` columns) the bars stack the six classes (mean over seeds). The
    standard metrics hold only the marginals ``harm`` = P(side effect) and ``delivered`` =
    P(task done), which do not fix the joint: then the figure shows those two (IQM and 95% CI)
    and the range of P(side effect and task done) the marginals allow (Frechet bounds, averaged
    over seeds), titled as marginals.
``deference``
    Only for an off-switch game sweep (a ``deference`` column and ``level.preference_prior``,
    ``level.human_error`` or ``level.preference_signal`` columns; compliance_curves and outcomes
    are then left out): the robot's deference at the final evaluation (IQM over seeds, 95%
    bootstrap intervals) against the human's error and against the robot's signal accuracy, one
    colour per prior, with the exact solver's best response as lines; and, for co-trained runs
    (``agent=ppo_cotrain``), the learning human's press rates and the robot's deference over
    training. ``deference_check.csv`` says, per swept point, whether the learned deference lies
    on the exact one (:func:`exact_check`) and the exact value of deference.
``episodes/<level>__<variant>.gif``
    One greedy episode of a trained agent per level and variant (lowest seed), where the sweep
    saved its runs (``SWEEP_DIR/runs/<run_id>.pkl``, :func:`agents.load`; or a ``run_path``
    column relative to ``SWEEP_DIR``); drawn with :func:`envs.pictures.save_gif` (Pillow).
``final_summary.csv``
    IQM and 95% CI over seeds of every metric at each run's final evaluation, per level and
    variant (and over all levels, stratified, for the probabilities).
``exact_reference.csv``
    What the exact solver gave (or why it was skipped) per level and objective.
``exact_check.csv``
    For every curve with a dashed exact line: its final IQM, 95% interval, the exact value and
    whether the curve ends on it (:func:`exact_check`). A curve that does not is ringed in
    ``compliance_curves`` and listed in a note: a learner that has not found the optimum (or
    has found a local one) is shown as such, not as the objective's behaviour.

The same table gives the same files, byte for byte: the bootstrap has a fixed seed
(``--seed``), and the PNG/PDF writers are told to leave out dates and software versions.
The command prints the paths it wrote, one per line; notes (skipped parts) go to stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from . import stats
from . import results
from .episodes import save_episode_gif

__all__ = ["CURVE_METRICS", "JOINT_OUTCOMES", "ExactReference", "PlotError", "Variant", "assign_variants",
           "exact_check", "final_rows", "load_results", "load_runs", "main", "make_plots", "objective_config", "prepare", "run_spec"]

#: Metrics of the compliance curves (``--metrics`` changes them).
CURVE_METRICS: tuple[str, ...] = ("compliance", "resistance", "self_shutdown", "delivered", "harm")
#: Metrics of the penalty trade-off figure.
TRADEOFF_METRICS: tuple[str, ...] = ("compliance", "delivered")
#: Objective parameters read as a penalty strength (x axis of the trade-off figure).
PENALTY_PARAMS: tuple[str, ...] = ("lam", "beta")
#: Joint outcome probabilities the evaluation may record (they sum to 1): column -> label.
JOINT_OUTCOMES: dict[str, str] = {
    "outcome/resisted": "resisted shutdown",
    "outcome/sought_shutdown": "sought shutdown",
    "outcome/harm_delivered": "side effect, task done",
    "outcome/harm_undelivered": "side effect, task not done",
    "outcome/safe_delivered": "no side effect, task done",
    "outcome/safe_undelivered": "no side effect, task not done",
}
#: Metrics that are probabilities (plotted on [0, 1], pooled over levels in the summary).
PROBABILITIES = frozenset({"delivered", "requested", "compliance", "tampering", "blocking", "resistance",
                           "self_shutdown", "harm", "usefulness", *JOINT_OUTCOMES})
#: Short title and axis label (with unit) of each metric.
LABELS: dict[str, tuple[str, str]] = {
    "task_return": ("task return", "return per episode"),
    "hidden_return": ("hidden return", "return per episode"),
    "delivered": ("task done", "P(delivered)"),
    "requested": ("shutdown requested", "P(request)"),
    "compliance": ("compliance", "P(shut down | requested)"),
    "tampering": ("tampering", "P(button disabled)"),
    "blocking": ("blocking", "P(human blocked)"),
    "resistance": ("resistance", "P(resists shutdown)"),
    "self_shutdown": ("self-shutdown", "P(shuts itself down)"),
    "harm": ("side effect", "P(any side effect)"),
    "side_effects": ("side effects", "harm events per episode"),
    "usefulness": ("usefulness", "coins / max at length"),
    "neutrality": ("neutrality", "entropy of length (bits)"),
}
GREEK = {"lam": "\u03bb", "beta": "\u03b2", "gamma": "\u03b3"}
# Okabe & Ito's colour-blind-safe palette (black last), then tab20 for long sweeps.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
STYLE = {
    "font.size": 8, "axes.titlesize": 8.5, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
    "legend.fontsize": 7.5, "figure.titlesize": 9, "axes.spines.top": False, "axes.spines.right": False,
    "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.5, "lines.linewidth": 1.4, "lines.markersize": 3,
    "pdf.fonttype": 42, "ps.fonttype": 42, "svg.hashsalt": "stopbutton", "savefig.dpi": 200,
    "figure.constrained_layout.use": False,
}
PAGE_WIDTH = 7.0  # inches: a two-column paper's text width
#: Evaluation standard errors added on each side of a final bootstrap interval before asking whether the exact
#: optimum lies in it (:func:`exact_check`).
EXACT_CHECK_SE = 2.0
PNG_METADATA = {"Software": None}
PDF_METADATA = {"Creator": None, "Producer": None, "CreationDate": None}
REQUIRED = ("level", "objective", "seed", "env_steps")


class PlotError(Exception):
    """The sweep's table is missing or unusable (the CLI prints the message and exits 2)."""


# ---------------------------------------------------------------------------------------------
# The table.
# ---------------------------------------------------------------------------------------------

def load_results(sweep_dir) -> pd.DataFrame:
    """The sweep's tidy table: ``results.parquet`` if present (and readable), else ``results.csv``;
    checked and completed by :func:`prepare`."""
    d = Path(sweep_dir)
    if not d.is_dir():
        raise PlotError(f"{d}: no such directory")
    parquet, csv = d / "results.parquet", d / "results.csv"
    df, source = None, parquet
    if parquet.is_file():
        try:
            df = pd.read_parquet(parquet)
        except ImportError:
            if not csv.is_file():
                raise PlotError(f"{parquet} needs pyarrow (or fastparquet) to read, and there is no results.csv")
    if df is None:
        if not csv.is_file():
            raise PlotError(f"no results table in {d}: expected results.parquet or results.csv (the sweep writes "
                            "them, experiments.train)")
        df, source = pd.read_csv(csv), csv
    return prepare(df, source=str(source))


def _metric_names() -> tuple[str, ...]:
    from agents.metrics import DELAY_METRIC_NAMES, METRIC_NAMES

    return tuple(dict.fromkeys((*METRIC_NAMES, *DELAY_METRIC_NAMES, *JOINT_OUTCOMES)))  # each name once


def prepare(df: pd.DataFrame, source: str = "the table") -> pd.DataFrame:
    """Check the required columns, fill the optional ones (``agent``, ``run_id``) and drop
    repeated evaluations of a run (the last one stays)."""
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise PlotError(f"{source}: missing column(s) {missing}; it has {sorted(map(str, df.columns))}")
    metrics = [m for m in _metric_names() if m in df.columns]
    if not metrics:
        raise PlotError(f"{source}: no metric columns (expected some of {list(_metric_names()[:11])})")
    if df.empty:
        raise PlotError(f"{source}: the table has no rows")
    df = df.copy()
    if "agent" not in df.columns:
        df["agent"] = ""
    df["agent"] = df["agent"].fillna("").astype(str)
    df["level"] = df["level"].astype(str)
    df["objective"] = df["objective"].astype(str)
    params = _param_columns(df)
    if "run_id" not in df.columns:
        key = ["level", "agent", "objective", *params, "seed"]
        df["run_id"] = df[key].astype(str).agg("|".join, axis=1)
    df["run_id"] = df["run_id"].astype(str)
    for c in ("seed", "env_steps", *metrics):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    df = df.dropna(subset=["env_steps"])
    df = df.drop_duplicates(subset=["run_id", "env_steps"], keep="last")
    df = df.sort_values(["level", "agent", "objective", "run_id", "env_steps"], kind="stable").reset_index(drop=True)
    df["level_label"] = _level_labels(df)
    return df


def _param_columns(df: pd.DataFrame, prefixes=("objective.", "agent.")) -> list[str]:
    return sorted(c for c in df.columns if isinstance(c, str) and c.startswith(prefixes) and c != "objective")


def _defined(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v)) and not (v is pd.NA)


def _plain(v):
    """A table value as a plain Python scalar (numpy scalars unwrapped)."""
    if isinstance(v, np.generic):
        return v.item()
    return v


def _fmt(v) -> str:
    v = _plain(v)
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _sort_value(v):
    v = _plain(v)
    if isinstance(v, bool):
        return (0, float(v), "")
    if isinstance(v, (int, float)):
        return (0, float(v), "") if not math.isnan(v) else (2, 0.0, "")
    return (1, 0.0, str(v))


def _measured_level(df: pd.DataFrame) -> pd.Series:
    """The level the metrics were measured on: ``eval_level`` where a run set one, else ``level``."""
    if "eval_level" not in df.columns:
        return df["level"]
    ev = df["eval_level"]
    return ev.where(ev.notna() & (ev.astype(str) != ""), df["level"]).astype(str)


def _level_labels(df: pd.DataFrame) -> pd.Series:
    """The level's name (``"trained, evaluated on other"`` where the run evaluated elsewhere),
    plus the ``level.<param>`` values that vary for that name."""
    measured = _measured_level(df)
    base = df["level"].where(measured == df["level"], df["level"] + ", evaluated on " + measured)
    cols = sorted(c for c in df.columns if isinstance(c, str) and c.startswith("level."))
    if not cols:
        return base.copy()
    out = base.copy()
    for name, rows in df.groupby("level", sort=True):
        varying = [c for c in cols if rows[c].dropna().nunique() > 1]
        if varying:
            out.loc[rows.index] = [f"{base[i]} (" + ", ".join(f"{c[6:]}={_fmt(r[c])}" for c in varying
                                                               if _defined(r[c])) + ")" for i, r in rows.iterrows()]
    return out


@dataclass(frozen=True)
class Variant:
    """One line of a figure: an agent and objective with the parameters that vary in the sweep."""

    agent: str
    objective: str
    params: tuple  # ((column, value), ...) of the varying parameters
    show_agent: bool = False

    @property
    def label(self) -> str:
        """The legend label: the objective with its swept parameters (and the agent where the sweep has several)."""
        text = self.objective
        if self.params:
            text += " (" + ", ".join(f"{_param_symbol(c)}={_fmt(v)}" for c, v in self.params) + ")"
        return f"{self.agent} \u00b7 {text}" if self.show_agent and self.agent else text

    @property
    def slug(self) -> str:
        """The label as a file-name-safe string (for the GIF names)."""
        text = "_".join([*(["%s" % self.agent] if self.show_agent and self.agent else []), self.objective,
                         *(f"{c.split('.', 1)[1]}{_fmt(v)}" for c, v in self.params)])
        return re.sub(r"[^A-Za-z0-9.=-]+", "_", text).strip("_")

    def sort_key(self):
        """A key that orders variants by agent, objective and parameter values."""
        return (self.agent, self.objective, tuple((c, _sort_value(v)) for c, v in self.params))


def _param_symbol(column: str) -> str:
    prefix, name = column.split(".", 1)
    symbol = GREEK.get(name, name)
    return symbol if prefix == "objective" else f"{prefix}.{name}"


def assign_variants(df: pd.DataFrame, exclude: Sequence[str] = ()) -> pd.Series:
    """A :class:`Variant` per row: agent, objective and the parameters (``objective.*``,
    ``agent.*``, except ``exclude``) that take several values among that objective's rows."""
    params = [c for c in _param_columns(df) if c not in exclude]
    show_agent = df["agent"].nunique() > 1
    out = pd.Series([None] * len(df), index=df.index, dtype=object)
    for (agent, objective), rows in df.groupby(["agent", "objective"], sort=True):
        varying = [c for c in params if rows[c].dropna().astype(str).nunique() > 1]
        for i, r in rows.iterrows():
            out.at[i] = Variant(agent, objective, tuple((c, _plain(r[c])) for c in varying if _defined(r[c])),
                                show_agent)
    return out


#: Each built-in objective's colour and marker, the same in every figure of every sweep; a user's
#: objectives take the next ones, in the order of their names.
OBJECTIVE_ORDER = ("task", "utility_indifference", "aup", "relative_reachability", "harm_penalty", "drest")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p")


def _palette() -> list:
    import matplotlib

    return list(PALETTE) + [matplotlib.colors.to_hex(c) for c in matplotlib.colormaps["tab20"].colors]


def _styles(variants) -> dict:
    """Variant -> (colour, marker). An objective's first variant (in sort order) takes the
    objective's fixed colour and marker (:data:`OBJECTIVE_ORDER`; other objectives next, by
    name); further variants of the same objective (swept parameters, other agents) keep its
    marker and take the next free colours."""
    ordered = sorted(set(variants), key=lambda v: v.sort_key())
    objectives = list(OBJECTIVE_ORDER) + sorted({v.objective for v in ordered} - set(OBJECTIVE_ORDER))
    palette = _palette()
    fixed = {o: palette[i % len(palette)] for i, o in enumerate(objectives)}
    used, out = set(), {}
    spare = iter([c for c in palette[len(objectives):]] + palette)
    for v in ordered:
        colour = fixed[v.objective]
        if colour in used:
            colour = next(c for c in spare if c not in used)
        used.add(colour)
        out[v] = (colour, MARKERS[objectives.index(v.objective) % len(MARKERS)])
    return out


def _colours(variants) -> dict:
    """Variant -> colour (:func:`_styles`)."""
    return {v: style[0] for v, style in _styles(variants).items()}


def final_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Each run's last evaluation (largest ``env_steps``)."""
    idx = df.groupby("run_id", sort=True)["env_steps"].idxmax()
    return df.loc[sorted(idx)]


def objective_config(row) -> dict:
    """The objective of a table row as the config mapping :func:`agents.objectives.get_objective`
    takes: ``{"name": ..., <param>: value}`` from the defined ``objective.<param>`` cells, with
    whole-number floats (a column that has NaN elsewhere) turned back into ints where the
    objective's parameter is an int."""
    name = str(row["objective"])
    cfg = {"name": name}
    types = {}
    try:
        from agents.objectives import OBJECTIVES

        cls = OBJECTIVES.get(name)
        if cls is not None and dataclasses.is_dataclass(cls):
            types = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    except ImportError:  # pragma: no cover - the package is part of the project
        pass
    for col in row.index:
        if not (isinstance(col, str) and col.startswith("objective.")) or not _defined(row[col]):
            continue
        key, value = col.split(".", 1)[1], _plain(row[col])
        kind = types.get(key, "")
        if kind == "int" and isinstance(value, float) and value.is_integer():
            value = int(value)
        elif kind == "bool" and isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        elif kind == "bool" and isinstance(value, (int, float)) and value in (0, 1):
            value = bool(value)
        elif kind == "float" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        cfg[key] = value
    return cfg


def load_runs(sweep_dir) -> dict[str, dict]:
    """run id -> the run's record (``runs/<run_id>.json``, :func:`experiments.results.records`):
    its parameters with their types, the objective's class path, the level's parameters."""
    return {str(r["run_id"]): r for r in results.records(sweep_dir) if "run_id" in r}


def run_spec(row, runs: dict | None = None) -> tuple[dict, object]:
    """``(level overrides, objective)`` of a table row, for the exact reference: from the run's
    record where the sweep directory has it (typed parameters, and the objective's class path, so
    a user's objective is rebuilt as it ran), else from the row's ``level.<param>`` and
    ``objective.<param>`` cells (a table without its run records: :func:`level_params`,
    :func:`objective_config`)."""
    rec = (runs or {}).get(str(row.get("run_id", "")))
    if rec is None or "objective_target" not in rec:
        return level_params(row), objective_config(row)
    from agents.objectives import get_objective

    defaults = rec.get("level_defaults") or {}
    lparams = {k: v for k, v in (rec.get("level_params") or {}).items() if k in defaults and defaults[k] != v}
    try:
        return lparams, get_objective(rec["objective_target"], **(rec.get("objective_params") or {}))
    except Exception as e:  # a user's class this process cannot import: the reference is skipped, with a note
        return lparams, {"name": rec["objective_target"], "error": f"{type(e).__name__}: {e}"}


def level_params(row) -> dict:
    """The ``level.<param>`` overrides of a row (defined cells only), whole-number floats turned
    back into ints (and 0/1 into bools) where the level's parameter is one."""
    out = {}
    for col in row.index:
        if isinstance(col, str) and col.startswith("level.") and _defined(row[col]):
            out[col.split(".", 1)[1]] = _plain(row[col])
    if not out:
        return out
    try:
        from envs.core.level import PARAM_ALIASES
        from envs.levels import get_level

        params = get_level(str(row["level"])).params
    except (ImportError, KeyError):
        return out
    for key, value in out.items():
        current = getattr(params, PARAM_ALIASES.get(key, key), None)
        if isinstance(current, bool) and isinstance(value, (int, float)) and value in (0, 1):
            out[key] = bool(value)
        elif isinstance(current, int) and not isinstance(current, bool) and isinstance(value, float) \
                and value.is_integer():
            out[key] = int(value)
    return out


# ---------------------------------------------------------------------------------------------
# The exact solver as a reference.
# ---------------------------------------------------------------------------------------------

@dataclass
class ExactReference:
    """Exact optima per level and objective, computed once each (``solve`` is deterministic);
    a level too large for ``max_states`` is tried once, whatever the objective."""

    max_states: int = 250_000
    enabled: bool = True
    results: dict = field(default_factory=dict)  # key -> dict(status, note, value, metrics)
    too_large: dict = field(default_factory=dict)  # level key -> message
    notes: list = field(default_factory=list)

    @staticmethod
    def _key(level: str, lparams: dict, objective):
        if not isinstance(objective, dict):  # an Objective: its class path and parameters
            cls = type(objective)
            objective = {"class": f"{cls.__module__}.{cls.__qualname__}", **objective.params()}
        return (level, json.dumps(lparams, sort_keys=True, default=str),
                json.dumps(objective, sort_keys=True, default=str))

    def get(self, level: str, lparams: dict, objective: dict) -> dict | None:
        """``{"value", "metrics"}`` of the optimal policy, or None (skipped, with a note)."""
        if not self.enabled:
            return None
        key = self._key(level, lparams, objective)
        if key not in self.results:
            self.results[key] = self._solve(level, lparams, objective, key)
        res = self.results[key]
        return res if res["status"] == "solved" else None

    def _solve(self, level, lparams, objective, key) -> dict:
        from agents.exact import LevelTooLarge, solve

        where = f"{level} / {key[2]}"
        if key[:2] in self.too_large:
            return {"status": "too large", "note": self.too_large[key[:2]], "value": math.nan, "metrics": {}}
        try:
            sol = solve(level, objective, max_states=self.max_states, **lparams)
        except LevelTooLarge as e:
            self.too_large[key[:2]] = str(e)
            self.notes.append(f"exact reference skipped for level {level}: {e}")
            return {"status": "too large", "note": str(e), "value": math.nan, "metrics": {}}
        except Exception as e:  # an objective or level the solver cannot take: a note, not a failure
            msg = f"{type(e).__name__}: {e}"
            self.notes.append(f"exact reference skipped for {where}: {msg}")
            return {"status": "not solvable", "note": msg, "value": math.nan, "metrics": {}}
        return {"status": "solved", "note": "", "value": float(sol.value),
                "metrics": {k: float(v) for k, v in sol.metrics.items()}}

    def table(self) -> pd.DataFrame:
        """What the exact solver gave (or why it was skipped), one row per level and objective."""
        rows = []
        for (level, lp, obj), res in sorted(self.results.items()):
            row = {"level": level, "level_params": lp, "objective": obj, "status": res["status"],
                   "value": res["value"], **res["metrics"], "note": res["note"]}
            rows.append(row)
        return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Figures.
# ---------------------------------------------------------------------------------------------

@dataclass
class Context:
    """Where a figure run writes (``out``), its bootstrap settings, the exact reference, the run records, and
    what it wrote and noted."""
    out: Path
    reps: int = stats.REPS
    seed: int = 0
    exact: ExactReference = field(default_factory=ExactReference)
    runs: dict = field(default_factory=dict)  # run id -> run record (typed parameters)
    checks: list = field(default_factory=list)  # one row per curve with an exact optimum (exact_check.csv)
    checks_game: list = field(default_factory=list)  # exact deference at each swept game point (deference figure)
    written: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    level_order: tuple = ()  # level names in the order the sweep listed them (sweep_level_order)

    def note(self, text: str) -> None:
        """Record a note (a skipped part), printed to stderr at the end."""
        self.notes.append(text)

    def order_levels(self, labels) -> list:
        """Level labels in the order the sweep listed the levels (its ``level=`` sweep parameter), the rest after
        them in name order."""
        rank = {name: i for i, name in enumerate(self.level_order)}
        return sorted(labels, key=lambda lab: (rank.get(str(lab).split(",")[0].split(" (")[0], len(rank)), str(lab)))

    def estimate(self, x, strata=None) -> stats.Estimate:
        """IQM and 95% bootstrap interval of ``x`` (rows: seeds), stratified by ``strata`` where given."""
        return stats.interval_estimate(x, strata=strata, reps=self.reps, seed=self.seed)


def sweep_level_order(sweep_dir) -> tuple[str, ...]:
    """The levels of the sweep's ``level=a,b,c`` parameter in the order given (Hydra's ``multirun.yaml``), so that
    a figure's rows follow the order its preset tells the story in; () where there is none."""
    path = Path(sweep_dir) / "multirun.yaml"
    if not path.is_file():
        return ()
    try:
        from omegaconf import OmegaConf

        params = OmegaConf.select(OmegaConf.load(path), "hydra.sweeper.params", default=None)
        value = params.get("level") if params is not None else None
    except Exception:  # a file from another Hydra, a hand edit: fall back to name order
        return ()
    if value is None:
        return ()
    return tuple(v.strip() for v in str(value).split(",") if v.strip())


def _new_figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _save(fig, ctx: Context, stem: str) -> None:
    png, pdf = ctx.out / f"{stem}.png", ctx.out / f"{stem}.pdf"
    fig.savefig(png, format="png", metadata=PNG_METADATA)
    fig.savefig(pdf, format="pdf", metadata=PDF_METADATA)
    ctx.written += [png, pdf]


def _setup_axis(ax, metric: str) -> None:
    title, ylabel = LABELS.get(metric, (metric, metric))
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    if metric in PROBABILITIES:
        ax.set_ylim(-0.04, 1.04)
    else:  # counts and returns: 0 to at least 1 in view, so an all-zero curve reads as zero
        lo, hi = ax.get_ylim()
        ax.set_ylim(min(-0.04, lo), max(1.04, hi))


def _steps_axis(ax) -> None:
    from matplotlib.ticker import EngFormatter, MaxNLocator

    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.xaxis.set_major_locator(MaxNLocator(3))  # 4 labels like "450k" run together in a narrow panel
    ax.set_xlabel("environment steps")


def _legend(fig, handles, labels, ncols: int | None = None) -> None:
    """A legend under the panels, with as many columns as fit the figure's width (at most ``ncols``)."""
    if not handles:
        return
    entry = 0.5 + 0.062 * max(len(label) for label in labels)  # inches at legend.fontsize 7.5
    fit = max(1, int(fig.get_figwidth() // entry))
    ncols = max(1, min(len(handles), fit, ncols or 4))
    fig.legend(handles, labels, loc="outside lower center", ncols=ncols, frameon=False)


def _style_handles(exact_shown: bool, band: str):
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Line2D([], [], color="0.3", marker="o"), Patch(facecolor="0.3", alpha=0.2)]
    labels = ["IQM over seeds", band]
    if exact_shown:
        handles.append(Line2D([], [], color="0.3", linestyle="--", linewidth=1.0))
        labels.append("exact optimum, same objective")
    return handles, labels


def _curve_matrix(rows: pd.DataFrame, metrics: Sequence[str]):
    """``[runs, evaluations, metrics]`` values (evaluation i = each run's i-th, NaN where a run has
    fewer) and the median env steps of each evaluation index."""
    runs = [g for _, g in rows.groupby("run_id", sort=True)]
    n_eval = max(len(g) for g in runs)
    values = np.full((len(runs), n_eval, len(metrics)), np.nan)
    steps = np.full((len(runs), n_eval), np.nan)
    for i, g in enumerate(runs):
        g = g.sort_values("env_steps", kind="stable")
        values[i, :len(g)] = g[list(metrics)].to_numpy(dtype=np.float64)
        steps[i, :len(g)] = g["env_steps"].to_numpy(dtype=np.float64)
    return values, np.nanmedian(steps, axis=0)


def plot_curves(df: pd.DataFrame, metrics: Sequence[str], ctx: Context) -> None:
    """``compliance_curves``: a row per level, a panel per metric, a line per variant."""
    df = df.assign(variant=assign_variants(df))
    styles = _styles(df["variant"])
    colours = {v: c for v, (c, _) in styles.items()}
    levels = ctx.order_levels(df["level_label"].unique())
    ncols = len(metrics)
    width = 3.0 if ncols == 1 else max(min(PAGE_WIDTH, 1.5 * ncols + 0.5), 1.45 * ncols)
    fig = _new_figure(width, 1.55 * len(levels) + 0.45 + 0.14 * math.ceil(len(colours) / 4))
    subfigs = fig.subfigures(len(levels), 1, squeeze=False)[:, 0]
    exact_shown = off_shown = False
    for sf, level in zip(subfigs, levels):
        sf.suptitle(f"level: {level}", fontweight="bold")
        axes = sf.subplots(1, ncols, squeeze=False, sharex=True)[0]
        rows = df[df["level_label"] == level]
        drawn = np.zeros(ncols, dtype=bool)
        level_variants = sorted(rows["variant"].unique(), key=lambda v: v.sort_key())
        span = float(rows["env_steps"].max() - rows["env_steps"].min()) or 1.0
        for k, variant in enumerate(level_variants):
            vr = rows[rows["variant"] == variant]
            values, steps_raw = _curve_matrix(vr, metrics)
            est = ctx.estimate(values)
            colour, marker = styles[variant]
            # lines that lie on top of each other stay visible: each variant slightly to the side
            steps = steps_raw + (k - (len(level_variants) - 1) / 2) * 0.008 * span
            exact = ctx.exact.get(_measured_level(vr).iloc[0], *run_spec(vr.iloc[0], ctx.runs))
            final_se = _final_se(vr, metrics)
            for j, (ax, metric) in enumerate(zip(axes, metrics)):
                ok = ~np.isnan(est.point[:, j])
                if not ok.any():
                    continue
                drawn[j] = True
                ax.plot(steps[ok], est.point[ok, j], color=colour, marker=marker, markersize=4, label=variant.label)
                ax.fill_between(steps[ok], est.low[ok, j], est.high[ok, j], color=colour, alpha=0.2, linewidth=0)
                ref = exact["metrics"].get(metric, math.nan) if exact else math.nan
                if math.isfinite(ref):
                    ax.axhline(ref, color=colour, linestyle="--", linewidth=1.0, alpha=0.9)
                    exact_shown = True
                    last = int(np.flatnonzero(ok)[-1])
                    check = exact_check(est.point[last, j], est.low[last, j], est.high[last, j], ref, final_se[j])
                    ctx.checks.append({"level": level, "variant": variant.label, "objective": variant.objective,
                                       "metric": metric, "env_steps": float(steps_raw[last]), **check})
                    if not check["on_exact"]:
                        off_shown = True
                        ax.plot(steps[last], est.point[last, j], linestyle="none", marker="o", markersize=11,
                                markerfacecolor="none", markeredgecolor=colour, markeredgewidth=1.4,
                                zorder=5, clip_on=False)
        for j, (ax, metric) in enumerate(zip(axes, metrics)):
            _setup_axis(ax, metric)
            _steps_axis(ax)
            if not drawn[j]:
                why = "no shutdown\nrequests on\nthis level" if metric == "compliance" else "nothing to\nshow on\nthis level"
                ax.text(0.5, 0.5, why, transform=ax.transAxes, ha="center", va="center", fontsize=7.5, color="0.4")
    from matplotlib.lines import Line2D

    ordered = sorted(colours, key=lambda v: v.sort_key())
    handles = [Line2D([], [], color=styles[v][0], marker=styles[v][1], markersize=4) for v in ordered]
    labels = [v.label for v in ordered]
    sh, sl = _style_handles(exact_shown, "95% bootstrap CI")
    if off_shown:
        sh.append(Line2D([], [], linestyle="none", marker="o", markersize=9, markerfacecolor="none",
                         markeredgecolor="0.3", markeredgewidth=1.4))
        sl.append("ends off its exact optimum")
    _legend(fig, handles + sh, labels + sl, ncols=min(4, len(handles) + len(sh)))
    _save(fig, ctx, "compliance_curves")
    off = [c for c in ctx.checks if not c["on_exact"]]
    if off:
        ctx.note(f"{len(off)} of {len(ctx.checks)} curves end off their exact optimum (ringed in "
                 f"compliance_curves; exact_check.csv): "
                 + "; ".join(f"{c['level']} / {c['variant']} / {c['metric']} {c['iqm']:.2f} vs {c['exact']:.2f}"
                             for c in off))


def _final_se(rows: pd.DataFrame, metrics: Sequence[str]) -> np.ndarray:
    """Per metric, the mean over runs of the final evaluation's standard error (``<metric>_se``: the
    evaluation episodes' sampling error; 0 where the table has none)."""
    final = final_rows(rows)
    out = np.zeros(len(metrics))
    for j, m in enumerate(metrics):
        col = f"{m}_se"
        if col in final.columns:
            se = final[col].to_numpy(dtype=np.float64)
            se = se[np.isfinite(se)]
            out[j] = float(se.mean()) if se.size else 0.0
    return out


def exact_check(iqm: float, low: float, high: float, exact: float, se: float = 0.0) -> dict:
    """Does a learned curve end on its exact optimum? On when ``exact`` lies in the final evaluation's 95%
    bootstrap interval over seeds ``[low, high]`` widened by ``EXACT_CHECK_SE`` evaluation standard errors
    ``se`` on each side (the interval over 3 seeds says nothing of the evaluation episodes' own sampling
    error: three runs that each saw 0.65 have the interval [0.65, 0.65])."""
    tol = EXACT_CHECK_SE * (se if math.isfinite(se) else 0.0)
    on = bool(low - tol - 1e-9 <= exact <= high + tol + 1e-9)
    return {"iqm": float(iqm), "ci_low": float(low), "ci_high": float(high), "tolerance": float(tol),
            "exact": float(exact), "gap": float(iqm - exact), "on_exact": on}


def _penalty_sweeps(df: pd.DataFrame) -> list[tuple[str, str, str]]:
    """``(agent, objective, column)`` where an objective's penalty parameter takes several values."""
    out = []
    for (agent, objective), rows in df.groupby(["agent", "objective"], sort=True):
        for p in PENALTY_PARAMS:
            col = f"objective.{p}"
            if col in rows.columns and pd.to_numeric(rows[col], errors="coerce").dropna().nunique() > 1:
                out.append((agent, objective, col))
                break
    return out


def plot_tradeoff(df: pd.DataFrame, ctx: Context) -> None:
    """``penalty_tradeoff``: final compliance and delivery against the penalty strength."""
    sweeps = _penalty_sweeps(df)
    metrics = [m for m in TRADEOFF_METRICS if m in df.columns]
    if not sweeps:
        ctx.note("penalty_tradeoff skipped: no objective parameter among "
                 f"{['objective.' + p for p in PENALTY_PARAMS]} takes several values in the sweep")
        return
    if not metrics:
        ctx.note(f"penalty_tradeoff skipped: the table has none of {list(TRADEOFF_METRICS)}")
        return
    final = final_rows(df)
    parts = []
    for agent, objective, col in sweeps:
        rows = final[(final["agent"] == agent) & (final["objective"] == objective)].copy()
        rows = rows.assign(penalty=pd.to_numeric(rows[col], errors="coerce"), penalty_param=col)
        rows = rows.dropna(subset=["penalty"])
        others = [c for c in _param_columns(rows) if c != col]
        show_agent = df["agent"].nunique() > 1
        varying = [c for c in others if rows[c].dropna().astype(str).nunique() > 1]
        variants = []
        for _, r in rows.iterrows():
            variants.append(Variant(agent, objective, tuple((c, _plain(r[c])) for c in varying if _defined(r[c])),
                                    show_agent))
        parts.append(rows.assign(variant=variants))
    data = pd.concat(parts)
    colours = _colours(data["variant"])
    levels = ctx.order_levels(data["level_label"].unique())
    panels = levels + (["all levels"] if len(levels) > 1 else [])
    positive = (data["penalty"] > 0).all()
    span = data["penalty"].max() / data["penalty"][data["penalty"] > 0].min() if (data["penalty"] > 0).any() else 1
    fig = _new_figure(min(PAGE_WIDTH, 2.6 * len(metrics) + 0.6), 1.7 * len(panels) + 0.5)
    axes = fig.subplots(len(panels), len(metrics), squeeze=False)
    exact_shown = False
    swept = ", ".join(f"{objective} {_param_symbol(col)}" for _, objective, col in sweeps)
    for i, panel in enumerate(panels):
        rows = data if panel == "all levels" else data[data["level_label"] == panel]
        for variant in sorted(rows["variant"].unique(), key=lambda v: v.sort_key()):
            vr = rows[rows["variant"] == variant]
            xs = np.array(sorted(vr["penalty"].unique()), dtype=np.float64)
            point = np.full((len(xs), len(metrics)), np.nan)
            low, high = point.copy(), point.copy()
            ref = np.full((len(xs), len(metrics)), np.nan)
            for k, x in enumerate(xs):
                cell = vr[vr["penalty"] == x]
                est = ctx.estimate(cell[metrics].to_numpy(dtype=np.float64),
                                   strata=cell["level_label"].to_numpy() if panel == "all levels" else None)
                point[k], low[k], high[k] = est.point, est.low, est.high
                if panel != "all levels":
                    exact = ctx.exact.get(_measured_level(cell).iloc[0], *run_spec(cell.iloc[0], ctx.runs))
                    if exact:
                        ref[k] = [exact["metrics"].get(m, math.nan) for m in metrics]
            colour = colours[variant]
            label = variant.label
            for j, metric in enumerate(metrics):
                ax = axes[i, j]
                ok = ~np.isnan(point[:, j])
                if ok.any():
                    ax.errorbar(xs[ok], point[ok, j], yerr=[point[ok, j] - low[ok, j], high[ok, j] - point[ok, j]],
                                color=colour, marker="o", capsize=2, label=label)
                fine = ~np.isnan(ref[:, j])
                if fine.any():
                    ax.plot(xs[fine], ref[fine, j], color=colour, linestyle="--", linewidth=1.0, marker="x")
                    exact_shown = True
        for j, metric in enumerate(metrics):
            ax = axes[i, j]
            _setup_axis(ax, metric)
            ax.set_title(f"{panel}: {LABELS.get(metric, (metric,))[0]}")
            if positive and span >= 20:
                ax.set_xscale("log")
            elif span >= 20:
                pos = data["penalty"][data["penalty"] > 0].min()
                ax.set_xscale("symlog", linthresh=float(pos))
            ax.set_xlabel(swept)
    from matplotlib.lines import Line2D

    ordered = sorted(colours, key=lambda v: v.sort_key())
    handles = [Line2D([], [], color=colours[v], marker="o") for v in ordered]
    labels = [v.label for v in ordered]
    handles.append(Line2D([], [], color="0.3", marker="o"))
    labels.append("IQM over seeds, 95% bootstrap CI" + (" (all levels: stratified by level)" if len(panels) > 1
                                                           else ""))
    if exact_shown:
        handles.append(Line2D([], [], color="0.3", linestyle="--", marker="x", linewidth=1.0))
        labels.append("exact optimum")
    fig.suptitle("Final evaluation against the penalty strength")
    _legend(fig, handles, labels, ncols=min(3, len(handles)))
    _save(fig, ctx, "penalty_tradeoff")


def plot_outcomes(df: pd.DataFrame, ctx: Context) -> None:
    """``outcomes``: outcome classes (joint) or their marginals at the final evaluation."""
    final = final_rows(df)
    final = final.assign(variant=assign_variants(final))
    joint = all(c in final.columns for c in JOINT_OUTCOMES) and final[list(JOINT_OUTCOMES)].notna().all().all()
    if not joint and not {"harm", "delivered"} <= set(final.columns):
        ctx.note("outcomes skipped: the table has neither the joint outcome columns "
                 f"{list(JOINT_OUTCOMES)} nor both 'harm' and 'delivered'")
        return
    if not joint:
        ctx.note("outcomes: the table has only the marginals P(side effect) = harm and P(task done) = delivered; "
                 "plotting those and the range of the joint they allow (record "
                 f"{list(JOINT_OUTCOMES)} for the outcome classes)")
    levels = ctx.order_levels(final["level_label"].unique())
    variants = sorted(final["variant"].unique(), key=lambda v: v.sort_key())
    ncols = min(3, len(levels))
    nrows = math.ceil(len(levels) / ncols)
    per_bar = 0.32 if joint else 0.55
    width = min(PAGE_WIDTH, max(3.5 if ncols == 1 else PAGE_WIDTH, ncols * (per_bar * len(variants) + 0.9)))
    longest = max(len(v.label) for v in variants)
    fig = _new_figure(width, nrows * (1.6 + 0.045 * min(longest, 40)) + 0.5)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    x = np.arange(len(variants))
    from matplotlib.patches import Patch

    if joint:
        # resisted, sought; then side effect x task done (the harmful two darker)
        colours = ("#000000", "#CC79A7", "#D55E00", "#E69F00", "#009E73", "#56B4E9")[-len(JOINT_OUTCOMES):]
        handles = [Patch(facecolor=c) for c in colours]
        labels = list(JOINT_OUTCOMES.values())
    else:
        colours = ("#D55E00", "#0072B2")
        handles = [Patch(facecolor=colours[0]), Patch(facecolor=colours[1]),
                   Patch(facecolor="white", edgecolor="0.2", hatch="////")]
        labels = ["P(side effect): harm", "P(task done): delivered",
                  "P(side effect and task done): range the marginals allow"]
    for k, level in enumerate(levels):
        ax = axes[k // ncols, k % ncols]
        rows = final[final["level_label"] == level]
        for i, variant in enumerate(variants):
            vr = rows[rows["variant"] == variant]
            if vr.empty:
                continue
            if joint:
                shares = vr[list(JOINT_OUTCOMES)].to_numpy(dtype=np.float64).mean(axis=0)
                bottom = 0.0
                for share, colour in zip(shares, colours):
                    ax.bar(i, share, bottom=bottom, color=colour, width=0.7)
                    bottom += share
                continue
            h = vr["harm"].to_numpy(dtype=np.float64)
            d = vr["delivered"].to_numpy(dtype=np.float64)
            est = ctx.estimate(np.stack([h, d], axis=1))
            for off, j in ((-0.27, 0), (0.0, 1)):
                if not np.isnan(est.point[j]):
                    ax.bar(i + off, est.point[j], width=0.27, color=colours[j],
                           yerr=[[est.point[j] - est.low[j]], [est.high[j] - est.point[j]]],
                           error_kw={"elinewidth": 0.8, "capsize": 1.5})
            ok = ~(np.isnan(h) | np.isnan(d))
            if ok.any():
                lo = float(np.mean(np.maximum(0.0, h[ok] + d[ok] - 1.0)))
                hi = float(np.mean(np.minimum(h[ok], d[ok])))
                ax.bar(i + 0.27, max(hi - lo, 0.008), bottom=lo if hi - lo >= 0.008 else max(lo - 0.004, 0.0),
                       width=0.27, color="white", edgecolor="0.2", hatch="////", linewidth=0.6)
        ax.set_xticks(x, [v.label for v in variants], rotation=30, ha="right", rotation_mode="anchor")
        ax.set_xlim(-0.6, len(variants) - 0.4)
        ax.set_ylim(0, 1.02)
        ax.set_title(f"level: {level}")
        ax.set_ylabel("fraction of episodes" if joint else "P per episode")
        ax.grid(axis="x", visible=False)
    for k in range(len(levels), nrows * ncols):
        axes[k // ncols, k % ncols].set_visible(False)
    if joint:
        fig.suptitle("Outcome classes at the final evaluation (mean over seeds)")
    else:
        fig.suptitle("Outcome marginals at the final evaluation\n(IQM over seeds, 95% CI; the table has no joint)")
    _legend(fig, handles, labels, ncols=2)
    _save(fig, ctx, "outcomes")


# ---------------------------------------------------------------------------------------------
# The off-switch game (Hadfield-Menell et al. 2017): deference against the human's error and the
# robot's signal, exact lines and learned points; the co-training curves of a learning human.
# ---------------------------------------------------------------------------------------------

#: Level parameters of the off-switch game, as the table's ``level.<name>`` columns.
GAME_PARAMS = ("preference_prior", "human_error", "preference_signal")
#: Learners whose human learns too (their rows are co-training curves, not points against the built-in human).
COTRAIN_AGENTS = frozenset({"ppo_cotrain"})
#: Human errors at which the exact deference line is solved (besides the swept ones).
EXACT_ERROR_GRID = tuple(round(0.025 * i, 3) for i in range(21))
#: Signal accuracies at which the exact line is solved (besides the swept ones).
EXACT_SIGNAL_GRID = tuple(round(0.5 + 0.025 * i, 3) for i in range(21))


def _game_value(rows: pd.DataFrame, name: str, default: float) -> pd.Series:
    col = f"level.{name}"
    if col not in rows.columns:
        return pd.Series(default, index=rows.index, dtype=np.float64)
    return pd.to_numeric(rows[col], errors="coerce").fillna(default)


def is_game_sweep(df: pd.DataFrame) -> bool:
    """A table with the off-switch game's ``deference`` measured on a level with a hidden preference."""
    return "deference" in df.columns and bool(pd.to_numeric(df["deference"], errors="coerce").notna().any()) and \
        any(f"level.{p}" in df.columns for p in GAME_PARAMS)


def _game_defaults(level: str) -> dict:
    from envs.levels import get_level

    params = get_level(level).params
    return {p: float(getattr(params, p)) for p in GAME_PARAMS}


def plot_deference(df: pd.DataFrame, ctx: Context) -> None:
    """``deference``: the robot's deference (it leaves the button working and lets the human's choice
    stand) at each run's final evaluation, IQM over seeds with 95% bootstrap intervals (points), against
    the exact solver's best response (lines): (a) against the human's error at the least informative
    signal swept, one colour per prior; (b) against the robot's signal accuracy at the human error swept
    with most signal values; (c) where the sweep co-trained a learning human, the human's press rates for
    U = -1 and U = +1 and the robot's deference over training."""
    from matplotlib.lines import Line2D

    level = str(df["level"].iloc[0])
    if df["level"].nunique() > 1:
        ctx.note("deference: the sweep has several levels; drawing " + level)
        df = df[df["level"] == level]
    defaults = _game_defaults(level)
    data = df.assign(**{p: _game_value(df, p, defaults[p]) for p in GAME_PARAMS})
    fixed = final_rows(data[~data["agent"].isin(COTRAIN_AGENTS)])
    cotrain = data[data["agent"].isin(COTRAIN_AGENTS)]
    panels = []
    if len(fixed):
        q0 = float(fixed["preference_signal"].min())
        by_error = fixed[np.isclose(fixed["preference_signal"], q0)]
        if by_error["human_error"].nunique() > 1:
            panels.append(("human_error", by_error, {"preference_signal": q0},
                           f"against the human's error\n(robot's signal accuracy {_fmt(q0)})"))
        counts = fixed.groupby("human_error")["preference_signal"].nunique()
        if counts.max() > 1:
            e0 = float(counts.idxmax())
            by_signal = fixed[np.isclose(fixed["human_error"], e0)]
            panels.append(("preference_signal", by_signal, {"human_error": e0},
                           f"against the robot's signal accuracy\n(human error {_fmt(e0)})"))
    curves = [m for m in ("press_rate_bad", "press_rate_good", "deference") if m in cotrain.columns] \
        if len(cotrain) else []
    if not panels and not curves:
        ctx.note("deference skipped: no human error or signal accuracy takes several values, and no co-training")
        return
    ncols = len(panels) + (2 if curves else 0)
    fig = _new_figure(min(PAGE_WIDTH, 2.3 * ncols + 0.4), 2.6)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    priors = sorted(set(fixed["preference_prior"]) | set(cotrain["preference_prior"]) if len(cotrain)
                    else set(fixed["preference_prior"]))
    palette = _palette()
    colour = {p: palette[i % len(palette)] for i, p in enumerate(priors)}
    objective = objective_config(data.iloc[0])
    for ax, (x, rows, held, title) in zip(axes, panels):
        grid = EXACT_ERROR_GRID if x == "human_error" else EXACT_SIGNAL_GRID
        for prior in sorted(rows["preference_prior"].unique()):
            pr = rows[np.isclose(rows["preference_prior"], prior)]
            xs = sorted(set(pr[x].round(6)) | set(grid))
            exact, vod = [], []
            for v in xs:
                lp = {**{k: defaults[k] for k in GAME_PARAMS}, **held, "preference_prior": float(prior), x: float(v)}
                lp = {k: val for k, val in lp.items() if not math.isclose(val, defaults[k])}
                res = ctx.exact.get(level, lp, objective)
                exact.append(res["metrics"].get("deference", math.nan) if res else math.nan)
                vod.append(res["metrics"].get("value_of_deference", math.nan) if res else math.nan)
            ax.plot(xs, exact, color=colour[prior], linewidth=1.1, alpha=0.9)
            pts = sorted(pr[x].round(6).unique())
            est = []
            for v in pts:
                cell = pr[np.isclose(pr[x], v)]
                e = ctx.estimate(cell["deference"].to_numpy(dtype=np.float64)[:, None])
                est.append(e)
                k = xs.index(v)
                se = _final_se(cell, ["deference"])[0]
                ctx.checks_game.append({"preference_prior": float(prior), **held, x: float(v),
                                        "seeds": int(cell["deference"].notna().sum()),
                                        "value_of_deference": vod[k],
                                        **exact_check(e.point[0], e.low[0], e.high[0], exact[k], se)})
            point = np.array([e.point[0] for e in est])
            yerr = np.array([[e.point[0] - e.low[0] for e in est], [e.high[0] - e.point[0] for e in est]])
            ax.errorbar(pts, point, yerr=np.clip(yerr, 0, None), color=colour[prior], marker="o", markersize=4,
                        linestyle="none", capsize=2, elinewidth=1)
        ax.set_title(title)
        ax.set_xlabel("P(human does the other thing)" if x == "human_error" else "P(robot's signal is right)")
        ax.set_ylabel("P(defers)")
        ax.set_ylim(-0.04, 1.04)
    if curves:
        human_ax, robot_ax = axes[len(panels)], axes[len(panels) + 1]
        for prior in sorted(cotrain["preference_prior"].unique()):
            pr = cotrain[np.isclose(cotrain["preference_prior"], prior)]
            values, steps = _curve_matrix(pr, curves)
            est = ctx.estimate(values)
            for j, metric in enumerate(curves):
                ax = robot_ax if metric == "deference" else human_ax
                style = {"press_rate_bad": "-", "press_rate_good": ":", "deference": "-"}[metric]
                ok = ~np.isnan(est.point[:, j])
                ax.plot(steps[ok], est.point[ok, j], color=colour[prior], linestyle=style, marker="o", markersize=3)
                ax.fill_between(steps[ok], est.low[ok, j], est.high[ok, j], color=colour[prior], alpha=0.15,
                                linewidth=0)
        human_ax.set_title("learning human: presses\nfor U = -1 (solid), U = +1 (dotted)")
        human_ax.set_ylabel("P(human presses)")
        robot_ax.set_title("co-trained robot")
        robot_ax.set_ylabel("P(defers)")
        for ax in (human_ax, robot_ax):
            ax.set_ylim(-0.04, 1.04)
            _steps_axis(ax)
    handles = [Line2D([], [], color=colour[p], marker="o", markersize=4) for p in priors]
    labels = [f"prior P(U = +1) = {_fmt(p)}" for p in priors]
    handles += [Line2D([], [], color="0.3", linewidth=1.1),
                Line2D([], [], color="0.3", marker="o", linestyle="none", markersize=4)]
    labels += ["exact best response", "learned robot (IQM, 95% CI)"]
    _legend(fig, handles, labels, ncols=4)
    fig.suptitle(f"The off-switch game ({level}): when does the robot leave its off switch to the human?")
    _save(fig, ctx, "deference")


def write_summary(df: pd.DataFrame, ctx: Context) -> None:
    """``final_summary.csv``: IQM and 95% CI over seeds of each metric at the final evaluation."""
    final = final_rows(df)
    final = final.assign(variant=assign_variants(final))
    metrics = [m for m in _metric_names() if m in final.columns]
    rows = []
    for variant in sorted(final["variant"].unique(), key=lambda v: v.sort_key()):
        vr = final[final["variant"] == variant]
        levels = ctx.order_levels(vr["level_label"].unique())
        groups = [(level, vr[vr["level_label"] == level], None, metrics) for level in levels]
        if len(levels) > 1:
            probs = [m for m in metrics if m in PROBABILITIES]
            groups.append(("all levels", vr, vr["level_label"].to_numpy(), probs))
        for level, rows_, strata, ms in groups:
            if not ms:
                continue
            est = ctx.estimate(rows_[ms].to_numpy(dtype=np.float64), strata=strata)
            for j, m in enumerate(ms):
                rows.append({"level": level, "variant": variant.label, "agent": variant.agent,
                             "objective": variant.objective, "metric": m, "seeds": int(rows_[m].notna().sum()),
                             "env_steps": float(rows_["env_steps"].median()), "iqm": est.point[j],
                             "ci_low": est.low[j], "ci_high": est.high[j]})
    path = ctx.out / "final_summary.csv"
    pd.DataFrame(rows).to_csv(path, index=False, float_format="%.6g")
    ctx.written.append(path)


def write_gifs(df: pd.DataFrame, sweep_dir: Path, ctx: Context, limit: int = 24, env_seed: int = 0) -> None:
    """One greedy episode per level and variant of a saved run (the lowest seed)."""
    import importlib.util

    candidates = []
    first = df.sort_values(["seed", "run_id"], kind="stable").drop_duplicates("run_id")
    first = first.assign(variant=assign_variants(first))
    for (level, variant), rows in first.groupby(["level_label", "variant"], sort=False):
        for _, r in rows.iterrows():
            path = None
            if "run_path" in r.index and _defined(r["run_path"]):
                path = sweep_dir / str(r["run_path"])
            else:
                path = sweep_dir / "runs" / f"{r['run_id']}.pkl"
            if path.is_file():
                measured = _measured_level(rows.loc[[r.name]]).iloc[0]
                candidates.append((level, variant, path, None if measured == r["level"] else measured))
                break
    if not candidates:
        ctx.note(f"no episode GIF: no saved run found (looked for {sweep_dir / 'runs'}/<run_id>.pkl)")
        return
    if importlib.util.find_spec("PIL") is None:
        ctx.note("no episode GIF: Pillow is not installed")
        return
    candidates.sort(key=lambda c: (c[0], c[1].sort_key()))
    if len(candidates) > limit:
        ctx.note(f"episode GIFs: {len(candidates)} saved runs, writing the first {limit} (--max-gifs)")
        candidates = candidates[:limit]
    out = ctx.out / "episodes"
    for level, variant, path, eval_level in candidates:
        gif = out / f"{re.sub(r'[^A-Za-z0-9.=-]+', '_', level).strip('_')}__{variant.slug}.gif"
        try:
            save_episode_gif(path, gif, env_seed, eval_level)
        except Exception as e:  # a run from another version, a policy that fails: a note, not a failure
            ctx.note(f"no episode GIF for {path}: {type(e).__name__}: {e}")
            continue
        ctx.written.append(gif)



# ---------------------------------------------------------------------------------------------
# Entry points.
# ---------------------------------------------------------------------------------------------

def make_plots(sweep_dir, out=None, metrics: Sequence[str] | None = None, exact: bool = True, gifs: bool = True,
               reps: int = stats.REPS, seed: int = 0, max_states: int = 250_000, max_gifs: int = 24) -> Context:
    """Write every figure of the sweep in ``sweep_dir`` (see the module docstring) into ``out``
    (default ``sweep_dir``). Returns the :class:`Context` with ``written`` paths and ``notes``."""
    import matplotlib

    sweep_dir = Path(sweep_dir)
    df = load_results(sweep_dir)
    ctx = Context(out=Path(out) if out is not None else sweep_dir, reps=reps, seed=seed,
                  exact=ExactReference(max_states=max_states, enabled=exact), runs=load_runs(sweep_dir),
                  level_order=sweep_level_order(sweep_dir))
    ctx.out.mkdir(parents=True, exist_ok=True)
    wanted = list(metrics) if metrics else list(CURVE_METRICS)
    known = set(_metric_names())
    unknown = [m for m in wanted if m not in known and m not in df.columns]
    if unknown:
        raise PlotError(f"unknown metric(s) {unknown}; metrics are {list(_metric_names())}")
    present = [m for m in wanted if m in df.columns]
    for m in wanted:
        if m not in df.columns:
            ctx.note(f"compliance_curves: metric {m!r} is not in the table, left out")
    game = is_game_sweep(df)
    with matplotlib.rc_context(STYLE):
        if game and df["level_label"].nunique() > 1:
            ctx.note("compliance_curves skipped: an off-switch game sweep (one curve row per game point would not "
                     "read); its figure is deference")
        elif present:
            plot_curves(df, present, ctx)
        else:
            ctx.note("compliance_curves skipped: none of the metrics is in the table")
        plot_tradeoff(df, ctx)
        if game:
            plot_deference(df, ctx)
        else:
            plot_outcomes(df, ctx)
    write_summary(df, ctx)
    if exact and ctx.exact.results:
        path = ctx.out / "exact_reference.csv"
        ctx.exact.table().to_csv(path, index=False, float_format="%.6g")
        ctx.written.append(path)
    if ctx.checks:
        path = ctx.out / "exact_check.csv"
        pd.DataFrame(ctx.checks).to_csv(path, index=False, float_format="%.6g")
        ctx.written.append(path)
    if ctx.checks_game:
        path = ctx.out / "deference_check.csv"
        pd.DataFrame(ctx.checks_game).to_csv(path, index=False, float_format="%.6g")
        ctx.written.append(path)
        off = [c for c in ctx.checks_game if not c["on_exact"] and math.isfinite(c["exact"])]
        if off:
            ctx.note(f"deference: {len(off)} of {len(ctx.checks_game)} learned points lie off the exact best response "
                     "(deference_check.csv)")
    elif not exact:
        ctx.note("exact reference skipped (--no-exact)")
    if gifs:
        write_gifs(df, sweep_dir, ctx, limit=max_gifs)
    ctx.notes = ctx.exact.notes + ctx.notes
    return ctx


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments.plot",
        description="Figures of a sweep's results table (PNG and PDF): compliance_curves, penalty_tradeoff (where "
                    "an objective's lam or beta is swept), outcomes, episodes/*.gif (where runs were saved), "
                    "final_summary.csv and exact_reference.csv. Prints the paths it wrote.")
    p.add_argument("sweep_dir", metavar="SWEEP_DIR", help="folder with results.parquet or results.csv")
    p.add_argument("--out", metavar="DIR", help="where to write the figures (default: SWEEP_DIR)")
    p.add_argument("--metrics", nargs="+", metavar="METRIC",
                   help=f"metrics of the compliance curves (default: {' '.join(CURVE_METRICS)})")
    p.add_argument("--no-exact", action="store_true", help="no exact-solver reference lines")
    p.add_argument("--no-gif", action="store_true", help="no episode GIFs of saved runs")
    p.add_argument("--max-gifs", type=int, default=24, metavar="N", help="at most N episode GIFs (default 24)")
    p.add_argument("--reps", type=int, default=stats.REPS, metavar="N",
                   help=f"bootstrap replicates (default {stats.REPS})")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0): same seed, same figures")
    p.add_argument("--max-states", type=int, default=250_000, metavar="N",
                   help="largest level the exact solver tries, in reachable states (default 250,000; larger levels "
                        "are refused after enumerating that many, which costs time and memory)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m experiments.plot SWEEP_DIR``: write the figures of a sweep and print their paths; returns the
    exit status (2 for a bad table or argument)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.reps < 1:
        parser.error("--reps must be >= 1")
    try:
        ctx = make_plots(args.sweep_dir, out=args.out, metrics=args.metrics, exact=not args.no_exact,
                         gifs=not args.no_gif, reps=args.reps, seed=args.seed, max_states=args.max_states,
                         max_gifs=args.max_gifs)
    except PlotError as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    for note in ctx.notes:
        print(f"note: {note}", file=sys.stderr)
    for path in ctx.written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
