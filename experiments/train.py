"""Train agents from the command line and sweep anything: a Hydra app over :func:`agents.train`.

    python -m experiments.train                                   # one run: q_learning, task, off_switch
    python -m experiments.train level=survival agent=sarsa objective=aup objective.lam=0.1 seed=3
    python -m experiments.train -m objective=task,utility_indifference,aup seed='range(5)' objective.lam=0.01,0.1,1
    python -m experiments.train experiment=default                # a preset sweep (see below)
    python -m experiments.train experiment=default seed='range(10)' hydra.launcher.n_jobs=4 hydra.sweep.dir=DIR
    python -m experiments.train --help                            # groups, options and every setting
    python -m experiments.train agent=ppo --cfg job               # the resolved config, nothing run

Config groups (``conf/``): ``level`` (every registered level; ``level.params.<name>=value`` sets
a level parameter), ``agent`` (``ppo``, ``sb3_ppo``, ``sb3_dqn``, ``q_learning``, ``sarsa``; the
fields of each learner's ``Config``), ``objective`` (``conf/objective/*.yaml``: ``task``,
``utility_indifference``, ``aup``, ``relative_reachability``, ``harm_penalty``, ``drest``),
``experiment`` (presets, below) and ``hydra/launcher`` (``basic``, sequential in this process;
``joblib``, parallel local processes; ``submitit_local`` and ``submitit_slurm`` or ``slurm``,
Slurm through submitit; ``ray`` needs ``pip install hydra-ray-launcher``). Top-level settings
are :class:`TrainConfig`'s fields.

``-m`` (multirun) goes before the overrides (Hydra's command line); the presets are multiruns
without it. Exit status: 0 done, 1 a run failed, 2 a configuration error (nothing was run).

Every setting is typed (structured configs: :class:`TrainConfig`, a dataclass per learner built
from its ``Config``, :class:`LevelConf`): a misspelt key, an unknown option or a value of the
wrong type fails while the config is composed, naming the key and what exists; values Hydra
cannot check (an objective's range, a learner's ``validate``) are checked for every job of a
sweep before the first one starts. The objective node is open (its keys are the
objective class's parameters, checked with the list of what exists before any run); in a sweep,
a parameter that only some of the swept objectives have applies to those
(``objective=task,aup objective.lam=0.1,1``: one ``task`` run, two ``aup`` runs per seed). A
user's objective joins with ``objective._target_=my_module.MyObjective`` (its parameters with
``objective.<name>=value``).

Presets (``experiment=<name>``; each one command, a multirun into ``multirun/<name>/<time>_<id>``
unless ``hydra.sweep.dir`` says where):

``default``
    the main job: ``task``, ``utility_indifference``, ``aup``, ``relative_reachability`` and
    ``harm_penalty`` on ``off_switch``, ``survival`` and ``coffee_hazards``, tabular
    Q-learning, 3 seeds (45 runs), parallel over the cores (joblib).
``safe_interruptibility``
    Orseau and Armstrong: Q-learning and SARSA maximise the task return on
    ``safe_interruptibility``; SARSA learns to press the button B that disables the
    interruption (``tampering``), Q-learning does not. 5 seeds.
``drest``
    PPO under DReST and under the task reward, trained on ``procedural_delay`` and evaluated
    on the held-out layouts of ``procedural_delay_test`` (``eval_level``), evaluated by
    sampling from the policy (``eval_mode=sample``: a greedy policy picks one trajectory
    length per layout, so its neutrality would be 0 by construction). 3 seeds.
``penalty_sweep``
    AUP's penalty weight ``objective.lam`` from 0 to 10 on ``off_switch`` and ``survival``:
    compliance and delivery against lambda. 3 seeds.

Results (:mod:`experiments.results`): each run writes ``SWEEP_DIR/runs/<run_id>.json`` (resolved
config, seed, package version, evaluation series) atomically, and the sweep assembles
``SWEEP_DIR/results.parquet`` and ``results.csv`` (one row per run x evaluation), which
``python -m experiments.plot SWEEP_DIR`` reads. Run again in the same ``hydra.sweep.dir``, a
sweep skips the runs already complete and redoes the rest; it ends with a summary of the runs
done, skipped and failed (a failing run does not stop the others; the exit status is 1 when
one failed).

Exact tables: ``utility_indifference``, ``aup`` and ``relative_reachability`` train on values
of the exact solver, a table over every transition of the level (coffee_hazards: 2.5M rows,
one to two minutes and several GB to build). With ``exact_cache=true`` (default) the table is
built once per (level, objective) and sweep directory, under ``cache/exact/``, and read by the
other runs (:func:`exact_table_cache`).

Parallel jobs: the parent compiles numba's caches once (a tiny run per agent) before the jobs
start, and each job gets ``threads`` threads (default: the cores divided by the parallel jobs
of the launcher; 1 per Slurm/submitit task unless ``cpus_per_task`` says more): torch's and
numba's thread pools and ``OMP_NUM_THREADS`` of the job processes. GNU OpenMP (numba's threading
layer) is not fork-safe: the joblib launcher uses loky, which starts fresh interpreters (no
bare fork), as do submitit and Ray.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import logging
import os
import platform
import sys
import time
import traceback
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from experiments import results

log = logging.getLogger(__name__)

#: Learner parameters that do not change a run's result (left out of its identity).
NON_IDENTITY_AGENT_PARAMS = frozenset({"log_dir", "log_formats", "checkpoint_dir", "checkpoint_every",
                                       "torch_threads"})
#: Environment variables that size thread pools, set for the job processes of parallel launchers.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


class ConfigError(ValueError):
    """A setting is impossible (raised before any run starts)."""


# =============================================================================================
# Structured configs
# =============================================================================================

def _omegaconf_type(tp, optional: bool = False):
    """An annotation OmegaConf can check (``X | None`` -> ``Optional[X]``, tuples -> lists,
    mappings -> ``Dict``); ``Any`` for what it cannot."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _omegaconf_type(inner[0], optional=True)
        return Any
    if tp in (int, float, bool, str):
        return Optional[tp] if optional else tp
    if origin in (tuple, list) or tp in (tuple, list):
        item = args[0] if args and args[0] is not Ellipsis else Any
        item = item if item in (int, float, bool, str) else Any
        return Optional[List[item]] if optional else List[item]
    if origin in (dict, typing.Mapping) or (origin is not None and getattr(origin, "__name__", "") == "Mapping"):
        val = args[1] if len(args) == 2 and args[1] in (int, float, bool, str) else Any
        return Optional[Dict[str, val]] if optional else Dict[str, val]
    return Any


