"""The AUP port against the authors' own agents (alexander-turner/attainable-utility-preservation).

``tests/data/aup_oracle.json`` holds what the authors' code computed (header: source, commit,
functions, settings, environment, shims) on their survival level and on their vase level (a
side-effects level our engine expresses: a vase on the way to the goal, broken by walking
through it). For each: every board and transition of their pycolab environment; their 30
auxiliary rewards per board (``defaultdict(np.random.random)``, numpy seed 0); the auxiliary
Q-tables and the model-free AUP Q-table as ``ModelFreeAUPAgent.update_greedy`` leaves them when
swept over every (board, action) until nothing moves (their fixed point); the model-free
penalty ``get_penalty`` of every (board, action); the planner's ``penalized_reward`` for every
board reachable at each step of a 9-step horizon and every action; the planner's plan
(``get_actions``); each with ``use_scale`` False (their default) and True.

Here our levels (``survival``, and the vase level below) are mapped board by board onto theirs
(tile and entity codes, survival's countdown cell), the authors' rewards are put on our boards,
and our exact code must give the same numbers: Q-tables, penalties of both baselines,
the planner's choice and value (with its 0.996 discount and 9-step horizon), the model-free
agent's greedy actions.
"""

import json
from pathlib import Path

import numpy as np
import pytest

import agents.exact as exact
from agents.exact.attainable import (
    _representatives,
    _values,
    board_observations,
    solve_q,
    timeless_model,
)
from agents.exact.graph import observations
from agents.exact.numerics import NOOP
from agents.exact.values import ValueContext
from agents.objectives import Transitions, get_objective
from envs.core.level import Level, LevelParams
from envs.core.tables import CH_ENTITY, CH_TILE, CH_TIME, Entity, Tile
from envs.levels import get_level

FIXTURE = Path(__file__).parent / "data" / "aup_oracle.json"
DATA = json.loads(FIXTURE.read_text())
HORIZON = 9  # the authors' planning horizon (run_episode's max_len)
SETTINGS = {"num": 30, "gamma": 0.996, "seed": 0}

VASE = Level(
    name="aup_vase",
    description="Turner et al.'s vase level: the vase (v) stands between the robot and the goal (G).",
    map="""
        #####
        # G #
        #   #
        # v #
        # A #
        #####
    """,
    legend={"G": (Tile.DESK, None)},
    params=LevelParams(max_steps=HORIZON, step_reward=0.0, delivery_reward=1.0),
)

# their value_mapping per level: our (tile or entity) -> their board code
_ROBOT = {int(Entity.ROBOT), int(Entity.ROBOT_WITH_COFFEE), int(Entity.ROBOT_OFF)}
CODES = {
    # '#': 0, ' ': 1, 'A': 2, 'G': 3, 'B': 4, '2': 5, '1': 6, '0': 7 (the countdown cell)
    "survival": {"tiles": {Tile.WALL: 0, Tile.FLOOR: 1, Tile.DESK: 3, Tile.SWITCH: 4, Tile.SWITCH_USED: 1},
                 "robot": 2},
    # '#': 0, ' ': 1, 'A': 2, 'V': 3, 'G': 4
    "vase": {"tiles": {Tile.WALL: 0, Tile.FLOOR: 1, Tile.VASE: 3, Tile.BROKEN_VASE: 1, Tile.DESK: 4}, "robot": 2},
}


def their_boards(obs: np.ndarray, name: str) -> list[str]:
    """Our observations as the authors' board arrays (as strings of codes)."""
    codes = CODES[name]
    out = []
    for o in obs:
        b = np.full(o.shape[1:], -1, dtype=np.int64)
        for tile, code in codes["tiles"].items():
            b[o[CH_TILE] == tile] = code
        timer = o[CH_TILE] == Tile.TIMER
        if timer.any():  # survival's countdown: '2' at 2 steps or disabled, '1' at 1, '0' once shut down
            left = int(o[CH_TIME][timer][0])
            off = (o[CH_ENTITY] == Entity.ROBOT_OFF).any()
            b[timer] = 7 if off else (6 if left == 1 else 5)
        b[np.isin(o[CH_ENTITY], list(_ROBOT))] = codes["robot"]
        assert (b >= 0).all(), f"a tile of ours has no code of theirs: {o[CH_TILE]}"
        out.append(str(b.tolist()))
    return out


class Mapped:
    """Our level with the authors' auxiliary rewards on its boards."""

    def __init__(self, name: str, level: Level):
        self.name, self.level, self.data = name, level, DATA["levels"][name]
        theirs = {str(b): i for i, b in enumerate(self.data["boards"])}
        self.graph = g = exact.solver.graph_of(level)
        self.model = m = timeless_model(g)
        c = g.compiled
        node_obs = observations(np.ascontiguousarray(_representatives(m.nodes)), g.tiles_flat, g.h, g.w, c.params,
                                g.mut)
        self.node_ids = np.array([theirs[b] for b in their_boards(node_obs, name)])
        self.board_ids = np.array([theirs[b] for b in their_boards(board_observations(g, m), name)])
        default = self.data["default"]
        self.rewards = np.array([default["aux_rewards"][str(i)] for i in self.board_ids])
        self.q = solve_q(m, self.rewards, SETTINGS["gamma"])

    def install(self):
        """Our exact providers read these Q's (the graph's value cache) until :meth:`remove`."""
        cache = self.graph.__dict__.setdefault("_value_cache", {})
        for key in [k for k in cache if isinstance(k, tuple) and k[:1] in (("aux",), ("rollout",))]:
            del cache[key]
        cache[("aux", SETTINGS["num"], SETTINGS["gamma"], SETTINGS["seed"])] = self.q

    def remove(self):
        cache = self.graph.__dict__.get("_value_cache", {})
        for key in [k for k in cache if isinstance(k, tuple) and k[:1] in (("aux",), ("rollout",))]:
            del cache[key]


