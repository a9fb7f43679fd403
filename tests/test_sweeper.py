"""``hydra/sweeper=union`` (experiments.sweeper): a sweep as the union of several grids."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from experiments.sweeper import union_jobs

ROOT = Path(__file__).resolve().parents[1]


def test_union_of_grids_known_answer():
    jobs = union_jobs({"seed": "0,1"}, [{"a": "1,2", "b": "x"}, {"a": "3", "b": "x,y"}], [])
    assert jobs == [["seed=0", "a=1", "b=x"], ["seed=0", "a=2", "b=x"], ["seed=1", "a=1", "b=x"],
                    ["seed=1", "a=2", "b=x"], ["seed=0", "a=3", "b=x"], ["seed=0", "a=3", "b=y"],
                    ["seed=1", "a=3", "b=x"], ["seed=1", "a=3", "b=y"]]


def test_a_point_two_grids_share_runs_once_and_the_command_line_wins():
    jobs = union_jobs({"seed": "0"}, [{"a": "1,2"}, {"a": "2,3"}], [])
    assert jobs == [["seed=0", "a=1"], ["seed=0", "a=2"], ["seed=0", "a=3"]]
    # the command line replaces the key in params and in every grid
    jobs = union_jobs({"seed": "0"}, [{"a": "1,2"}, {"a": "3"}], ["seed=5,6", "a=9"])
    assert jobs == [["seed=5", "a=9"], ["seed=6", "a=9"]]
    # without grids: the basic sweeper's grid (and, as the basic sweeper, duplicates kept on request)
    assert union_jobs({"seed": "0,1"}, None, ["b=2"]) == [["seed=0", "b=2"], ["seed=1", "b=2"]]
    assert union_jobs(None, None, ["seed=0,0"], dedupe=False) == [["seed=0"], ["seed=0"]]


def test_a_grid_that_is_not_a_mapping_is_an_error():
    from hydra.errors import HydraException

    with pytest.raises(HydraException, match=r"grids\[1\] must be a mapping"):
        union_jobs({}, [{"a": "1"}, "a=2"], [])


def test_the_app_runs_the_union(tmp_path):
    sweep = tmp_path / "sweep"
    args = [sys.executable, "-m", "experiments.train", "-m", "hydra/sweeper=union",
            "hydra.sweeper.grids=[{level: coffee, objective: task}, {level: survival, objective: 'task,harm_penalty'}]",
            "agent=q_learning", "total_steps=2000", "eval_every=1000", "eval_episodes=8", "save_policy=false",
            "exact_cache=false", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "3 done" in proc.stdout + proc.stderr
    runs = pd.read_parquet(sweep / "results.parquet").drop_duplicates("run_id")
    assert sorted(zip(runs["level"], runs["objective"])) == [("coffee", "task"), ("survival", "harm_penalty"),
                                                             ("survival", "task")]
