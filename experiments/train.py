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
Slurm through submitit; ``ray`` and ``ray_cluster``, a running Ray cluster, need
``pip install -e ".[ray]"``). Sweeps are Hydra's grids, or a union of grids with
``hydra/sweeper=union`` (:mod:`experiments.sweeper`). Top-level settings
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
other runs (:class:`agents.exact.cache.TableCache`, passed to ``agents.train(exact_cache=...)``).

Parallel jobs: the parent compiles numba's caches once (a tiny run per agent) before the jobs
start, and each job gets ``threads`` threads (default: the cores divided by the parallel jobs
of the launcher; 1 per Slurm/submitit task unless ``cpus_per_task`` says more): torch's and
numba's thread pools and ``OMP_NUM_THREADS`` of the job processes. GNU OpenMP (numba's threading
layer) is not fork-safe: the joblib launcher uses loky, which starts fresh interpreters (no
bare fork), as do submitit and Ray.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from experiments.config import ConfigError, _report_config_error
from experiments.jobs import run_job


@hydra.main(version_base="1.3", config_path="pkg://conf", config_name="train")
def _hydra_main(cfg: DictConfig) -> dict:
    return run_job(cfg)


def register_objective_options(argv: list[str]) -> list[str]:
    """Make the objectives a command line names beside the built-in ones options of the
    ``objective`` group, so that one sweep mixes them: ``objective=task,my_module.NoTampering``
    (a class's dotted path) and, with ``imports=[my_module]``, ``objective=no_tampering`` (a name
    that module registers with ``@register_objective``). Each becomes a config ``{name, _target_}``
    in Hydra's ConfigStore; its parameters are set as usual (``objective.cost=2``). The modules
    are imported from the working directory or ``PYTHONPATH``, here and in every job process.
    A class path's module joins ``imports`` (every job imports it, so a parameter of the user's
    objective swept beside others is known to every job). Returns the command line to run (an
    unparsable one is returned as it is: Hydra reports it)."""
    import importlib

    from hydra.core.config_store import ConfigStore
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from agents.objectives import OBJECTIVES

    args = [a for a in argv if "=" in a and not a.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(args)
    except Exception:
        return list(argv)
    names, modules = [], []
    for o in parsed:
        key = o.key_or_group.lstrip("+~")
        values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.value()]
        for v in values:
            items = v if isinstance(v, (list, tuple)) else [v]
            if key == "objective":
                names += [str(i) for i in items]
            elif key == "imports":
                modules += [str(i) for i in items]
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception:  # plan_run reports it, naming the module
            pass
    shipped = {p.stem for p in (Path(__file__).resolve().parents[1] / "conf" / "objective").glob("*.yaml")}
    cs, extra = ConfigStore.instance(), []
    for name in dict.fromkeys(names):
        if name in shipped:
            continue
        if name in OBJECTIVES:
            cls = OBJECTIVES[name]
            node = {"name": name, "_target_": f"{cls.__module__}.{cls.__qualname__}"}
        elif "." in name:
            node = {"name": None, "_target_": name}
            module = name.rpartition(".")[0]
            if module not in modules:
                extra.append(module)
            try:
                importlib.import_module(module)
            except Exception:  # plan_run reports it, naming the class
                pass
        else:
            continue  # Hydra says the option does not exist
        cs.store(group="objective", name=name, node=node)
    if not extra:
        return list(argv)
    all_modules = ",".join(dict.fromkeys([*modules, *extra]))
    rest = [a for a in argv if not a.lstrip("+~").startswith("imports=")]
    return [*rest, f"imports=[{all_modules}]"]


def main() -> None:
    """``python -m experiments.train``: the Hydra app, with configuration errors reported
    as such (exit status 2) and failing single runs with their traceback (exit status 1)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    full = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let exceptions reach us instead of Hydra's printer
    try:
        sys.argv[1:] = register_objective_options(sys.argv[1:])
        _hydra_main()
    except (HydraException, OmegaConfBaseException, ConfigError) as e:
        if full:
            raise
        _report_config_error(e)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