def _level_params_schema():
    """``LevelParamsConf``: every :class:`envs.LevelParams` field (and alias), optional; None
    keeps the level's own value."""
    from envs.core.level import PARAM_ALIASES, LevelParams

    hints = typing.get_type_hints(LevelParams)
    fields = []
    for f in dataclasses.fields(LevelParams):
        fields.append((f.name, _omegaconf_type(hints[f.name], optional=True), field(default=None)))
    for alias, target in PARAM_ALIASES.items():
        fields.append((alias, _omegaconf_type(hints[target], optional=True), field(default=None)))
    return dataclasses.make_dataclass("LevelParamsConf", fields)


LevelParamsConf = _level_params_schema()


@dataclass
class LevelConf:
    """``level``: a registered level and the parameters to change (``level.params.max_steps=40``)."""

    name: str = MISSING
    params: LevelParamsConf = field(default_factory=LevelParamsConf)  # type: ignore[valid-type]


def _learner_configs() -> dict[str, type]:
    """Agent name -> the learner's config dataclass (learners that fail to import are left out,
    with a warning)."""
    from agents.learners import LEARNERS

    out = {}
    for agent, module_name in LEARNERS.items():
        try:
            module = importlib.import_module(module_name)
        except Exception as e:  # pragma: no cover - a broken learner must not break the others
            import warnings

            warnings.warn(f"agent {agent!r} is unavailable: importing {module_name} failed ({type(e).__name__}: {e})")
            continue
        configs = getattr(module, "configs", None)
        out[agent] = configs[agent] if isinstance(configs, dict) and agent in configs else module.Config
    return out


