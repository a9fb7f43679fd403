"""The configuration of ``python -m experiments.train``: the typed schema Hydra checks while it
composes a config (:class:`TrainConfig`, one dataclass per learner, :class:`LevelConf`), and
:func:`plan_run`, which resolves and checks one job's config into a :class:`RunPlan` before
anything runs (errors name the setting: :class:`ConfigError`)."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import logging
import sys
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from experiments import results

log = logging.getLogger(__name__)

#: Learner parameters that do not change a run's result (left out of its identity).
NON_IDENTITY_AGENT_PARAMS = frozenset({"log_dir", "log_formats", "checkpoint_dir", "checkpoint_every",
                                       "torch_threads"})


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
from experiments import sweeper as _sweeper  # noqa: E402,F401  (registers hydra/sweeper=union)


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
        other = next((n for n, c in OBJECTIVES.items() if c is cls), None)
        if registered is not None and other is not None:  # two registered objectives: which one was meant?
            raise ConfigError(f"objective.name {name!r} and objective._target_ {target!r} (the objective {other!r}) "
                              f"name different objectives; choose one with objective={other} or objective={name} "
                              "(objective.name alone does not change the class)")
    else:
        if name is None:
            raise ConfigError(f"objective: needs a name (one of {sorted(OBJECTIVES)}) or a _target_ class")
        if registered is None:
            raise ConfigError(f"objective.name: unknown objective {name!r}; registered objectives are "
                              f"{sorted(OBJECTIVES)} (a class of your own: objective._target_=module.Class)")
        cls = registered
    ignored = {}
    accepted = _accepted_params(cls)
    if lenient and accepted is not None:  # the registered objectives and every other one loaded (a user's)
        from agents.objectives import Objective

        def subclasses(c):
            for sub in c.__subclasses__():
                yield sub
                yield from subclasses(sub)

        known = {*OBJECTIVES.values(), *subclasses(Objective)}
        others = {k for c in known if c is not cls for k in (_accepted_params(c) or ())}
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
    known = [f.name for f in dataclasses.fields(TrainConfig)]
    unknown = [k for k in c if k not in known]
    if unknown:  # a key added with +key=value (struct mode lets Hydra add it)
        raise ConfigError(f"unknown key {unknown[0]!r}; the keys of the top level are: {', '.join(known)}")
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
    from agents.learners.base import resolve_gamma

    try:  # one discount rule for every learner: a contradiction fails here, before any run
        resolve_gamma(objective, agent_params.get("gamma"), 1.0)
    except ValueError as e:
        raise ConfigError(f"agent.gamma: {e}") from None
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
    import re

    # "find": hydra/launcher=ray itself; "load": a config here that extends it (ray_cluster)
    missing = re.search(r"Could not (?:find|load) 'hydra/launcher/([^']+)'", msg)
    if missing and missing.group(1).startswith("ray"):
        extra.append("the ray launcher is an optional extra: pip install -e \".[ray]\" (hydra-ray-launcher)")
    print("configuration error (nothing was run):\n" + "\n".join(["  " + line for line in msg.splitlines()]
                                                                + ["  " + x for x in extra]),
          file=sys.stderr, flush=True)
