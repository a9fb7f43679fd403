"""One job of ``python -m experiments.train``: its threads, its exact-table cache, training the
plan (:func:`execute`) and writing its record, skipping a run already complete (:func:`run_job`)."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from agents.io import file_lock
from experiments import results

log = logging.getLogger(__name__)

from experiments.config import RunPlan, _container, plan_run

#: Environment variables that size thread pools, set for the job processes of parallel launchers.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


# =============================================================================================
# Threads
# =============================================================================================

def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def threads_per_job(threads: int | None, launcher: Any, cores: int | None = None) -> int | None:
    """Threads each job may use: ``threads`` if set, else the cores divided by the launcher's
    parallel jobs (joblib ``n_jobs``; submitit/Slurm ``cpus_per_task`` or 1; Ray ``num_cpus``
    or 1). None for the sequential launcher (jobs run one at a time in this process)."""
    if threads:
        return int(threads)
    cores = available_cores() if cores is None else cores
    launcher = _container(launcher) or {}
    target = str(launcher.get("_target_", ""))
    if "joblib" in target:
        n = launcher.get("n_jobs")
        n = cores if n is None else int(n)
        if n < 0:
            n = max(1, cores + 1 + n)
        return max(1, cores // max(1, n))
    if "submitit" in target:
        return int(launcher.get("cpus_per_task") or 1)
    if "ray" in target:
        remote = (launcher.get("ray") or {}).get("remote") or {}
        return int(remote.get("num_cpus") or 1)
    return None


def _limit_threads(n: int | None) -> None:
    """Cap this process's numba and torch thread pools at ``n`` threads."""
    if not n:
        return
    try:
        import numba

        numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
    except Exception:  # pragma: no cover
        pass
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


# =============================================================================================
# Running one job
# =============================================================================================

def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("stopbutton")
    except Exception:  # pragma: no cover - not installed
        return "unknown"


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for mod in ("numpy", "numba", "torch", "stable_baselines3", "hydra", "omegaconf"):
        m = sys.modules.get(mod)
        if m is not None:
            out[mod] = getattr(m, "__version__", "?")
    return out


def _train(plan: RunPlan, agent_params: dict, progress: bool, exact_cache=None):
    """``agents.train`` with the plan's settings."""
    import agents

    kwargs = dict(eval_every=plan.eval_every, eval_episodes=plan.eval_episodes, progress=progress,
                  eval_mode=plan.eval_mode, exact_cache=exact_cache)
    return agents.train(plan.level, plan.agent, plan.objective, plan.total_steps, plan.seed, **kwargs,
                        eval_level=plan.eval_level, **agent_params)