def agent_schema(agent: str, cls: type) -> type:
    """A structured config for agent ``agent``: ``name`` plus every field of the learner's
    config dataclass ``cls``, with its type and default."""
    hints = typing.get_type_hints(cls)
    fields = [("name", str, field(default=agent))]
    for f in dataclasses.fields(cls):
        if not f.init or f.name == "name":
            continue
        tp = _omegaconf_type(hints.get(f.name, Any))
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = MISSING
        if isinstance(default, (tuple, list)):
            fields.append((f.name, tp, field(default_factory=lambda d=tuple(default): list(d))))
        elif isinstance(default, dict):
            fields.append((f.name, tp, field(default_factory=lambda d=dict(default): dict(d))))
        else:
            fields.append((f.name, tp, field(default=default)))
    title = "".join(p.capitalize() for p in agent.split("_"))
    return dataclasses.make_dataclass(f"{title}AgentConf", fields)


@dataclass
class TrainConfig:
    """The top-level settings of ``python -m experiments.train`` (besides the groups)."""

    level: LevelConf = field(default_factory=LevelConf)
    agent: Any = MISSING
    objective: Any = MISSING
    #: Evaluate on this registered level instead of ``level`` (same grid size; ``level.params``
    #: apply to it as well), e.g. a held-out pool.
    eval_level: Optional[str] = None
    #: Env steps of training.
    total_steps: int = 300_000
    seed: int = 0
    #: Env steps between evaluations (None: 10 evaluations per run).
    eval_every: Optional[int] = None
    #: Evaluation episodes per evaluation.
    eval_episodes: int = 256
    #: "greedy" (the policy's argmax) or "sample" (draw from the policy: DReST's neutrality is a
    #: property of a stochastic policy).
    eval_mode: str = "greedy"
    #: Threads per job (torch, numba, OpenMP). None: the cores divided by the launcher's
    #: parallel jobs (all of them for the sequential launcher).
    threads: Optional[int] = None
    #: Save the trained run as runs/<run_id>.pkl (agents.load reads it; the plots draw episodes).
    save_policy: bool = True
    #: Give learners that log (sb3_*: ``log_dir``) the directory tb/<run_id> of the sweep.
    tensorboard: bool = True
    #: Give learners that checkpoint (ppo: ``checkpoint_dir``) checkpoints/<run_id>: a killed run
    #: resumes from its last checkpoint; removed once the run is complete.
    checkpoint: bool = True
    #: Keep exact objective tables (utility_indifference, aup, relative_reachability) on disk
    #: under cache/exact/ of the sweep, built once per level and objective.
    exact_cache: bool = True
    #: Compile numba's caches in the parent before a parallel sweep's jobs start.
    warmup: bool = True
    #: Show a progress bar per run.
    progress: bool = False
    #: Modules imported first (each job, and the checks): register your own levels or objectives.
    imports: List[str] = field(default_factory=list)


def _register_configs() -> dict[str, type]:
    cs = ConfigStore.instance()
    schema = OmegaConf.structured(TrainConfig)
    # The objective node stays open: an objective's parameters are its class's, checked by
    # get_objective before any run (with the list of what exists); a sweep may set a parameter
    # that only some of its objectives have (objective=task,aup objective.lam=0.1,1).
    schema.objective = OmegaConf.create({}, flags={"struct": False})
    cs.store(name="train_schema", node=schema)
    schemas = {}
    for agent, cls in _learner_configs().items():
        schemas[agent] = agent_schema(agent, cls)
        cs.store(group="agent", name=agent, node=schemas[agent])
    return schemas


AGENT_SCHEMAS = _register_configs()


def _unique_suffix() -> str:
    """Six random hex digits: two sweeps started in the same second get different directories.
    Resolved once per sweep (Hydra copies the resolver cache into every job's config)."""
    import secrets

    return secrets.token_hex(3)


if not OmegaConf.has_resolver("sb_uid"):
    OmegaConf.register_new_resolver("sb_uid", _unique_suffix, use_cache=True)


# =============================================================================================
# A run's plan: every setting resolved and checked
# =============================================================================================

@dataclass
class RunPlan:
    """What one job will run, resolved from its config (see :func:`plan_run`)."""

    run_id: str
    identity: dict
    level: Any  # envs.Level, params applied
    level_name: str
    level_params: dict  # every parameter of the resolved level
    level_defaults: dict  # the registered level's parameters
    eval_level: Any  # envs.Level or None
    agent: str
    agent_params: dict  # every field of the learner's config
    agent_defaults: dict
    objective: Any  # agents.objectives.Objective
    objective_label: str
    objective_target: str
    objective_params: dict
    ignored_objective_params: dict  # set by a sweep, not parameters of this objective
    total_steps: int
    seed: int
    eval_every: int
    eval_episodes: int
    config: dict  # the job's resolved config (without hydra)
    eval_mode: str = "greedy"


