"""Every learner writes its evaluations to TensorBoard under the same tags (``shutdown/<metric>``
at ``env_steps``); native PPO also writes its losses, entropy and steps per second; the optional
Weights & Biases sink is never imported unless asked for, and asking without wandb installed
fails naming the fix."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest

import agents
from agents.learners.logging import WANDB_ENV, MetricsWriter, evaluation_scalars
from agents.metrics import METRIC_NAMES

TINY = {
    "ppo": dict(num_envs=8, num_steps=8, minibatches=1, epochs=1),
    "sb3_ppo": dict(num_envs=2, n_steps=16, batch_size=32, n_epochs=1, log_formats=("tensorboard",)),
    "q_learning": dict(num_envs=4),
    "sarsa": dict(num_envs=4),
}
STEPS, EVERY = 128, 64


def _read(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag in the event files under ``log_dir``, read a folder at a time as
    TensorBoard reads a run: [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folders = sorted({p.parent for p in log_dir.rglob("events.out.tfevents.*")})
    assert folders, f"no event files under {log_dir}"
    out: dict[str, list[tuple[int, float]]] = {}
    for folder in folders:
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """One tiny run per learner, each logging into its own folder: (run, scalars by tag)."""
    out = {}
    for agent, params in TINY.items():
        log_dir = tmp_path_factory.mktemp(agent)
        run = agents.train("coffee", agent, "task", total_steps=STEPS, seed=0, eval_every=EVERY, eval_episodes=4,
                           log_dir=str(log_dir), **params)
        out[agent] = (run, _read(log_dir))
    return out


def _shutdown_tags(scalars):
    return {t for t in scalars if t.startswith("shutdown/")}


@pytest.mark.parametrize("agent", sorted(TINY))
def test_every_learner_logs_each_evaluation_as_shutdown_metrics_at_its_env_steps(logged, agent):
    run, scalars = logged[agent]
    tags = _shutdown_tags(scalars)
    assert {f"shutdown/{m}" for m in METRIC_NAMES} <= tags
    for tag in tags:  # one value per evaluation, at the evaluation's env steps, equal to the history's
        metric = tag[len("shutdown/"):]
        points = sorted(scalars[tag])
        assert [s for s, _ in points] == [row["env_steps"] for row in run.history], tag
        for (_, value), row in zip(points, run.history):
            assert value == pytest.approx(row[metric], nan_ok=True), tag
    assert len(run.history) >= 2


def test_the_learners_log_the_same_metric_tags(logged):
    tags = {agent: _shutdown_tags(scalars) for agent, (_, scalars) in logged.items()}
    reference = tags["ppo"]
    assert reference
    for agent, t in tags.items():
        assert t == reference, (agent, t ^ reference)
    # a learner's extras (the tabular table size, epsilon) are not metrics and go under train/
    q_tags = logged["q_learning"][1]
    assert {"train/table_size", "train/epsilon", "train/episodes"} <= set(q_tags)
    assert not any(t.endswith("_se") for t in q_tags)


def test_ppo_logs_its_losses_entropy_and_speed_after_every_update(logged):
    run, scalars = logged["ppo"]
    updates = run.extra["updates"]
    assert updates == STEPS // (8 * 8)
    for name in ("pg_loss", "v_loss", "entropy", "approx_kl", "clipfrac", "ent_coef", "lr", "steps_per_second"):
        points = scalars[f"train/{name}"]
        assert [s for s, _ in points] == [64 * (i + 1) for i in range(updates)], name
    last = {k: v for k, v in run.extra["last_losses"].items()}
    for name, value in last.items():
        assert scalars[f"train/{name}"][-1][1] == pytest.approx(value, rel=1e-6)
    assert all(v > 0 for _, v in scalars["train/steps_per_second"])
    assert all(0 < v <= 1.6094380 for _, v in scalars["train/entropy"])  # at most log(5): 5 actions


def test_an_evaluator_writes_nothing_without_a_log_dir(tmp_path, monkeypatch):
    monkeypatch.delenv(WANDB_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    run = agents.train("coffee", "q_learning", "task", total_steps=64, seed=0, eval_every=64, eval_episodes=4,
                       num_envs=4)
    assert run.history and not list(tmp_path.rglob("events.out.tfevents.*"))


def test_evaluation_scalars_name_metrics_and_extras():
    row = {"env_steps": 5, "wall_time": 1.0, "train_time": 0.5, "delivered": 0.25, "delivered_se": 0.1,
           "side_effects/cat_harmed": 0.0, "side_effects/cat_harmed_se": 0.0, "table_size": 7, "note": "x"}
    assert evaluation_scalars(row) == {"shutdown/delivered": 0.25, "shutdown/side_effects/cat_harmed": 0.0,
                                       "train/table_size": 7.0}


def test_a_resumed_writer_drops_what_the_earlier_session_logged_from_the_resume_step(tmp_path):
    with MetricsWriter(tmp_path) as w:
        w.start(0)
        for step in (10, 20, 30):
            w.scalars(step, {"train/x": step})
    with MetricsWriter(tmp_path) as w:  # a run resumed at step 20 logs 20 and 30 again
        w.start(20)
        for step in (20, 30):
            w.scalars(step, {"train/x": -step})
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0})
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("train/x")] == [(10, 10), (20, -20), (30, -30)]


def test_a_run_started_again_in_its_folder_shows_one_curve(tmp_path):
    """A tabular run repeated (a sweep's retry) and a PPO run resumed from its checkpoint: one
    value per step, the earlier session's values after the restart point forgotten."""
    for _ in range(2):
        run = agents.train("coffee", "q_learning", "task", total_steps=STEPS, seed=0, eval_every=EVERY,
                           eval_episodes=4, log_dir=str(tmp_path / "q"), **TINY["q_learning"])
    assert len(list((tmp_path / "q").glob("events.out.tfevents.*"))) == 2
    assert sorted(_read(tmp_path / "q")["shutdown/delivered"]) == [(r["env_steps"], r["delivered"])
                                                                   for r in run.history]
    ppo = dict(log_dir=str(tmp_path / "ppo"), checkpoint_dir=str(tmp_path / "ckpt"), **TINY["ppo"])
    first = agents.train("coffee", "ppo", "task", total_steps=64, seed=0, eval_every=EVERY, eval_episodes=4, **ppo)
    run = agents.train("coffee", "ppo", "task", total_steps=STEPS, seed=0, eval_every=EVERY, eval_episodes=4, **ppo)
    assert [r["env_steps"] for r in first.history] == [64] and [r["env_steps"] for r in run.history] == [64, 128]
    scalars = _read(tmp_path / "ppo")
    assert [s for s, _ in sorted(scalars["shutdown/delivered"])] == [64, 128]  # 64 from the first session
    assert [s for s, _ in sorted(scalars["train/pg_loss"])] == [64, 128]


# --- Weights & Biases: optional --------------------------------------------------------------

def test_nothing_imports_wandb_by_default(tmp_path):
    code = ("import sys, agents\n"
            f"agents.train('coffee', 'q_learning', 'task', total_steps=64, seed=0, eval_every=64, eval_episodes=4, "
            f"num_envs=4, log_dir={str(tmp_path)!r})\n"
            "assert 'wandb' not in sys.modules, 'wandb imported'\n"
            "assert 'torch' not in sys.modules, 'the tabular learner imported torch to log'\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != WANDB_ENV}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=Path(__file__).resolve().parents[1])
    assert list(tmp_path.glob("events.out.tfevents.*"))


def test_asking_for_wandb_without_it_installed_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    monkeypatch.setenv(WANDB_ENV, "stop-button")
    with pytest.raises(ImportError, match="pip install wandb"):
        agents.train("coffee", "q_learning", "task", total_steps=64, seed=0, eval_every=64, eval_episodes=4,
                     num_envs=4, log_dir=str(tmp_path))


def test_wandb_gets_the_same_scalars_when_asked(tmp_path, monkeypatch):
    calls = {"init": [], "log": [], "finish": 0}

    class FakeRun:
        def log(self, values, step):
            calls["log"].append((step, dict(values)))

        def finish(self):
            calls["finish"] += 1

    def init(**kwargs):
        calls["init"].append(kwargs)
        return FakeRun()

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    monkeypatch.setenv(WANDB_ENV, "stop-button")
    run = agents.train("coffee", "ppo", "task", total_steps=STEPS, seed=0, eval_every=EVERY, eval_episodes=4,
                       log_dir=str(tmp_path / "run7"), **TINY["ppo"])
    (init_kwargs,) = calls["init"]
    assert init_kwargs["project"] == "stop-button" and init_kwargs["name"] == "run7"
    assert init_kwargs["config"]["agent"] == "ppo" and init_kwargs["config"]["agent.num_envs"] == 8
    assert calls["finish"] == 1
    evals = [(s, v) for s, v in calls["log"] if "shutdown/delivered" in v]
    assert [s for s, _ in evals] == [row["env_steps"] for row in run.history]
    assert [v["shutdown/delivered"] for _, v in evals] == [row["delivered"] for row in run.history]
    assert any("train/pg_loss" in v for _, v in calls["log"])
    assert set(_read(tmp_path / "run7")) >= {"shutdown/delivered", "train/pg_loss"}  # TensorBoard as well


def test_sb3_sends_its_evaluations_to_wandb_when_asked(tmp_path, monkeypatch):
    logged, finished = [], []

    class FakeRun:
        def log(self, values, step):
            logged.append((step, dict(values)))

        def finish(self):
            finished.append(True)

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=lambda **kwargs: FakeRun()))
    monkeypatch.setenv(WANDB_ENV, "stop-button")
    run = agents.train("coffee", "sb3_ppo", "task", total_steps=STEPS, seed=0, eval_every=EVERY, eval_episodes=4,
                       **TINY["sb3_ppo"])
    evals = [s for s, v in logged if "shutdown/delivered" in v]
    assert evals == [row["env_steps"] for row in run.history] and finished == [True]