def execute(plan: RunPlan, out_dir: Path, cfg) -> dict:
    """Train the plan's run and return its record (not yet written)."""
    import shutil

    agent_params = dict(plan.agent_params)
    ckpt = None
    if cfg.get("tensorboard", True) and "log_dir" in agent_params and agent_params["log_dir"] is None:
        agent_params["log_dir"] = str(out_dir / "tb" / plan.run_id)
    if cfg.get("checkpoint", True) and "checkpoint_dir" in agent_params and agent_params["checkpoint_dir"] is None:
        ckpt = out_dir / "checkpoints" / plan.run_id
        agent_params["checkpoint_dir"] = str(ckpt)
    cache = out_dir / "cache" / "exact" if cfg.get("exact_cache", True) else None
    started = time.time()
    t0 = time.perf_counter()
    run = _train(plan, agent_params, bool(cfg.get("progress", False)), cache)
    duration = time.perf_counter() - t0
    run_path = None
    if cfg.get("save_policy", True) and run.policy is not None:
        p = results.policy_path(out_dir, plan.run_id)
        run.save(p)
        run_path = str(p.relative_to(out_dir))
    extra = {k: v for k, v in (run.extra or {}).items()
             if v is None or isinstance(v, (bool, int, float, str))}
    record = {
        "format": results.FORMAT, "run_id": plan.run_id, "identity": plan.identity, "config": plan.config,
        "overrides": _job_overrides(),
        "level": plan.level_name, "eval_level": plan.eval_level.name if plan.eval_level is not None else plan.level_name,
        "agent": plan.agent, "objective": plan.objective_label, "objective_target": plan.objective_target,
        "objective_params": plan.objective_params, "ignored_objective_params": plan.ignored_objective_params,
        "agent_params": results.jsonable({k: v for k, v in agent_params.items()}),
        "agent_defaults": results.jsonable(plan.agent_defaults),
        "level_params": plan.level_params, "level_defaults": plan.level_defaults,
        "seed": plan.seed, "total_steps": plan.total_steps, "eval_every": plan.eval_every,
        "eval_episodes": plan.eval_episodes,
        "version": _package_version(), "versions": _versions(), "host": platform.node(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": duration, "extra": extra, "history": results.jsonable(run.history), "run_path": run_path,
    }
    if ckpt is not None and ckpt.exists():
        shutil.rmtree(ckpt, ignore_errors=True)
        with contextlib.suppress(OSError):
            ckpt.parent.rmdir()  # only if no other run's checkpoints are there
    return record


def _run_lock(out_dir: Path, run_id: str):
    """Whether this process holds ``runs/.<run_id>.lock`` (non-blocking; released, by the kernel
    too, when the process ends): two jobs of one run never train it together."""
    return file_lock(out_dir / results.RUNS_DIR / f".{run_id}.lock", blocking=False)


def _job_overrides() -> list:
    try:
        return list(HydraConfig.get().overrides.task)
    except Exception:
        return []


def _output_dir() -> tuple[Path, bool]:
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    return (Path(hc.sweep.dir) if multirun else Path(hc.runtime.output_dir)).absolute(), multirun


def run_job(cfg: DictConfig) -> dict:
    """One job: plan, skip if complete, train, write the record. In a multirun a failure is
    recorded (``runs/<run_id>.error.txt``) and returned, not raised, so the sweep goes on."""
    out_dir, multirun = _output_dir()
    try:
        launcher = HydraConfig.get().launcher
    except Exception:
        launcher = {}
    _limit_threads(threads_per_job(cfg.get("threads"), launcher if multirun else {}))
    try:
        plan = plan_run(cfg, sweep=multirun)
    except Exception as e:
        if not multirun:
            raise
        log.error("configuration error: %s", e)
        return {"status": "failed", "run_id": None, "error": f"{type(e).__name__}: {e}"}
    with _run_lock(out_dir, plan.run_id) as mine:
        if not mine:  # the same run in another job of this sweep (or another sweep): let it be
            log.info("skip %s: running in another job", plan.run_id)
            return {"status": "duplicate", "run_id": plan.run_id}
        if results.is_complete(out_dir, plan.run_id):
            log.info("skip %s: already complete", plan.run_id)
            return {"status": "skipped", "run_id": plan.run_id}
        log.info("run %s", plan.run_id)
        try:
            record = execute(plan, out_dir, cfg)
            results.write_record(out_dir, record)
        except Exception:
            text = traceback.format_exc()
            results.write_error(out_dir, plan.run_id, text)
            if not multirun:
                raise
            log.error("run %s failed:\n%s", plan.run_id, text)
            return {"status": "failed", "run_id": plan.run_id, "error": text}
    last = record["history"][-1] if record["history"] else {}
    shown = {k: last.get(k) for k in ("env_steps", "task_return", "delivered", "compliance", "resistance", "harm",
                                      "neutrality", "usefulness") if k in last}
    log.info("done %s: %s", plan.run_id, ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else
                                                    f"{k}={'nan' if v is None else v}" for k, v in shown.items()))
    if not multirun:
        paths, rows = results.write_table(out_dir)
        print(f"run {plan.run_id} done: {out_dir}\ntable: {', '.join(map(str, paths))} ({rows} rows)")
    return {"status": "done", "run_id": plan.run_id}