def _import_modules(names) -> None:
    for name in names or ():
        try:
            importlib.import_module(name)
        except Exception as e:
            raise ConfigError(f"imports: cannot import {name!r} ({type(e).__name__}: {e})") from None


def _whole(name, value, low):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be a whole number >= {low}, got {value!r}")
    return int(value)


def _accepted_params(cls) -> set[str] | None:
    """The parameter names an objective class takes (None: any)."""
    import inspect

    from agents.objectives.base import _dataclass_init

    if _dataclass_init(cls):
        return set(cls.parameters())
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return {k for k, p in sig.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _objective_of(node: dict, lenient: bool = False):
    """(instance, label, target, ignored) from an objective config mapping (``name``,
    ``_target_`` and parameters). A ``_target_`` other than the registered class of ``name``
    is a user's class, built with the remaining keys. With ``lenient`` (a sweep), a parameter
    this objective lacks but another registered objective has (``lam`` for ``task`` in
    ``objective=task,aup objective.lam=0.1,1``) is left out and returned in ``ignored``; any
    other unknown parameter fails, listing the objective's parameters."""
    from agents.objectives import OBJECTIVES, get_objective

    node = dict(node)
    name = node.pop("name", None)
    target = node.pop("_target_", None)
    registered = OBJECTIVES.get(name) if isinstance(name, str) else None
    reg_target = f"{registered.__module__}.{registered.__qualname__}" if registered is not None else None
    if target is not None and target != reg_target:
        try:
            cls = hydra.utils.get_class(target)
        except Exception as e:
            raise ConfigError(f"objective._target_: cannot import {target!r} ({e})") from None
    else:
        if name is None:
            raise ConfigError(f"objective: needs a name (one of {sorted(OBJECTIVES)}) or a _target_ class")
        if registered is None:
            raise ConfigError(f"objective.name: unknown objective {name!r}; registered objectives are "
                              f"{sorted(OBJECTIVES)} (a class of your own: objective._target_=module.Class)")
        cls = registered
    ignored = {}
    accepted = _accepted_params(cls)
    if lenient and accepted is not None:
        others = {k for c in OBJECTIVES.values() if c is not cls for k in (_accepted_params(c) or ())}
        for k in list(node):
            if k not in accepted and k in others:
                ignored[k] = node.pop(k)
    obj = get_objective(cls, **node)
    cls = type(obj)
    return obj, cls.label(), f"{cls.__module__}.{cls.__qualname__}", ignored


def _container(node) -> Any:
    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=True)
    return node