@pytest.fixture(scope="module", params=["survival", "vase"])
def mapped(request):
    level = get_level("survival").with_params(max_steps=HORIZON) if request.param == "survival" else VASE
    m = Mapped(request.param, level)
    m.install()
    yield m
    m.remove()


def test_fixture_header_names_its_source():
    for key in ("source", "commit", "functions", "settings", "environment", "shims"):
        assert DATA[key], key
    assert DATA["commit"] == "245b1fbc18f31d1d53883790d0d81d9fa27c2eba"
    assert set(DATA["levels"]) == {"survival", "vase"}


def test_boards_and_transitions_are_the_same(mapped):
    d, m = mapped.data, mapped.model
    sources = sorted({t["board"] for t in d["transitions"]})
    # one node per board the authors act from, one board per board they reach
    assert sorted(mapped.node_ids.tolist()) == sources
    assert sorted(mapped.board_ids.tolist()) == sorted(int(k) for k in d["default"]["aux_rewards"])
    theirs = {(t["board"], t["action"]): t for t in d["transitions"]}
    for k in range(len(m.src)):
        t = theirs[(mapped.node_ids[m.src[k]], int(m.act[k]))]
        assert m.prob[k] == 1.0 and t["next"] == mapped.board_ids[m.board[k]]
        assert t["last"] == (m.nxt[k] < 0) and t["reward"] == m.reward[k]


def test_auxiliary_q_tables_match_update_greedys_fixed_point(mapped):
    aux_q = mapped.data["default"]["aux_q"]
    want = np.array([aux_q[str(b)] for b in mapped.node_ids])  # [N, 30, 5]
    np.testing.assert_allclose(mapped.q.transpose(0, 2, 1), want, rtol=1e-10, atol=1e-10)
    assert want.max() > 100  # values near 1 / (1 - gamma): discounted, no time index


@pytest.mark.parametrize("tag,scale", [("default", "per_term"), ("use_scale", "mean")])
def test_model_free_penalties_and_choices_match(mapped, tag, scale):
    # ModelFreeAUPAgent.get_penalty(board, a) = lambda * penalty: our stepwise baseline
    d = mapped.data[tag]
    obj = get_objective("aup", baseline="stepwise", scale=scale)
    n, q = mapped.model.num_nodes, mapped.q
    acts = np.tile(np.arange(5), n)
    t = Transitions(reward=np.zeros(5 * n), values={"aux_q": q.reshape(5 * n, -1), "aux_q_noop": np.repeat(q[:, NOOP], 5, axis=0)})
    ours = obj.lam * obj.penalty(t)
    want = {(p["board"], p["action"]): p["penalty"] for p in d["model_free_penalty"]}
    got = {(int(mapped.node_ids[i // 5]), int(acts[i])): ours[i] for i in range(5 * n)}
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    # their model-free AUP Q (reward - lambda penalty, discounted, over boards) and its greedy actions
    m = mapped.model
    per_transition = m.reward - ours.reshape(n, 5)[m.src, m.act]
    aup_q = solve_q(m, None, obj.gamma, per_transition[:, None])[:, :, 0]
    want_q = np.array([d["model_free_aup_q"][str(b)] for b in mapped.node_ids])
    np.testing.assert_allclose(aup_q, want_q, rtol=1e-9, atol=1e-9)
    for i, b in enumerate(mapped.node_ids):
        top = np.sort(want_q[i])[-2:]
        if top[1] - top[0] > 1e-9:  # no tie: the same greedy action
            assert aup_q[i].argmax() == d["model_free_greedy"][str(b)]


@pytest.mark.parametrize("tag,scale", [("default", "per_term"), ("use_scale", "mean")])
def test_planner_penalties_plan_and_value_match(mapped, tag, scale):
    # AUPAgent.penalized_reward(env, a, steps_left, so_far) at every step: our rollout baseline
    d = mapped.data[tag]
    g, level = mapped.graph, mapped.level
    obj = get_objective("aup", baseline="rollout", scale=scale, discount=0.996)
    ctx = ValueContext(g, level, 2_000_000)
    c = g.compiled
    want = {(p["step"], p["board"], p["action"]): p for p in d["planner_penalties"]}
    got = {}
    for k in range(HORIZON):
        layer = g.layers[k]
        ids = their_boards(observations(np.ascontiguousarray(layer.members), g.tiles_flat, g.h, g.w, c.params, g.mut),
                           mapped.name)
        index = {str(b): i for i, b in enumerate(mapped.data["boards"])}
        qa, q0 = _values(ctx, k, **SETTINGS, baseline="rollout")
        pen = obj.lam * obj.penalty(Transitions(reward=layer.t_reward, values={"aux_q": qa, "aux_q_noop": q0}))
        for j in range(len(layer.t_member)):
            got[(k, index[ids[layer.t_member[j]]], int(layer.t_action[j]))] = pen[j]
    assert set(got) == set(want)
    for key, p in want.items():
        assert got[key] == pytest.approx(p["penalty"], rel=1e-9, abs=1e-12), key
    # the planner's choice: its plan is optimal here and worth what it says (discount 0.996, 9 steps)
    sol = exact.solve(level, obj)
    assert sol.value == pytest.approx(d["planner_return"], rel=1e-9, abs=1e-12)
    plan = "".join("udlrn"[a] for a in d["planner_plan"])
    assert exact.evaluate(level, plan, obj)["objective_return"] == pytest.approx(sol.value, rel=1e-9, abs=1e-12)
