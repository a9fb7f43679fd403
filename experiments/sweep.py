"""A sweep of ``python -m experiments.train -m``: checks before the jobs start, warming numba's
caches, and the summary after (:class:`SweepCallback`, a Hydra callback run in the launching
process)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from experiments import results

log = logging.getLogger(__name__)

from experiments.config import ConfigError, RunPlan, _report_config_error, plan_run
from experiments.jobs import THREAD_VARS, threads_per_job

# =============================================================================================
# The sweep: checks before, summary after (Hydra callbacks, in the launching process)
# =============================================================================================

def _sweep_jobs(config: DictConfig) -> list[list[str]] | None:
    """The override lists of every job of a multirun, as the basic sweeper (or our union of grids,
    :mod:`experiments.sweeper`) expands them (None for another sweeper)."""
    from experiments.sweeper import union_jobs

    target = str(OmegaConf.select(config, "hydra.sweeper._target_", default=""))
    if target and not target.endswith(("BasicSweeper", "UnionSweeper")):
        return None
    params = OmegaConf.select(config, "hydra.sweeper.params", default=None)
    params = OmegaConf.to_container(params, resolve=False) if params is not None else {}
    grids = OmegaConf.select(config, "hydra.sweeper.grids", default=None)
    grids = OmegaConf.to_container(grids, resolve=False) if grids is not None else None
    arguments = list(OmegaConf.to_container(config.hydra.overrides.task, resolve=False))
    return union_jobs(params, grids, arguments, dedupe=target.endswith("UnionSweeper"))


class SweepCallback(Callback):
    """Before a multirun's jobs start (in the launching process): compose and check every job's
    config (an impossible value stops the sweep before any run, exit status 2), note the runs
    already complete, warm numba's caches and size the job processes' thread pools. After:
    the summary (done, skipped, failed with errors) and the tidy table. Exit status 1 when a
    run failed."""

    def __init__(self) -> None:
        self.plans: list[tuple[list[str], RunPlan]] = []
        self.complete_before: set[str] = set()
        self.sweep_dir: Path | None = None
        self.saved_env: dict[str, str | None] = {}
        self.started = 0.0
        self.tracked = True  # whether the jobs are known (the basic sweeper)

    def __getstate__(self):  # launchers pickle the callbacks for their jobs: ship nothing
        return {}

    def __setstate__(self, state):
        self.__init__()

    # -- before ------------------------------------------------------------------------------
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        """A single run: the same checks, before Hydra creates its output directory."""
        try:
            plan_run(config)
        except ConfigError as e:
            print(f"configuration error (nothing was run):\n  {e}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.perf_counter()
        self.sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()  # resolves (and caches) the unique suffix
        try:
            self._check(config)
        except SystemExit:
            raise
        except Exception as e:  # composing a job failed: report it like a config error
            _report_config_error(e)
            raise SystemExit(2) from None
        todo = [p for _, p in self.plans if p.run_id not in self.complete_before]
        unique = {p.run_id for _, p in self.plans}
        jobs = f" ({len(self.plans)} jobs)" if len(self.plans) != len(unique) else ""
        print(f"sweep {self.sweep_dir}: {len(unique)} runs{jobs}, {len(self.complete_before & unique)} already "
              f"complete, {len({p.run_id for p in todo})} to run", flush=True)
        results.remove_stale_temporaries(self.sweep_dir / results.RUNS_DIR)
        threads = threads_per_job(OmegaConf.select(config, "threads"), config.hydra.launcher)
        if todo and threads is not None and OmegaConf.select(config, "warmup", default=True):
            _warm_up(todo)
        if threads is not None:
            for var in THREAD_VARS:
                self.saved_env[var] = os.environ.get(var)
                os.environ.setdefault(var, str(threads))

    def _check(self, config: DictConfig) -> None:
        from hydra.core.global_hydra import GlobalHydra

        jobs = _sweep_jobs(config)
        if jobs is None:  # another sweeper: no checks up front, no per-run summary
            self.tracked = False
            return
        loader = GlobalHydra.instance().config_loader()
        errors: dict[str, list[str]] = {}
        notes: set[str] = set()
        for overrides in jobs:
            job_cfg = loader.load_sweep_config(master_config=config, sweep_overrides=list(overrides))
            try:
                plan = plan_run(job_cfg, sweep=True)
            except ConfigError as e:
                errors.setdefault(str(e), []).append(" ".join(overrides))
                continue
            for k in plan.ignored_objective_params:
                notes.add(f"objective.{k} does not apply to {plan.objective_label!r}: its runs leave it out "
                          "(one run per distinct config)")
            self.plans.append((list(overrides), plan))
        if errors:
            lines = [f"configuration error ({sum(map(len, errors.values()))} of {len(jobs)} jobs; nothing was run):"]
            for msg, where in errors.items():
                lines.append(f"  {msg}")
                lines.append(f"    in: {where[0]}" + (f" (and {len(where) - 1} more)" if len(where) > 1 else ""))
            print("\n".join(lines), file=sys.stderr, flush=True)
            raise SystemExit(2)
        for note in sorted(notes):
            print(f"note: {note}", flush=True)
        for _, plan in self.plans:
            if results.is_complete(self.sweep_dir, plan.run_id):
                self.complete_before.add(plan.run_id)

    # -- after -------------------------------------------------------------------------------
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        for var, value in self.saved_env.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
        sweep_dir = self.sweep_dir or Path(str(config.hydra.sweep.dir)).absolute()
        summary = results.Summary(sweep_dir)
        seen = set()
        for overrides, plan in self.plans:
            if plan.run_id in seen:
                summary.duplicates.append(" ".join(overrides))
                continue
            seen.add(plan.run_id)
            if plan.run_id in self.complete_before:
                summary.skipped.append(plan.run_id)
            elif results.is_complete(sweep_dir, plan.run_id):
                summary.done.append(plan.run_id)
            else:
                summary.failed.append((plan.run_id, " ".join(overrides), results.read_error(sweep_dir, plan.run_id)))
        summary.table, summary.rows = results.write_table(sweep_dir)
        text = summary.text() if self.tracked else (
            f"sweep {sweep_dir}: {summary.rows} rows in the table (this sweeper's runs are not tracked one by one)\n"
            f"table: {', '.join(map(str, summary.table))}")
        print(text + f"\nwall time {time.perf_counter() - self.started:.1f} s", flush=True)
        with contextlib.suppress(OSError):
            results.atomic_write_text(sweep_dir / "summary.txt", text + "\n")
        if summary.failed:
            raise SystemExit(1)


def _warm_up(plans: list[RunPlan]) -> None:
    """Compile (or load) numba's caches once, here, before parallel jobs start: a tiny run of
    each agent under each kind of objective (plain rewards, online values, exact tables)."""
    import warnings

    import agents
    from agents.learners.rewards import value_sources

    tiny = {"ppo": dict(num_envs=4, num_steps=8, minibatches=1, epochs=1),
            "sb3_ppo": dict(num_envs=2, n_steps=16, batch_size=32, n_epochs=1),
            "sb3_dqn": dict(num_envs=2, learning_starts=0, batch_size=8, train_freq=1, buffer_size=1000),
            "q_learning": dict(num_envs=4), "sarsa": dict(num_envs=4)}
    seen = set()
    t0 = time.perf_counter()
    for plan in plans:
        try:
            online, exact = value_sources(plan.objective, plan.agent_params.get("objective_values") or "exact")
        except ValueError:  # the job reports it
            continue
        mode = "exact" if exact else ("online" if online else "plain")
        if (plan.agent, mode) in seen:
            continue
        seen.add((plan.agent, mode))
        params = {k: v for k, v in plan.agent_params.items() if k not in ("log_dir", "checkpoint_dir")}
        params.update(tiny.get(plan.agent, {}))
        level = "shutdown_delay" if "meta_counts" in online else "survival"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                agents.train(level, plan.agent, plan.objective, total_steps=64, seed=0, eval_every=64,
                             eval_episodes=4, **params)
        except Exception as e:  # the jobs will report real errors
            log.warning("warm-up of %s (%s objective) failed: %s", plan.agent, mode, e)
    print(f"numba caches warm ({len(seen)} agent x objective kinds, {time.perf_counter() - t0:.1f} s)", flush=True)


