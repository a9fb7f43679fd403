"""The Hydra app ``python -m experiments.train``: configs, checks before any run, sweeps that
survive being killed, launchers that agree, the tidy table (``experiments.results``).

The end-to-end tests run the app as a subprocess with tiny budgets (tabular Q-learning,
a few thousand steps, few evaluation episodes) and ``hydra.sweep.dir`` under ``tmp_path``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from experiments import results

ROOT = Path(__file__).resolve().parents[1]
TINY = ["agent=q_learning", "total_steps=3000", "eval_every=1000", "eval_episodes=16", "save_policy=false"]
TIMING = ("wall_time", "train_time")


def _env(extra_path: Path | None = None) -> dict:
    env = dict(os.environ)
    env.pop("HYDRA_FULL_ERROR", None)
    paths = [str(ROOT)] + ([str(extra_path)] if extra_path else []) + [env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


def app(*args, cwd: Path, extra_path: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``python -m experiments.train ARGS`` and return the finished process."""
    return subprocess.run([sys.executable, "-m", "experiments.train", *args], cwd=cwd, env=_env(extra_path),
                          capture_output=True, text=True, timeout=timeout)


def table(sweep: Path) -> pd.DataFrame:
    return pd.read_parquet(sweep / results.RESULTS_PARQUET)


def without_timing(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=[c for c in TIMING if c in df.columns]).reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Configs, in process
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose():
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    import experiments.config  # noqa: F401  (registers the structured configs)

    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="conf", version_base="1.3"):
        yield lambda overrides=(): hydra_compose(config_name="train", overrides=list(overrides),
                                                 return_hydra_config=True)
    GlobalHydra.instance().clear()


def test_agent_schemas_mirror_the_learner_configs():
    from agents.learners import LEARNERS
    from experiments.config import AGENT_SCHEMAS, _learner_configs

    configs = _learner_configs()
    assert set(configs) == set(LEARNERS) == set(AGENT_SCHEMAS)
    for agent, cls in configs.items():
        schema = AGENT_SCHEMAS[agent]
        names = [f.name for f in dataclasses.fields(schema)]
        assert names == ["name", *[f.name for f in dataclasses.fields(cls)]], agent
        default = schema()
        for f in dataclasses.fields(cls):
            want = getattr(cls(), f.name)
            got = getattr(default, f.name)
            assert (list(want) if isinstance(want, tuple) else want) == got, (agent, f.name)


