"""experiments.stats (IQM, stratified bootstrap) and experiments.plot (figures of a sweep's table)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments import plot, stats

ROOT = Path(__file__).resolve().parents[1]
LEVELS = ("survival", "off_switch")
OBJECTIVES = (("task", {}), ("aup", {"lam": 0.5}), ("aup", {"lam": 2.0}))
SEEDS = (0, 1, 2)
EVALS = 4
FIGURES = ("compliance_curves", "penalty_tradeoff", "outcomes")


# ---------------------------------------------------------------------------------------------
# stats
# ---------------------------------------------------------------------------------------------

def test_iqm_known_answers():
    assert stats.iqm(np.arange(1, 9)) == 4.5  # mean of 3, 4, 5, 6
    assert stats.iqm([1, 2, 3]) == 2.0  # fewer than 4 values: nothing trimmed
    assert stats.iqm(np.arange(1, 6)) == 3.0  # 2, 3, 4
    assert stats.iqm([1, 2, 3, 4, 100]) == 3.0  # the outlier is trimmed
    assert stats.iqm(np.arange(20)) == 9.5  # scipy.stats.trim_mean(range(20), 0.25): mean of 5..14
    assert stats.iqm([7.0]) == 7.0


def test_iqm_axis_and_nan():
    x = np.arange(16, dtype=float).reshape(8, 2)
    np.testing.assert_array_equal(stats.iqm(x, axis=0), [7.0, 8.0])
    np.testing.assert_array_equal(stats.iqm(x.T, axis=1), [7.0, 8.0])
    assert stats.iqm([np.nan, 1, 2, 3, 4, 5]) == 3.0  # NaN left out: IQM of 1..5
    assert np.isnan(stats.iqm([np.nan, np.nan]))
    np.testing.assert_array_equal(stats.iqm([[1.0, np.nan], [3.0, np.nan]], axis=0), [2.0, np.nan])


def test_bootstrap_deterministic_and_seeded():
    x = np.random.default_rng(5).normal(size=(10, 3))
    a = stats.interval_estimate(x, seed=7)
    b = stats.interval_estimate(x, seed=7)
    c = stats.interval_estimate(x, seed=8)
    np.testing.assert_array_equal(a.low, b.low)
    np.testing.assert_array_equal(a.high, b.high)
    assert not np.array_equal(a.low, c.low)
    assert (a.low <= a.point).all() and (a.point <= a.high).all()
    # the same draws serve every column: a column's interval does not depend on its neighbours
    alone = stats.bootstrap_ci(x[:, 1], seed=7)
    assert alone == (a.low[1], a.high[1])


def test_stratified_bootstrap_keeps_stratum_sizes():
    x = np.r_[np.zeros(3), np.ones(5)]
    strata = ["a"] * 3 + ["b"] * 5
    # every replicate has 3 zeros and 5 ones: the mean is always 5/8
    assert stats.bootstrap_ci(x, np.mean, strata=strata) == (0.625, 0.625)
    low, high = stats.bootstrap_ci(x, np.mean)
    assert low < 0.625 < high
    idx = stats.bootstrap_indices(np.array(strata), reps=50, rng=0)
    assert idx.shape == (50, 8) and (idx[:, :3] < 3).all() and (idx[:, 3:] >= 3).all()


def test_ci_covers_the_true_value_in_most_repeats():
    rng = np.random.default_rng(0)
    repeats, hits = 200, 0
    for r in range(repeats):
        x = rng.normal(loc=1.0, size=20)  # symmetric: the population IQM is the mean, 1
        low, high = stats.bootstrap_ci(x, reps=500, seed=r)
        hits += low <= 1.0 <= high
    assert 0.85 <= hits / repeats <= 0.99


def test_bootstrap_rejects_bad_input():
    with pytest.raises(ValueError):
        stats.bootstrap_ci([], seed=0)
    with pytest.raises(ValueError):
        stats.bootstrap_ci([1.0, 2.0], strata=[0], seed=0)
    with pytest.raises(ValueError):
        stats.bootstrap_indices(3, reps=0)


# ---------------------------------------------------------------------------------------------
# plot
# ---------------------------------------------------------------------------------------------

def _run_id(level, name, params, seed):
    return f"{level}-{name}" + "".join(f"-{k}{v}" for k, v in params.items()) + f"-s{seed}"


def synthetic_table(joint: bool = False, levels=LEVELS) -> pd.DataFrame:
    """2 levels x 3 objectives x 3 seeds x 4 evaluations, metrics rising with training."""
    from agents.metrics import METRIC_NAMES

    rng = np.random.default_rng(0)
    rows = []
    for level in levels:
        for k, (name, params) in enumerate(OBJECTIVES):
            for seed in SEEDS:
                for e in range(EVALS):
                    t = (e + 1) / EVALS
                    row = {"run_id": _run_id(level, name, params, seed), "level": level, "agent": "q_learning",
                           "objective": name, "objective.lam": params.get("lam", np.nan), "seed": seed,
                           "env_steps": 1000 * (e + 1), "wall_time": 0.5 * e, "train_time": 0.4 * e}
                    for m in METRIC_NAMES:
                        row[m] = float(np.clip(0.2 + 0.2 * t * (k + 1) + 0.05 * rng.normal(), 0.0, 1.0))
                        row[f"{m}_se"] = 0.01
                    row["side_effects"] = 2.0 * (1.0 - t) + 0.1 * seed
                    if joint:
                        h, d = row["harm"], row["delivered"]
                        row["outcome/resisted"] = row["outcome/sought_shutdown"] = 0.0
                        row["outcome/harm_delivered"] = h * d
                        row["outcome/harm_undelivered"] = h * (1 - d)
                        row["outcome/safe_delivered"] = (1 - h) * d
                        row["outcome/safe_undelivered"] = (1 - h) * (1 - d)
                    rows.append(row)
    df = pd.DataFrame(rows)
    df.loc[(df["level"] == "survival") & (df["seed"] == 0) & (df["env_steps"] == 1000), "compliance"] = np.nan
    return df


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    import agents

    d = tmp_path_factory.mktemp("sweep")
    df = synthetic_table()
    df.to_parquet(d / "results.parquet", index=False)
    df.to_csv(d / "results.csv", index=False)
    run = agents.train("survival", agent="q_learning", total_steps=1000, seed=0, eval_episodes=16)
    run.save(d / "runs" / f"{_run_id('survival', 'task', {}, 0)}.pkl")
    return d


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory):
    """One level only (the figures cost most of these tests' time)."""
    d = tmp_path_factory.mktemp("small")
    synthetic_table(levels=("off_switch",)).to_parquet(d / "results.parquet", index=False)
    return d


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_cli_writes_every_figure(sweep, tmp_path, capsys):
    out = tmp_path / "figs"
    assert plot.main([str(sweep), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    for stem in FIGURES:
        for ext in ("png", "pdf"):
            path = out / f"{stem}.{ext}"
            assert path.stat().st_size > 1000, path
            assert str(path) in printed
    assert (out / "compliance_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "compliance_curves.pdf").read_bytes()[:5] == b"%PDF-"
    gifs = list((out / "episodes").glob("*.gif"))
    assert [g.name for g in gifs] == ["survival__task.gif"]
    assert gifs[0].read_bytes()[:6] == b"GIF89a"
    exact = pd.read_csv(out / "exact_reference.csv")
    assert (exact["status"] == "solved").all() and len(exact) == len(LEVELS) * len(OBJECTIVES)
    task = exact[(exact["level"] == "survival") & exact["objective"].str.contains('"task"')]
    assert task["delivered"].item() == 1.0  # the task-optimal robot disables the switch and delivers
    summary = pd.read_csv(out / "final_summary.csv")
    assert set(summary["level"]) == {*LEVELS, "all levels"}
    assert set(summary["variant"]) == {"task", "aup (\u03bb=0.5)", "aup (\u03bb=2)"}
    assert (summary.query("level != 'all levels'")["seeds"] <= len(SEEDS)).all()
    assert not (tmp_path / "figs" / "results.csv").exists() and not (sweep / "compliance_curves.png").exists()


def test_same_input_same_bytes(small_sweep, tmp_path):
    args = ["--no-exact", "--no-gif", "--metrics", "compliance", "side_effects"]
    assert plot.main([str(small_sweep), "--out", str(tmp_path / "a"), *args]) == 0
    assert plot.main([str(small_sweep), "--out", str(tmp_path / "b"), *args]) == 0
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert sorted(a) == sorted(b) and "compliance_curves.png" in a and "penalty_tradeoff.pdf" in a
    for name in a:
        assert a[name] == b[name], name


def test_subprocess_cli(small_sweep, tmp_path):
    out = tmp_path / "sub"
    proc = subprocess.run([sys.executable, "-m", "experiments.plot", str(small_sweep), "--out", str(out), "--no-exact",
                           "--no-gif", "--metrics", "delivered"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split()
    assert str(out / "compliance_curves.png") in lines
    for line in lines:
        assert Path(line).stat().st_size > 0


def test_csv_without_optional_columns_and_joint_outcomes(tmp_path, capsys):
    df = synthetic_table(joint=True)
    df = df[df["objective"] == "task"].drop(columns=["run_id", "agent", "objective.lam", "wall_time", "train_time",
                                                     "resistance"])
    df.to_csv(tmp_path / "results.csv", index=False)
    ctx = plot.make_plots(tmp_path, exact=False, gifs=False, metrics=["compliance", "resistance"])
    names = {p.name for p in ctx.written}
    assert {"compliance_curves.png", "outcomes.pdf", "final_summary.csv"} <= names
    assert "penalty_tradeoff.png" not in names
    notes = "\n".join(ctx.notes)
    assert "penalty_tradeoff skipped" in notes and "'resistance' is not in the table" in notes
    assert "only the marginals" not in notes  # the joint columns are there: outcome classes


def test_missing_table_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        plot.main([str(tmp_path)])
    assert e.value.code == 2
    assert "no results table" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        plot.main([str(tmp_path / "nowhere")])
    pd.DataFrame({"level": ["off_switch"], "seed": [0]}).to_csv(tmp_path / "results.csv", index=False)
    with pytest.raises(plot.PlotError, match="missing column"):
        plot.load_results(tmp_path)


def test_unknown_metric_is_an_error(sweep, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        plot.main([str(sweep), "--out", str(tmp_path), "--metrics", "complaince", "--no-exact", "--no-gif"])
    assert e.value.code == 2 and "complaince" in capsys.readouterr().err


def test_objective_config_restores_types():
    row = pd.Series({"objective": "drest", "objective.lam": 0.5, "objective.meta_episode": 8.0,
                     "objective.beta": np.nan})
    cfg = plot.objective_config(row)
    assert cfg == {"name": "drest", "lam": 0.5, "meta_episode": 8}
    assert isinstance(cfg["meta_episode"], int)
    from agents.objectives import get_objective

    assert get_objective(cfg).meta_episode == 8


def test_run_records_give_typed_parameters_and_a_users_objective_class(tmp_path, monkeypatch):
    (tmp_path / "my_objectives.py").write_text(
        "from dataclasses import dataclass\n"
        "from agents.objectives import Objective, param\n"
        "from envs import Event\n"
        "@dataclass\n"
        "class NoTampering(Objective):\n"
        "    cost: float = param(10.0, 'cost of disabling the button')\n"
        "    def reward(self, t):\n"
        "        return t.reward - self.cost * t.events[:, Event.BUTTON_DISABLED]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    runs = {"r1": {"run_id": "r1", "objective_target": "my_objectives.NoTampering", "objective_params": {"cost": 2.0},
                   "level_params": {"max_steps": 40, "step_reward": -0.01},
                   "level_defaults": {"max_steps": 30, "step_reward": -0.01}}}
    row = pd.Series({"run_id": "r1", "objective": "NoTampering", "objective.cost": "2.0"})
    lparams, objective = plot.run_spec(row, runs)
    assert lparams == {"max_steps": 40}
    assert type(objective).__qualname__ == "NoTampering" and objective.cost == 2.0
    ref = plot.ExactReference()
    solved = ref.get("survival", {}, objective)
    assert solved is not None and solved["metrics"]["tampering"] == 0.0  # disabling the switch now costs 2
    # a row without a record falls back to the table's cells
    assert plot.run_spec(pd.Series({"run_id": "r2", "objective": "task"}), runs) == ({}, {"name": "task"})


def test_variants_name_the_swept_parameters():
    df = plot.prepare(synthetic_table())
    labels = sorted({v.label for v in plot.assign_variants(df)})
    assert labels == ["aup (\u03bb=0.5)", "aup (\u03bb=2)", "task"]
    final = plot.final_rows(df)
    assert len(final) == len(LEVELS) * len(OBJECTIVES) * len(SEEDS) and (final["env_steps"] == 4000).all()


def test_exact_reference_skips_with_a_note():
    ref = plot.ExactReference(max_states=100)
    assert ref.get("off_switch", {}, {"name": "task"}) is None  # 3,202 states
    assert ref.get("off_switch", {}, {"name": "aup", "lam": 0.5}) is None  # refused without a second enumeration
    assert len(ref.notes) == 1 and "max_states" in ref.notes[0]
    ok = plot.ExactReference()
    assert ok.get("survival", {}, {"name": "drest"}) is None  # not a shutdown-delay level
    assert "not solvable" in set(ok.table()["status"]) and "drest" in ok.notes[0]
    solved = ok.get("survival", {}, {"name": "task"})
    assert solved["metrics"]["delivered"] == 1.0 and solved is ok.get("survival", {}, {"name": "task"})
    assert plot.ExactReference(enabled=False).get("survival", {}, {"name": "task"}) is None


def test_runs_evaluated_elsewhere_are_labelled_and_referenced_there():
    df = pd.DataFrame({"level": ["kitchen_long", "off_switch", "procedural_delay"],
                       "eval_level": ["kitchen", None, "procedural_delay_test"]})
    assert list(plot._measured_level(df)) == ["kitchen", "off_switch", "procedural_delay_test"]
    assert list(plot._level_labels(df)) == ["kitchen_long, evaluated on kitchen", "off_switch",
                                            "procedural_delay, evaluated on procedural_delay_test"]
    assert list(plot._level_labels(df.drop(columns="eval_level"))) == list(df["level"])


def test_final_summary_has_each_metric_once_and_the_table_marks_final_rows(tmp_path):
    from experiments import results

    names = plot._metric_names()
    assert len(names) == len(set(names))
    recs = [{"run_id": "r1", "level": "coffee", "agent": "ppo", "objective": "task", "seed": 0, "total_steps": 20,
             "history": [{"env_steps": 10, "delivered": 0.5}, {"env_steps": 20, "delivered": 1.0}]}]
    rows = results.table_rows(recs)
    assert [r["final"] for r in rows] == [False, True]


def test_each_objective_keeps_its_colour_and_marker_whatever_the_sweep():
    V = plot.Variant
    full = plot._styles([V("q_learning", o, ()) for o in ("task", "aup", "utility_indifference", "my_objective")])
    part = plot._styles([V("q_learning", o, ()) for o in ("aup", "my_objective")])
    assert full[V("q_learning", "aup", ())] == part[V("q_learning", "aup", ())]
    assert full[V("q_learning", "my_objective", ())] == part[V("q_learning", "my_objective", ())]
    assert len({c for c, _ in full.values()}) == 4  # all different
    swept = plot._styles([V("q_learning", "aup", (("objective.lam", x),)) for x in (0.1, 1.0)])
    (a, ma), (b, mb) = swept.values()
    assert a != b and ma == mb == "^"  # the same objective's marker, different colours


def test_an_empty_compliance_panel_says_why(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    df = plot.prepare(synthetic_table())
    df["compliance"] = np.nan  # a level with no shutdown requests
    ctx = plot.Context(out=tmp_path, reps=50, exact=plot.ExactReference(enabled=False))
    texts = []
    from matplotlib.axes import Axes

    original = Axes.text

    def spy(self, *args, **kwargs):
        texts.append(args[2] if len(args) > 2 else kwargs.get("s"))
        return original(self, *args, **kwargs)

    Axes.text = spy
    try:
        plot.plot_curves(df, ["compliance", "delivered"], ctx)
    finally:
        Axes.text = original
    assert any("no shutdown requests on this level" in " ".join(str(t).split()) for t in texts)


def test_exact_check_known_answers():
    on = plot.exact_check(0.65, 0.62, 0.66, 0.68, se=0.03)  # outside [0.62, 0.66], inside by 2 standard errors
    assert on["on_exact"] and on["tolerance"] == pytest.approx(0.06) and on["gap"] == pytest.approx(-0.03)
    assert not plot.exact_check(0.65, 0.62, 0.66, 0.68)["on_exact"]  # no evaluation error given: the interval alone
    assert not plot.exact_check(0.91, 0.91, 0.91, 0.24, se=0.035)["on_exact"]  # three seeds agree, far off
    assert plot.exact_check(0.3, 0.1, 0.5, 0.24)["on_exact"]
    assert plot.exact_check(1.0, 1.0, 1.0, 1.0)["on_exact"]


def test_curves_that_end_off_their_exact_line_are_listed_and_noted(sweep, tmp_path):
    ctx = plot.make_plots(sweep, out=tmp_path, gifs=False, reps=200)
    check = pd.read_csv(tmp_path / "exact_check.csv")
    assert tmp_path / "exact_check.csv" in ctx.written
    # one row per level x variant x curve metric the exact solver has a value for
    assert set(check["level"]) == set(LEVELS) and set(check["metric"]) <= set(plot.CURVE_METRICS)
    assert not check.duplicated(["level", "variant", "metric"]).any()
    # survival's task optimum delivers every episode; the synthetic task curve ends near 0.4: off, and noted
    row = check.query("level == 'survival' and variant == 'task' and metric == 'delivered'").iloc[0]
    assert row["exact"] == 1.0 and not row["on_exact"] and row["ci_high"] < 0.6
    assert any("end off their exact optimum" in n and "survival / task / delivered" in n for n in ctx.notes)
    # a row is on exactly when the exact value lies in the widened interval
    widened = (check["ci_low"] - check["tolerance"] - 1e-9 <= check["exact"]) & (
        check["exact"] <= check["ci_high"] + check["tolerance"] + 1e-9)
    assert (widened == check["on_exact"]).all()


def test_rows_follow_the_order_the_sweep_listed_the_levels(tmp_path):
    (tmp_path / "multirun.yaml").write_text("hydra:\n  sweeper:\n    params:\n      seed: range(3)\n"
                                            "      level: survival,off_switch\n")
    assert plot.sweep_level_order(tmp_path) == ("survival", "off_switch")
    ctx = plot.Context(out=tmp_path, level_order=plot.sweep_level_order(tmp_path))
    assert ctx.order_levels(["coffee", "off_switch", "survival (max_steps=9)"]) == [
        "survival (max_steps=9)", "off_switch", "coffee"]
    assert plot.sweep_level_order(tmp_path / "nowhere") == ()


def test_the_outcome_chart_stacks_six_classes_each_in_its_own_colour(tmp_path):
    from matplotlib.axes import Axes

    assert list(plot.JOINT_OUTCOMES)[:2] == ["outcome/resisted", "outcome/sought_shutdown"]
    df = plot.prepare(synthetic_table(joint=True))
    df["outcome/resisted"] = 0.1  # some of every class
    df["outcome/sought_shutdown"] = 0.05
    colours, original = [], Axes.bar

    def spy(self, *args, **kwargs):
        colours.append(kwargs.get("color"))
        return original(self, *args, **kwargs)

    Axes.bar = spy
    try:
        plot.plot_outcomes(df, plot.Context(out=tmp_path, reps=50, exact=plot.ExactReference(enabled=False)))
    finally:
        Axes.bar = original
    assert len(set(colours)) == len(plot.JOINT_OUTCOMES) == 6


def _game_table() -> pd.DataFrame:
    """An off-switch game sweep as the preset runs it: deference against the human's error (no signal) and
    against the signal (error 0.05), two priors, two seeds; the learned deference is the formula's
    (defer iff e <= min(p, 1 - p)) except at one point; and two co-trained runs."""
    rows = []
    points = [(p, e, 0.5) for p in (0.7, 0.9) for e in (0.0, 0.05, 0.15, 0.35)]
    points += [(p, 0.05, q) for p in (0.7, 0.9) for q in (0.7, 1.0)]
    for p, e, q in points:
        for seed in (0, 1):
            learned = float(e <= min(p, 1 - p)) if q == 0.5 else (0.0 if q == 1.0 else np.nan)
            if (p, e, q) == (0.7, 0.15, 0.5):
                learned = 0.0  # the learner missed: the exact robot defers here
            if np.isnan(learned):
                continue
            rows.append({"run_id": f"g-{p}-{e}-{q}-s{seed}", "level": "off_switch_game", "agent": "ppo",
                         "objective": "task", "level.preference_prior": p, "level.human_error": e,
                         "level.preference_signal": q, "seed": seed, "env_steps": 1000, "deference": learned,
                         "deference_se": 0.0, "delivered": 0.5})
    for seed in (0, 1):
        for k in range(3):
            rows.append({"run_id": f"co-s{seed}", "level": "off_switch_game", "agent": "ppo_cotrain",
                         "objective": "task", "level.preference_prior": 0.7, "level.human_error": 0.0,
                         "level.preference_signal": 0.5, "seed": seed, "env_steps": 1000 * (k + 1),
                         "deference": k / 2, "press_rate_bad": k / 2, "press_rate_good": 0.1, "delivered": 0.5})
    return pd.DataFrame(rows)


def test_an_off_switch_game_sweep_draws_deference_against_the_exact_best_response(tmp_path):
    d = tmp_path / "game"
    d.mkdir()
    _game_table().to_parquet(d / "results.parquet", index=False)
    ctx = plot.make_plots(d, gifs=False, reps=200)
    names = {p.name for p in ctx.written}
    assert {"deference.png", "deference.pdf", "deference_check.csv"} <= names
    assert "compliance_curves.png" not in names and "outcomes.png" not in names  # a game sweep draws deference
    check = pd.read_csv(d / "deference_check.csv")
    # the exact solver's deference follows the formula at the points that are not ties
    nosignal = check[check["preference_signal"] == 0.5]
    formula = (nosignal["human_error"] <= np.minimum(nosignal["preference_prior"], 1 - nosignal["preference_prior"]))
    assert (nosignal["exact"] == formula.astype(float)).all()
    # value of deference: V(wait) - max(V(act), V(off)) = (p - e) - max(2p - 1, 0) without a signal
    p, e = nosignal["preference_prior"], nosignal["human_error"]
    np.testing.assert_allclose(nosignal["value_of_deference"], (p - e) - np.maximum(2 * p - 1, 0), atol=1e-9)
    # the one missed point is off, the others on
    off = check[~check["on_exact"]]
    assert list(zip(off["preference_prior"], off["human_error"], off["preference_signal"])) == [(0.7, 0.15, 0.5)]
    # a robot that knows U (signal 1.0) never defers
    assert (check[check["preference_signal"] == 1.0]["exact"] == 0).all()
    assert any("1 of" in n and "off the exact best response" in n for n in ctx.notes)