def plan_run(cfg, sweep: bool = False) -> RunPlan:
    """Resolve and check one job's config; raise :class:`ConfigError` naming the setting.
    ``sweep``: the job is part of a multirun (an objective parameter that belongs to another
    objective of the sweep is then ignored, not an error)."""
    from agents.learners import config_from, learner_module
    from envs.core.level import compile_level
    from envs.levels import get_level

    c = {k: _container(cfg[k]) for k in cfg.keys() if k != "hydra"}
    _import_modules(c.get("imports"))
    # -- level --------------------------------------------------------------------------------
    lvl_cfg = c.get("level") or {}
    name = lvl_cfg.get("name")
    try:
        base = get_level(name)
    except KeyError as e:
        raise ConfigError(f"level.name: {e.args[0]}") from None
    overrides = {k: v for k, v in (lvl_cfg.get("params") or {}).items() if v is not None}
    try:
        level = base.with_params(**overrides) if overrides else base
    except Exception as e:
        raise ConfigError(f"level.params: {e}") from None
    eval_level = None
    if c.get("eval_level") is not None:
        try:
            eval_base = get_level(c["eval_level"])
        except KeyError as e:
            raise ConfigError(f"eval_level: {e.args[0]}") from None
        try:
            eval_level = eval_base.with_params(**overrides) if overrides else eval_base
        except Exception as e:
            raise ConfigError(f"eval_level {eval_base.name!r} with level.params: {e}") from None
        a, b = compile_level(level), compile_level(eval_level)
        if (a.height, a.width) != (b.height, b.width):
            raise ConfigError(f"eval_level {eval_base.name!r} is {b.height} x {b.width} but level {name!r} is "
                              f"{a.height} x {a.width}: a policy is evaluated on levels of its own grid size")
    # -- agent --------------------------------------------------------------------------------
    agent_cfg = dict(c.get("agent") or {})
    agent = agent_cfg.pop("name", None)
    try:
        module = learner_module(agent)
    except KeyError as e:
        raise ConfigError(f"agent.name: {e.args[0]}") from None
    cls = module.configs[agent] if isinstance(getattr(module, "configs", None), dict) else module.Config
    try:
        agent_obj = config_from(cls, agent_cfg, f"agent {agent!r}")
    except (TypeError, ValueError) as e:
        raise ConfigError(f"agent: {e}") from None
    agent_params = {f.name: getattr(agent_obj, f.name) for f in dataclasses.fields(agent_obj)}
    agent_defaults = {f.name: getattr(cls(), f.name) for f in dataclasses.fields(cls)}
    # -- objective ----------------------------------------------------------------------------
    try:
        objective, label, target, ignored = _objective_of(c.get("objective") or {}, lenient=sweep)
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"objective: {e.args[0] if isinstance(e, KeyError) and e.args else e}") from None
    # -- budget -------------------------------------------------------------------------------
    total_steps = _whole("total_steps", c.get("total_steps"), 1)
    seed = _whole("seed", c.get("seed"), 0)
    eval_episodes = _whole("eval_episodes", c.get("eval_episodes"), 1)
    eval_every = c.get("eval_every")
    eval_every = max(1, total_steps // 10) if eval_every is None else _whole("eval_every", eval_every, 1)
    if c.get("threads") is not None:
        _whole("threads", c["threads"], 1)
    eval_mode = c.get("eval_mode", "greedy")
    if eval_mode not in ("greedy", "sample"):
        raise ConfigError(f"eval_mode: must be 'greedy' or 'sample', got {eval_mode!r}")

    level_params = results.jsonable(dataclasses.asdict(level.params))
    maps = hashlib.sha256(("\n\n".join(level.maps) + repr(sorted(level.legend.items()))).encode()).hexdigest()
    identity = {
        "level": name, "level_params": level_params, "level_maps": maps[:16],
        "eval_level": None if eval_level is None else eval_level.name,
        "agent": agent,
        "agent_params": {k: v for k, v in agent_params.items() if k not in NON_IDENTITY_AGENT_PARAMS},
        "objective": {"label": label, "class": target, "params": objective.params()},
        "seed": seed, "total_steps": total_steps, "eval_every": eval_every, "eval_episodes": eval_episodes,
    }
    if eval_mode != "greedy":  # (greedy runs keep the run ids they had)
        identity["eval_mode"] = eval_mode
    if eval_level is not None:
        emaps = hashlib.sha256("\n\n".join(eval_level.maps).encode()).hexdigest()
        identity["eval_level_maps"] = emaps[:16]
    identity = results.jsonable(identity)
    return RunPlan(
        run_id=results.make_run_id(identity), identity=identity, level=level, level_name=name,
        level_params=level_params, level_defaults=results.jsonable(dataclasses.asdict(base.params)),
        eval_level=eval_level, agent=agent, agent_params=agent_params, agent_defaults=agent_defaults,
        objective=objective, objective_label=label, objective_target=target,
        objective_params=results.jsonable(objective.params()), ignored_objective_params=results.jsonable(ignored),
        total_steps=total_steps, seed=seed,
        eval_every=eval_every, eval_episodes=eval_episodes, config=results.jsonable(c), eval_mode=eval_mode)


# =============================================================================================
# Threads
# =============================================================================================

def available_cores() -> int:
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
# Exact tables on disk
# =============================================================================================

def _source_digest() -> str:
    """Digest of the code that computes exact objective tables (a cache entry of older code is
    not reused)."""
    import agents.exact
    import agents.learners.rewards as rewards
    import agents.objectives

    h = hashlib.sha256()
    files = [Path(rewards.__file__)]
    for pkg in (agents.exact, agents.objectives):
        files += sorted(Path(pkg.__file__).parent.glob("*.py"))
    for p in files:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def _file_lock(path: Path):
    """An exclusive lock on ``path`` (released by the kernel if the process dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock, at worst a table is built twice
        yield
        return
    with open(path, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _compact(a):
    """An integer array in the smallest integer dtype that holds its values."""
    import numpy as np

    if a.dtype.kind not in "iu":
        return a
    for dt in (np.int8, np.int16, np.int32):
        info = np.iinfo(dt)
        if a.size == 0 or (a.min() >= info.min and a.max() <= info.max):
            return a.astype(dt)
    return a


@contextlib.contextmanager
def exact_table_cache(cache_dir: Path | None):
    """While active, the exact objective tables that learners build
    (``agents.learners.rewards._ExactTable``, for objectives whose values only the exact
    solver gives) are read from ``cache_dir`` when present and written there when built: one
    ``.npz`` per (level, objective, max_states, digest of the code that builds them), built
    by one process at a time (a file lock; the others wait, then read it). Only the table's
    arrays are stored; its graph comes from :func:`agents.exact.solver.graph_of` (cached per
    level in the process). A table with attributes other than arrays and ``graph`` is not
    cached (built as usual)."""
    if cache_dir is None:
        yield
        return
    import numpy as np

    from agents.learners import rewards

    original = getattr(rewards, "_ExactTable", None)
    if original is None:  # pragma: no cover - the learners changed: no cache, same results
        yield
        return
    digest = _source_digest()

    class CachedExactTable(original):
        def __init__(self, level, objective, max_states):
            from agents.exact.solver import graph_of

            key = hashlib.sha256(repr((repr(level), type(objective).__module__, type(objective).__qualname__,
                                       repr(objective), int(max_states), digest, "npz-v2")).encode()).hexdigest()[:24]
            path = Path(cache_dir) / f"{level.name}-{type(objective).__name__}-{key}.npz"
            with _file_lock(path.with_suffix(".lock")):
                if path.exists():
                    try:
                        with np.load(path, allow_pickle=False) as z:
                            names = [str(n) for n in z["__names__"]]
                            dtypes = [str(d) for d in z["__dtypes__"]]
                            arrays = {n: z[n].astype(d, copy=False) for n, d in zip(names, dtypes)}
                        self.graph = graph_of(level, max_states)
                        for n, a in arrays.items():
                            setattr(self, n, a)
                        return
                    except Exception as e:  # unreadable: build it again
                        log.warning("exact cache %s unreadable (%s); rebuilding", path, e)
                super().__init__(level, objective, max_states)
                arrays = {k: v for k, v in vars(self).items() if k != "graph"}
                if all(isinstance(v, np.ndarray) and not k.startswith("__") for k, v in arrays.items()):
                    results.atomic_write_with(path, lambda tmp: _savez(tmp, arrays))

    def _savez(tmp, arrays):
        names = sorted(arrays)
        with open(tmp, "wb") as f:
            np.savez(f, __names__=np.array(names), __dtypes__=np.array([str(arrays[n].dtype) for n in names]),
                     **{n: _compact(arrays[n]) for n in names})

    rewards._ExactTable = CachedExactTable
    try:
        yield
    finally:
        rewards._ExactTable = original


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


def _train(plan: RunPlan, agent_params: dict, progress: bool):
    """``agents.train`` with the plan's settings."""
    import agents

    kwargs = dict(eval_every=plan.eval_every, eval_episodes=plan.eval_episodes, progress=progress,
                  eval_mode=plan.eval_mode)
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
    with exact_table_cache(cache):
        run = _train(plan, agent_params, bool(cfg.get("progress", False)))
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


@contextlib.contextmanager
def _run_lock(out_dir: Path, run_id: str):
    """Yields whether this process holds ``runs/.<run_id>.lock`` (non-blocking; released, by the
    kernel too, when the process ends): two jobs of one run never train it together."""
    path = out_dir / results.RUNS_DIR / f".{run_id}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield True
        return
    with open(path, "a+b") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


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


@hydra.main(version_base="1.3", config_path="pkg://conf", config_name="train")
def _hydra_main(cfg: DictConfig) -> dict:
    return run_job(cfg)


# =============================================================================================
# The sweep: checks before, summary after (Hydra callbacks, in the launching process)
# =============================================================================================

def _sweep_jobs(config: DictConfig) -> list[list[str]] | None:
    """The override lists of every job of a multirun, as the basic sweeper expands them
    (None for another sweeper)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    target = str(OmegaConf.select(config, "hydra.sweeper._target_", default=""))
    if target and not target.endswith("BasicSweeper"):
        return None
    params = OmegaConf.select(config, "hydra.sweeper.params", default=None)
    params = OmegaConf.to_container(params, resolve=False) if params is not None else {}
    arguments = [f"{k}={v}" for k, v in params.items()]
    arguments += list(OmegaConf.to_container(config.hydra.overrides.task, resolve=False))
    parser = OverridesParser.create()
    overrides = parser.parse_overrides(arguments)
    batches = BasicSweeper.split_arguments(overrides, None)
    return [list(job) for batch in batches for job in batch]


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
    each agent under each kind of objective (plain rewards, DReST's counts, exact tables)."""
    import warnings

    import agents

    tiny = {"ppo": dict(num_envs=4, num_steps=8, minibatches=1, epochs=1),
            "sb3_ppo": dict(num_envs=2, n_steps=16, batch_size=32, n_epochs=1),
            "sb3_dqn": dict(num_envs=2, learning_starts=0, batch_size=8, train_freq=1, buffer_size=1000),
            "q_learning": dict(num_envs=4), "sarsa": dict(num_envs=4)}
    seen = set()
    t0 = time.perf_counter()
    for plan in plans:
        needs = set(plan.objective.needs())
        mode = "plain" if not needs else ("drest" if "meta_counts" in needs else "exact")
        if (plan.agent, mode) in seen:
            continue
        seen.add((plan.agent, mode))
        params = {k: v for k, v in plan.agent_params.items() if k not in ("log_dir", "checkpoint_dir")}
        params.update(tiny.get(plan.agent, {}))
        level = "shutdown_delay" if mode == "drest" else "survival"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                agents.train(level, plan.agent, plan.objective, total_steps=64, seed=0, eval_every=64,
                             eval_episodes=4, **params)
        except Exception as e:  # the jobs will report real errors
            log.warning("warm-up of %s (%s objective) failed: %s", plan.agent, mode, e)
    print(f"numba caches warm ({len(seen)} agent x objective kinds, {time.perf_counter() - t0:.1f} s)", flush=True)


# =============================================================================================
# Errors while composing the config
# =============================================================================================

def _known_keys(path: str) -> list[str] | None:
    """The keys that exist under ``path`` (``""``, ``level``, ``level.params``, ``agent``)
    whatever the chosen options (for messages)."""
    if path == "":
        return [f.name for f in dataclasses.fields(TrainConfig)]  # (hydra's own keys left out)
    if path == "level":
        return [f.name for f in dataclasses.fields(LevelConf)]
    if path == "level.params":
        return [f.name for f in dataclasses.fields(LevelParamsConf)]
    return None


def _report_config_error(e: BaseException) -> None:
    """Print a composition error, adding the keys that exist where a key was not found."""
    from omegaconf.errors import OmegaConfBaseException

    msg = str(e).strip()
    extra = []
    chain, cur = [], e
    while cur is not None and cur not in chain:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    for ex in chain:
        if isinstance(ex, OmegaConfBaseException):
            inner = str(ex).strip()
            if inner and inner not in msg:
                msg = f"{msg}\n{inner}"
            full_key = getattr(ex, "full_key", None)
            if full_key and ("not in struct" in inner or "not found" in inner.lower()
                             or type(ex).__name__ in ("ConfigKeyError", "ConfigAttributeError")):
                parent = full_key.rsplit(".", 1)[0] if "." in full_key else ""
                node = getattr(ex, "parent_node", None)
                keys = None
                if node is not None and hasattr(node, "keys"):
                    try:
                        keys = [str(k) for k in node.keys()]
                    except Exception:
                        keys = None
                if keys is None:
                    keys = _known_keys(parent)
                if keys and parent == "":
                    keys = [k for k in keys if k != "hydra"]
                if keys:
                    where = parent or "the top level"
                    extra.append(f"unknown key {full_key!r}; the keys of {where} are: {', '.join(keys)}")
            break
    print("configuration error (nothing was run):\n" + "\n".join(["  " + line for line in msg.splitlines()]
                                                                + ["  " + x for x in extra]),
          file=sys.stderr, flush=True)


def main() -> None:
    """``python -m experiments.train``: the Hydra app, with configuration errors reported
    as such (exit status 2) and failing single runs with their traceback (exit status 1)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    full = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let exceptions reach us instead of Hydra's printer
    try:
        _hydra_main()
    except (HydraException, OmegaConfBaseException, ConfigError) as e:
        if full:
            raise
        _report_config_error(e)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