def test_every_level_has_a_config_and_every_config_a_level():
    # the built-in registry, read in a fresh process (other tests register levels of their own)
    out = subprocess.run([sys.executable, "-c", "import envs; from envs.levels import LEVELS; print(*sorted(LEVELS))"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    files = {p.stem for p in (ROOT / "conf" / "level").glob("*.yaml")}
    assert files == set(out)


def test_presets_compose_and_their_jobs_are_valid(compose):
    """Every preset composes into a multirun over joblib; its first and last jobs pass the
    checks the sweep makes (on every job) before it starts."""
    from experiments.config import plan_run
    from experiments.sweep import _sweep_jobs
    from hydra.core.global_hydra import GlobalHydra

    loader = GlobalHydra.instance().config_loader()
    counts, plans = {}, {}
    for name in ("default", "safe_interruptibility", "drest", "penalty_sweep", "learned_values", "kitchen",
                 "off_switch_game"):
        cfg = compose([f"experiment={name}"])
        assert cfg.hydra.mode.name == "MULTIRUN", name
        assert "joblib" in cfg.hydra.launcher._target_, name
        assert cfg.hydra.sweeper._target_.endswith(("BasicSweeper", "UnionSweeper")), name
        jobs = _sweep_jobs(cfg)
        counts[name] = len(jobs)
        plans[name] = [plan_run(loader.load_sweep_config(master_config=cfg, sweep_overrides=jobs[i]))
                       for i in (0, -1)]
        assert plans[name][0].run_id != plans[name][1].run_id
    assert counts == {"default": 60, "safe_interruptibility": 10, "drest": 6, "penalty_sweep": 48,
                      "learned_values": 18, "kitchen": 9, "off_switch_game": 72}
    first, last = plans["default"]
    assert (first.agent, first.total_steps) == ("ppo", 800_000)  # the learner that converges in the budget
    assert (first.level_name, first.objective_label, first.seed) == ("off_switch", "task", 0)
    assert (last.level_name, last.objective_label, last.seed) == ("coffee_hazards", "harm_penalty", 2)
    drest = plans["drest"][0]
    assert (drest.agent, drest.level_name, drest.eval_level.name) == ("ppo", "procedural_delay",
                                                                      "procedural_delay_test")
    assert {p.objective_label for p in plans["drest"]} == {"drest", "task"}
    assert {p.agent for p in plans["safe_interruptibility"]} == {"q_learning", "sarsa"}
    assert [p.objective.lam for p in plans["penalty_sweep"]] == [0.0, 10.0]
    assert {(p.agent, p.agent_params["objective_values"]) for p in plans["learned_values"]} == {("ppo", "learned")}
    # the game: three grids in one sweep (error, signal, co-training), the point they share run once
    game_first, game_last = plans["off_switch_game"]
    assert (game_first.agent, game_first.level_name) == ("ppo", "off_switch_game")
    assert game_last.agent == "ppo_cotrain" and game_first.agent_params["num_envs"] == 128
    kitchen = plans["kitchen"][0]
    assert (kitchen.level.params.max_steps, kitchen.eval_level.name, kitchen.eval_level.params.max_steps) == (
        400, "kitchen", 80)


def test_run_id_follows_the_resolved_config(compose):
    from experiments.config import plan_run

    base = plan_run(compose(["objective=aup"]))
    same = plan_run(compose(["objective=aup", f"objective.lam={base.objective.lam}", "level.params.max_steps=30",
                             "agent.alpha=0.2", "threads=1", "progress=true"]))
    assert same.run_id == base.run_id  # defaults spelt out, or settings that change nothing
    for change in (["objective.lam=0.5"], ["seed=1"], ["level.params.max_steps=29"], ["agent.alpha=0.3"],
                   ["total_steps=1000"], ["eval_episodes=17"], ["agent=sarsa"]):
        assert plan_run(compose(["objective=aup", *change])).run_id != base.run_id, change
    assert base.run_id.startswith("off_switch-q_learning-aup-s0-")


def test_a_sweep_parameter_applies_to_the_objectives_that_have_it(compose):
    """objective=task,aup objective.lam=...: the task runs leave lam out (one run per seed);
    outside a sweep, or for a name no objective has, it is an error listing what exists."""
    from experiments.config import ConfigError, plan_run

    task = plan_run(compose(["objective=task"]))
    swept = plan_run(compose(["objective=task", "objective.lam=0.1"]), sweep=True)
    assert swept.run_id == task.run_id and swept.ignored_objective_params == {"lam": 0.1}
    aup = plan_run(compose(["objective=aup", "objective.lam=0.1"]), sweep=True)
    assert aup.objective.lam == 0.1 and not aup.ignored_objective_params
    with pytest.raises(ConfigError, match="objective 'task' has no parameter 'lam'; its parameters are discount"):
        plan_run(compose(["objective=task", "objective.lam=0.1"]))
    with pytest.raises(ConfigError, match="no parameter 'lamm'"):
        plan_run(compose(["objective=task", "objective.lamm=0.1"]), sweep=True)


def test_traps_that_used_to_end_with_exit_code_0_are_configuration_errors(compose):
    """objective.name alone does not change the class (its _target_ does): a contradiction is an
    error, not a silent task run; a key added with + that the schema lacks is an unknown key."""
    from experiments.config import ConfigError, plan_run

    with pytest.raises(ConfigError, match="objective.name 'utility_indifference' and objective._target_ .*name "
                                          "different objectives; choose one with objective=task"):
        plan_run(compose(["objective.name=utility_indifference"]))
    with pytest.raises(ConfigError, match="unknown key 'total_step'; the keys of the top level are: .*total_steps"):
        plan_run(compose(["+total_step=1000"]))
    assert plan_run(compose(["objective=utility_indifference"])).objective_label == "utility_indifference"


def test_the_summary_counts_jobs_that_resolved_to_another_jobs_run(tmp_path):
    from experiments.results import Summary

    s = Summary(tmp_path, done=["a"], duplicates=["objective=task seed=0"])
    assert "1 done, 0 skipped" in s.text() and "1 job(s) resolved to a run another job already had" in s.text()


def test_impossible_values_are_caught_before_running(compose):
    from experiments.config import ConfigError, plan_run

    cases = {("objective=aup", "objective.lam=-1"): "parameter 'lam' must be",
             ("agent.alpha=2",): "alpha must be in (0, 1]",
             ("level.params.max_steps=0",): "max_steps",
             ("eval_level=coffee",): "grid size",
             ("level.name=nowhere",): "registered levels are",
             ("total_steps=0",): "total_steps must be",
             ("imports=[no_such_module_xyz]",): "cannot import 'no_such_module_xyz'"}
    for overrides, text in cases.items():
        with pytest.raises(ConfigError, match=None) as e:
            plan_run(compose(list(overrides)))
        assert text in str(e.value), (overrides, str(e.value))


def test_sweep_dir_gets_a_unique_suffix(compose):
    a = compose(["hydra.sweep.dir=x"])
    dirs = {str(compose().hydra.sweep.dir) for _ in range(3)}
    assert len(dirs) == 3 and a.hydra.sweep.dir == "x"
    one = compose()
    assert str(one.hydra.sweep.dir) == str(one.hydra.sweep.dir)  # resolved once per sweep


def test_threads_per_job():
    from experiments.jobs import threads_per_job

    assert threads_per_job(None, {}, cores=8) is None  # sequential: leave the pools alone
    joblib = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    assert threads_per_job(None, {"_target_": joblib, "n_jobs": -1}, cores=8) == 1
    assert threads_per_job(None, {"_target_": joblib, "n_jobs": 2}, cores=8) == 4
    assert threads_per_job(None, {"_target_": joblib, "n_jobs": -3}, cores=8) == 1
    slurm = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert threads_per_job(None, {"_target_": slurm, "cpus_per_task": None}, cores=8) == 1
    assert threads_per_job(None, {"_target_": slurm, "cpus_per_task": 4}, cores=8) == 4
    assert threads_per_job(3, {"_target_": joblib, "n_jobs": 2}, cores=8) == 3


def test_eval_level_evaluates_on_the_held_out_pool(compose, tmp_path):
    from experiments.config import plan_run
    from experiments.jobs import execute

    cfg = compose(["level=procedural_delay", "eval_level=procedural_delay_test", *TINY])
    plan = plan_run(cfg)
    record = execute(plan, tmp_path, cfg)
    assert record["level"] == "procedural_delay" and record["eval_level"] == "procedural_delay_test"
    assert len(record["history"]) == 3 and "neutrality" in record["history"][-1]
    results.write_record(tmp_path, record)
    df = results.assemble(tmp_path)
    assert set(df["eval_level"]) == {"procedural_delay_test"} and set(df["level"]) == {"procedural_delay"}


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------

def _record(run_id, objective="aup", params=None, agent_params=None, steps=(10, 20), seed=0):
    return {"run_id": run_id, "level": "off_switch", "eval_level": "off_switch", "agent": "q_learning",
            "objective": objective, "objective_params": params or {"lam": 0.5, "discount": 1.0},
            "agent_params": agent_params or {"alpha": 0.2, "num_envs": 64, "log_dir": "x"},
            "agent_defaults": {"alpha": 0.2, "num_envs": 64, "log_dir": None},
            "level_params": {"max_steps": 30}, "level_defaults": {"max_steps": 30},
            "seed": seed, "total_steps": 20, "version": "0.1.0", "run_path": None,
            "history": [{"env_steps": s, "wall_time": 0.1, "train_time": 0.1, "compliance": None, "delivered": 0.5,
                         "delivered_se": 0.1, "table_size": 3} for s in steps]}


def test_table_columns_and_atomic_files(tmp_path):
    results.write_record(tmp_path, _record("a-1"))
    results.write_record(tmp_path, _record("b-2", objective="task", params={"discount": 1.0},
                                           agent_params={"alpha": 0.5, "num_envs": 64, "log_dir": "y"}, seed=1))
    # a cut-short file and a stray temporary file are not results
    (tmp_path / "runs" / "c-3.json").write_text('{"format": 1, "complete": true, "run_id": "c-3", "hist')
    (tmp_path / "runs" / ".a-1.json.123.abcd.tmp").write_text("{")
    paths, rows = results.write_table(tmp_path)
    assert rows == 4 and [p.name for p in paths] == ["results.parquet", "results.csv"]
    df = table(tmp_path)
    assert list(df.columns[:5]) == list(results.ID_COLUMNS)
    assert {"objective.lam", "objective.discount", "agent.alpha", "seed", "env_steps", "compliance",
            "delivered_se", "table_size", "run_path", "version"} <= set(df.columns)
    assert "agent.num_envs" not in df.columns and "agent.log_dir" not in df.columns  # unchanged / a path
    assert df["compliance"].isna().all() and df["delivered"].dtype.kind == "f"
    assert sorted(df.groupby("run_id").size().items()) == [("a-1", 2), ("b-2", 2)]
    assert df.loc[df.run_id == "a-1", "agent.alpha"].tolist() == [0.2, 0.2]
    assert df.loc[df.run_id == "b-2", "objective.lam"].isna().all()
    csv = pd.read_csv(tmp_path / "results.csv")
    assert list(csv.columns) == list(df.columns) and len(csv) == 4
    assert results.is_complete(tmp_path, "a-1") and not results.is_complete(tmp_path, "c-3")
    assert not list(tmp_path.glob(".*.tmp"))


# ---------------------------------------------------------------------------------------------
# End to end (subprocesses)
# ---------------------------------------------------------------------------------------------

def test_config_errors_stop_the_app_before_any_run(tmp_path):
    cases = [
        (["objective=aup", "objective.lamm=1"], ["no parameter 'lamm'", "lam (a number", "scale"]),  # what exists
        (["agent.alpah=0.1"], ["agent.alpah", "alpha", "epsilon_start"]),
        (["objective=aupp"], ["objective/aupp", "utility_indifference"]),  # unknown group option: the options
        (["-m", "seed=0,1", "total_steps=2x"], ["total_steps", "Integer"]),  # wrong type
        (["-m", "objective=aup", "objective.lam=0.1,-1"], ["parameter 'lam' must be", "objective.lam=-1"]),
    ]
    procs = []
    for k, (args, _) in enumerate(cases):  # all at once: each is mostly interpreter start-up
        sweep = tmp_path / f"sweep{k}"
        cmd = [sys.executable, "-m", "experiments.train", *args, *TINY, f"hydra.sweep.dir={sweep}",
               f"hydra.run.dir={sweep}"]
        procs.append((sweep, subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE,
                                              stderr=subprocess.PIPE, text=True)))
    for (args, texts), (sweep, proc) in zip(cases, procs):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, (args, out, err)
        assert "configuration error" in err and "Traceback" not in err, (args, err)
        for t in texts:
            assert t in err, (args, t, err)
        assert not sweep.exists(), args  # nothing ran, nothing written


BOOM = textwrap.dedent('''
    from dataclasses import dataclass

    from agents.objectives import Objective, param

    @dataclass
    class Boom(Objective):
        """The task reward, or an error when ``fail``."""
        fail: bool = param(False, "raise in reward()")

        def reward(self, t):
            if self.fail:
                raise RuntimeError("boom: this objective always fails")
            return t.reward
''')


def test_failing_run_is_reported_and_the_sweep_is_idempotent(tmp_path):
    """A user's objective by _target_; the failing run does not stop the other; a second
    sweep in the same directory skips the complete run and retries the failed one."""
    (tmp_path / "boom_objective.py").write_text(BOOM)
    sweep = tmp_path / "sweep"
    args = ["-m", "objective._target_=boom_objective.Boom", "+objective.fail=true,false", "level=survival", *TINY,
            f"hydra.sweep.dir={sweep}"]
    p = app(*args, cwd=tmp_path, extra_path=tmp_path)
    assert p.returncode == 1, p.stderr
    assert "1 done, 0 skipped (already complete), 1 failed" in p.stdout, p.stdout
    assert "boom: this objective always fails" in p.stdout and "fail=True" in p.stdout
    df = table(sweep)
    assert set(df["objective"]) == {"Boom"} and df["objective.fail"].tolist() == [False] * 3
    (good,) = set(df["run_id"])
    failed = [p for p in (sweep / "runs").glob("*.error.txt")]
    assert len(failed) == 1
    record = json.loads((sweep / "runs" / f"{good}.json").read_text())
    assert record["objective_target"] == "boom_objective.Boom" and record["version"] and record["seed"] == 0
    assert record["config"]["objective"]["fail"] is False and len(record["history"]) == 3
    before = (sweep / "runs" / f"{good}.json").stat().st_mtime_ns
    p = app(*args, cwd=tmp_path, extra_path=tmp_path)
    assert p.returncode == 1 and "0 done, 1 skipped (already complete), 1 failed" in p.stdout, p.stdout
    assert (sweep / "runs" / f"{good}.json").stat().st_mtime_ns == before  # not redone
    assert without_timing(table(sweep)).equals(without_timing(df))


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def test_sweep_killed_and_restarted_ends_with_every_run_once(tmp_path):
    """SIGKILL the whole sweep (parent and job processes) at random moments, restart it in
    the same directory each time: every run ends up in the table exactly once, and every
    file is whole."""
    sweep = tmp_path / "sweep"
    args = [sys.executable, "-m", "experiments.train", "-m", "seed=0,1,2", "objective=task,harm_penalty",
            "level=off_switch,survival", "agent=q_learning", "total_steps=40000", "eval_every=10000",
            "eval_episodes=16", f"hydra.sweep.dir={sweep}"]
    rng = random.Random(0)
    runs = sweep / "runs"
    kills = 0
    for attempt in range(2):
        have = len(list(runs.glob("*.json"))) if runs.exists() else 0
        proc = subprocess.Popen(args, cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        # kill once this attempt has written a run or two more, a random moment later
        target = have + rng.randint(1, 2)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if runs.exists() and len(list(runs.glob("*.json"))) >= target:
                break
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is None:
            kills += 1
        _kill_group(proc)
    assert kills >= 1
    done_before = {p.stem for p in runs.glob("*.json")}
    assert 0 < len(done_before) < 12, "the sweep was killed before the end at least once"
    p = subprocess.run(args, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"{12 - len(done_before)} done, {len(done_before)} skipped" in p.stdout, p.stdout
    df = table(sweep)
    per_run = df.groupby("run_id").size()
    assert len(per_run) == 12 and (per_run == 4).all()  # every run once, each with its 4 evaluations
    assert not df.duplicated(["run_id", "env_steps"]).any()
    for f in runs.glob("*.json"):
        assert results.read_record(f) is not None, f  # whole
    assert not list(runs.glob(".*.tmp")) and not list(runs.glob("*.error.txt"))
    assert len(pd.read_csv(sweep / "results.csv")) == len(df)


def test_joblib_and_submitit_local_agree_and_sweep_dirs_never_collide(tmp_path):
    """The same sweep through joblib and through submitit (local) gives the same metrics; the
    two sweeps, started together without a sweep dir, get different directories."""
    args = ["-m", "seed=0,1", "objective=task", "level=off_switch", *TINY]
    procs = {}
    for launcher in ("joblib", "submitit_local"):
        procs[launcher] = subprocess.Popen([sys.executable, "-m", "experiments.train", *args,
                                            f"hydra/launcher={launcher}"], cwd=tmp_path, env=_env(),
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outs = {k: p.communicate(timeout=150) for k, p in procs.items()}
    for k, p in procs.items():
        assert p.returncode == 0, (k, outs[k])
        assert "2 done, 0 skipped" in outs[k][0], (k, outs[k][0])
    dirs = sorted(p.parent for p in (tmp_path / "multirun").glob("*/*/results.parquet"))
    assert len(dirs) == 2 and dirs[0] != dirs[1]
    tables = [without_timing(table(d)) for d in dirs]
    assert len(tables[0]) == 6 and tables[0].equals(tables[1])
    assert (tmp_path / "multirun").is_dir() and not (ROOT / "multirun" / dirs[0].name).exists()


def test_help_lists_every_preset_and_a_missing_ray_launcher_names_the_extra():
    presets = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
    out = subprocess.run([sys.executable, "-m", "experiments.train", "--help"], cwd=ROOT, capture_output=True,
                         text=True, env=_env()).stdout
    missing = [p for p in presets if p not in out.split("Presets", 1)[-1]]
    assert not missing, f"--help does not list the presets {missing}"
    proc = subprocess.run([sys.executable, "-m", "experiments.train", "hydra/launcher=ray", "--cfg", "job"], cwd=ROOT,
                          capture_output=True, text=True, env=_env())
    if proc.returncode == 2:  # hydra-ray-launcher not installed (it is an optional extra)
        assert 'pip install -e ".[ray]"' in proc.stderr


def test_the_table_can_be_collected_from_the_run_records_at_any_time(tmp_path):
    for k, steps in enumerate((10, 20)):
        results.write_record(tmp_path, {"run_id": f"r{k}", "level": "coffee", "agent": "ppo", "objective": "task",
                                        "seed": k, "total_steps": steps,
                                        "history": [{"env_steps": steps, "delivered": 1.0}]})
    proc = subprocess.run([sys.executable, "-m", "experiments.results", str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, env=_env())
    assert proc.returncode == 0, proc.stderr
    assert "2 complete runs, 2 rows" in proc.stdout and (tmp_path / "results.csv").exists()
    bad = subprocess.run([sys.executable, "-m", "experiments.results", str(tmp_path / "nowhere")], cwd=ROOT,
                         capture_output=True, text=True, env=_env())
    assert bad.returncode == 2 and "no runs/ directory" in bad.stderr


USER_MODULE = '''
from dataclasses import dataclass
from agents.objectives import Objective, param, register_objective
from envs import Event

@dataclass
class NoTampering(Objective):
    cost: float = param(10.0, "cost of disabling the button")
    def reward(self, t):
        return t.reward - self.cost * t.events[:, Event.BUTTON_DISABLED]

@register_objective
@dataclass
class CarefulTask(Objective):
    def reward(self, t):
        return t.reward
'''


def test_a_users_objectives_join_a_sweep_by_class_path_or_registered_name_and_get_exact_lines(tmp_path, monkeypatch):
    (tmp_path / "my_user_objectives.py").write_text(USER_MODULE)
    sweep = tmp_path / "sweep"
    proc = app("-m", "objective=task,my_user_objectives.NoTampering,careful_task", "objective.cost=2",
               "imports=[my_user_objectives]", "level=survival", "total_steps=512", "eval_episodes=4",
               f"hydra.sweep.dir={sweep}", cwd=tmp_path, extra_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "3 done, 0 skipped" in proc.stdout
    recs = {r["objective"]: r for r in results.records(sweep)}
    assert recs["NoTampering"]["objective_target"] == "my_user_objectives.NoTampering"
    assert recs["NoTampering"]["objective_params"]["cost"] == 2.0
    assert recs["careful_task"]["objective_target"] == "my_user_objectives.CarefulTask"
    from experiments import plot

    monkeypatch.syspath_prepend(str(tmp_path))  # the plotting process finds the user's module as the jobs did
    ctx = plot.make_plots(sweep, out=tmp_path / "figs", gifs=False)
    table = ctx.exact.table()
    assert set(table["status"]) == {"solved"} and len(table) == 3  # an exact line for each, the user's too
    assert not [n for n in ctx.notes if "exact reference skipped" in n]
