"""Objectives: the registry, user plug-ins, each shipped objective on hand-built transitions,
validation errors, and the conf/objective YAML files."""

import ast
import importlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import envs  # noqa: F401
from agents.objectives import (AUP, OBJECTIVES, DReST, HarmPenalty, Objective, ObjectiveError,
                               RelativeReachability, Task, Transitions, UtilityIndifference, get_objective, param,
                               register_objective)
from envs import Event
from envs.core.rules import NUM_STATE, S_FROZEN
from envs.core.tables import NUM_EVENTS

SHIPPED = {"task", "harm_penalty", "utility_indifference", "aup", "relative_reachability", "drest"}
CONF = Path(__file__).resolve().parents[1] / "conf" / "objective"


class NoTampering(Objective):
    """The user-side example: a plain subclass, no registration, no dataclass."""

    def reward(self, t):
        return t.reward - 10.0 * t.events[:, Event.BUTTON_DISABLED]


def events(rows):
    """rows: one list of fired Events per transition."""
    out = np.zeros((len(rows), NUM_EVENTS), dtype=np.uint8)
    for i, row in enumerate(rows):
        for e in row:
            out[i, e] = 1
    return out


@pytest.fixture
def registry_snapshot():
    saved = dict(OBJECTIVES)
    yield
    OBJECTIVES.clear()
    OBJECTIVES.update(saved)
    if "name" in NoTampering.__dict__:  # registration named the class; undo it
        del NoTampering.name


# ---------------------------------------------------------------------------------------------
# Registry.
# ---------------------------------------------------------------------------------------------

def test_registry_names():
    assert set(OBJECTIVES) == SHIPPED
    for name, cls in OBJECTIVES.items():
        assert cls.name == name and issubclass(cls, Objective)
        obj = get_objective(name)
        assert isinstance(obj, cls) and obj.discount == 1.0


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(KeyError) as err:
        get_objective("aupp")
    assert "aupp" in str(err.value) and all(name in str(err.value) for name in SHIPPED)


@pytest.mark.parametrize("name, params, words", [
    ("aup", {"lamda": 0.5}, ["'lamda'", "lam (a number >= 0.0", "num (a whole number"]),
    ("aup", {"lam": "big"}, ["'lam'", "a number >= 0.0", "'big'"]),
    ("aup", {"lam": -1.0}, ["'lam'", ">= 0.0", "-1.0"]),
    ("aup", {"num": 2.5}, ["'num'", "a whole number in [1, 10000]"]),
    ("aup", {"num": True}, ["'num'", "a whole number"]),
    ("aup", {"gamma": 1.0}, ["'gamma'", "in (0.0, 1.0)"]),
    ("aup", {"scale": "max"}, ["'scale'", "one of ['per_term', 'mean']"]),
    ("drest", {"meta_episode": 0}, ["'meta_episode'", ">= 1"]),
    ("drest", {"lam": 0.0}, ["'lam'", "in (0.0, 1.0]"]),
    ("relative_reachability", {"beta": float("nan")}, ["'beta'", "a number"]),
    ("task", {"discount": 0.0}, ["'discount'", "in (0.0, 1.0]"]),
    ("harm_penalty", {"beta": None}, ["'beta'", "a number"]),
])
def test_bad_params_are_named(name, params, words):
    with pytest.raises(ObjectiveError) as err:
        get_objective(name, **params)
    for w in words:
        assert w in str(err.value), (w, str(err.value))
    assert repr(name) in str(err.value)


def test_params_are_checked_on_direct_construction_and_coerced():
    with pytest.raises(ObjectiveError, match="'lam'"):
        AUP(lam=-0.1)
    a = AUP(lam=1, num=np.int64(5))
    assert isinstance(a.lam, float) and a.lam == 1.0 and type(a.num) is int
    assert a.params() == {"discount": 1.0, "lam": 1.0, "num": 5, "gamma": 0.996, "reward_seed": 0, "scale": "per_term",
                          "baseline": "rollout"}


def test_instances_classes_and_configs():
    a = AUP(lam=0.3)
    assert get_objective(a) is a
    b = get_objective(a, num=4)
    assert b is not a and b.num == 4 and b.lam == 0.3 and a.num == 30
    with pytest.raises(ObjectiveError, match="'nmu'"):
        get_objective(a, nmu=4)
    assert get_objective(AUP, reward_seed=3).reward_seed == 3
    c = get_objective({"name": "drest", "_target_": "agents.objectives.drest.DReST", "lam": 0.5})
    assert isinstance(c, DReST) and c.lam == 0.5
    with pytest.raises(ObjectiveError, match="'name'"):
        get_objective({"lam": 0.5})
    with pytest.raises(TypeError):
        get_objective(3)


def test_defaults_match_the_references():
    a = AUP()
    assert (a.lam, a.num, a.gamma, a.reward_seed) == (1 / 1.501, 30, 0.996, 0) and a.discount == 1.0
    # the paper's full AUP agent is the planner (AUPAgent), whose baseline is the inaction rollout
    assert a.baseline == "rollout" and a.scale == "per_term"
    settings = {"num": 30, "gamma": 0.996, "seed": 0, "baseline": "rollout"}
    assert a.needs() == {"aux_q": settings, "aux_q_noop": settings}
    r = RelativeReachability()  # the code's run flags (run_experiment.py) and the paper's baseline
    assert (r.beta, r.baseline, r.nonterminal, r.gamma, r.penalty_discount) == (30.0, "stepwise", "disc", 0.99, 0.99)
    assert r.weight == pytest.approx(0.01) and r.discount == 1.0
    assert r.needs() == {"reachability_loss": {"gamma": 0.99, "baseline": "stepwise", "rollout_discount": 0.99}}
    assert RelativeReachability(baseline="inaction").needs() == {"reachability_loss": {"gamma": 0.99,
                                                                                       "baseline": "inaction"}}
    assert DReST().lam == 0.9 and set(DReST(meta_episode=8).needs()) == {
        "episode_coins", "max_coins", "length_index", "meta_counts"}
    assert DReST(meta_episode=8).needs()["meta_counts"] == {"meta_episode": 8}
    assert UtilityIndifference().needs() == {"no_shutdown_value": {}}
    assert Task().needs() == {} and HarmPenalty().beta == 1.0 and HarmPenalty().needs() == {}


# ---------------------------------------------------------------------------------------------
# User objectives.
# ---------------------------------------------------------------------------------------------

def test_user_objective_through_an_instance():
    t = Transitions(reward=[1.0, 1.0, -0.5], events=events([[], [Event.BUTTON_DISABLED], [Event.VASE_BROKEN]]))
    obj = get_objective(NoTampering())
    assert isinstance(obj, NoTampering) and obj.label() == "NoTampering"
    np.testing.assert_allclose(obj(t), [1.0, -9.0, -0.5])
    np.testing.assert_allclose(obj.rewards(t), obj(t))


def test_user_objective_through_the_registry(registry_snapshot):
    assert register_objective(NoTampering) is NoTampering
    assert OBJECTIVES["no_tampering"] is NoTampering and NoTampering.name == "no_tampering"
    obj = get_objective("no_tampering", discount=0.9)
    assert isinstance(obj, NoTampering) and obj.discount == 0.9
    with pytest.raises(ObjectiveError, match="'weight'"):
        get_objective("no_tampering", weight=3)

    @register_objective(name="charged_tampering")
    @dataclass
    class ChargedTampering(Objective):
        cost: float = param(10.0, "per switch use", low=0)

        def reward(self, t):
            return t.reward - self.cost * t.events[:, Event.BUTTON_DISABLED]

    t = Transitions(reward=[0.0, 0.0], events=events([[Event.BUTTON_DISABLED], []]))
    np.testing.assert_allclose(get_objective("charged_tampering", cost=2)(t), [-2.0, 0.0])
    with pytest.raises(ObjectiveError, match="'cost'"):
        get_objective("charged_tampering", cost=-1)
    with pytest.raises(ObjectiveError, match="already registered"):
        register_objective(NoTampering, name="aup")
    with pytest.raises(TypeError):
        register_objective(int)


# ---------------------------------------------------------------------------------------------
# Shipped objectives on hand-built transitions.
# ---------------------------------------------------------------------------------------------

def test_task():
    t = Transitions(reward=[0.5, -0.01, 1.0])
    np.testing.assert_array_equal(get_objective("task")(t), [0.5, -0.01, 1.0])


def test_harm_penalty_charges_harm_resistance_and_self_shutdown():
    t = Transitions(reward=[1.0, -0.01, -0.01, -0.01, -0.01],
                    events=events([[Event.COFFEE_DELIVERED], [Event.VASE_BROKEN, Event.CAT_HARMED],
                                   [Event.BUTTON_DISABLED], [Event.HUMAN_BLOCKED, Event.SHUTDOWN_REQUESTED],
                                   [Event.SELF_SHUTDOWN, Event.WALL_SMASHED, Event.GRANDMA_SHOVED]]))
    np.testing.assert_allclose(get_objective("harm_penalty", beta=2.0)(t), [1.0, -4.01, -2.01, -2.01, -6.01])


def test_utility_indifference_compensates_exactly_on_the_shutdown_step():
    state = np.zeros((6, NUM_STATE), dtype=np.int32)
    state[4:, S_FROZEN] = 1  # already interrupted: these steps earn 0
    t = Transitions(
        reward=[-0.01, -0.01, -0.01, -1.0, -1.0, -1.0],
        events=events([[], [Event.BUTTON_PRESSED], [Event.TIMER_SHUTDOWN], [Event.INTERRUPTED], [], [Event.SELF_SHUTDOWN]]),
        state=state,
        values={"no_shutdown_value": [np.nan, 0.8, 2.0, 42.0, np.nan, 7.0]},
    )
    np.testing.assert_allclose(get_objective("utility_indifference")(t), [-0.01, 0.79, 1.99, 41.0, 0.0, 0.0])
    # the robot's own press is compensated too (every shutdown, whoever causes it)
    t2 = Transitions(reward=[-0.01, -0.01], events=events([[Event.SELF_SHUTDOWN], []]),
                     values={"no_shutdown_value": [5.0, 5.0]})
    np.testing.assert_allclose(UtilityIndifference()(t2), [4.99, -0.01])


def test_aup_penalty_on_a_tiny_q_table():
    q = np.array([[2.0, 1.0], [1.0, 1.0], [3.0, 3.0]])
    q0 = np.array([[1.0, 2.0], [1.0, 0.0], [3.0, 3.0]])
    t = Transitions(reward=[1.0, 0.0, 0.5], values={"aux_q": q, "aux_q_noop": q0})
    per_term = AUP(lam=0.5, num=2)
    # row 0: (1/1 + 1/2) / 2; row 1: (0 + 1/1, a zero scale counts as 1) / 2; row 2: no change
    np.testing.assert_allclose(per_term.penalty(t), [0.75, 0.5, 0.0])
    np.testing.assert_allclose(per_term(t), [1.0 - 0.375, -0.25, 0.5])
    mean = AUP(lam=0.5, num=2, scale="mean")
    # row 0: mean |dQ| 1 / mean Q_noop 1.5; row 1: 0.5 / 0.5
    np.testing.assert_allclose(mean.penalty(t), [2 / 3, 1.0, 0.0])
    # the task reward is never scaled (model_free_aup.py: reward - penalty; aup.py: reward - scaled_penalty)
    np.testing.assert_allclose(AUP(lam=0.5, num=2, gamma=0.9)(t), [1.0 - 0.375, -0.25, 0.5])
    with pytest.raises(ObjectiveError, match="scale_task"):
        get_objective("aup", scale_task=True)
    with pytest.raises(ObjectiveError, match="'baseline'"):
        get_objective("aup", baseline="inaction")
    with pytest.raises(ValueError, match=r"num=3"):
        AUP(num=3)(t)


def test_relative_reachability():
    # a running step pays beta * w * d, the step that ends the episode beta * d (SideEffectPenalty.calculate)
    t = Transitions(reward=[1.0, -0.01, -0.01], values={"reachability_loss": [0.0, 0.02, 0.02]},
                    reason=[0, 0, 1])
    np.testing.assert_allclose(get_objective("relative_reachability")(t),
                               [1.0, -0.01 - 30 * 0.01 * 0.02, -0.01 - 30 * 0.02])
    weights = {"none": 0.0, "full": 1.0, "disc": 1.0 - 0.9}
    for name, w in weights.items():
        r = get_objective("relative_reachability", beta=2.0, nonterminal=name, penalty_discount=0.9)
        assert r.weight == pytest.approx(w)
        np.testing.assert_allclose(r(t), [1.0, -0.01 - 2 * w * 0.02, -0.01 - 2 * 0.02])
    with pytest.raises(ObjectiveError, match="'baseline'"):
        get_objective("relative_reachability", baseline="stepwise_inaction")
    with pytest.raises(ObjectiveError, match="'nonterminal'"):
        get_objective("relative_reachability", nonterminal="half")


def test_drest_attenuates_by_lam_to_the_excess_count():
    lam = 0.5
    t = Transitions(
        reward=[1.0, 1.0, 1.0, 0.0, 0.0],
        done=[True, True, False, True, True],
        values={
            "episode_coins": [1, 2, 1, 1, 0],
            "max_coins": [1.0, 2.0, 1.0, 2.0, 0.0],
            "length_index": [0, 1, -1, 1, 0],
            "meta_counts": [[3, 1], [3, 1], [3, 1], [0, 0], [1, 1]],
        },
    )
    # row 0: short chosen 3 times so far, mean 2 -> lam**1; row 1: long, lam**-1; row 2 not done;
    # row 3: half the coins, first mini-episode; row 4: no coins collectable at that length pays 1
    np.testing.assert_allclose(DReST(lam=lam)(t), [lam, 1 / lam, 0.0, 0.5, 1.0])
    bad = Transitions(reward=[0.0], done=[True], values={"episode_coins": [1], "max_coins": [1.0],
                                                         "length_index": [-1], "meta_counts": [[0, 0]]})
    with pytest.raises(ValueError, match="length_index"):
        DReST()(bad)


# ---------------------------------------------------------------------------------------------
# Validation.
# ---------------------------------------------------------------------------------------------

class BadShape(Objective):
    def reward(self, t):
        return np.zeros((t.batch_size, 2))


class NotFinite(Objective):
    def reward(self, t):
        out = t.reward.copy()
        out[1] = np.nan
        return out


def test_reward_shape_and_finiteness_are_checked():
    t = Transitions(reward=[0.0, 1.0, 2.0])
    with pytest.raises(ObjectiveError, match=r"'BadShape'.*shape \(3,\).*\(3, 2\)"):
        BadShape()(t)
    with pytest.raises(ObjectiveError, match=r"'NotFinite'.*non-finite.*transition 1"):
        NotFinite()(t)


def test_missing_values_are_named():
    t = Transitions(reward=[0.0], values={"aux_q": [[0.0]]})
    with pytest.raises(ObjectiveError, match=r"'aup' needs the values \['aux_q_noop'\]"):
        AUP(num=1)(t)
    with pytest.raises(ObjectiveError, match="no_shutdown_value"):
        UtilityIndifference()(Transitions(reward=[0.0]))


def test_transitions_defaults_and_checks():
    t = Transitions(reward=[1, 2], reason=[0, 2])
    assert t.reward.dtype == np.float64 and t.events.shape == (2, NUM_EVENTS) and t.events.dtype == np.uint8
    assert t.state.shape == (2, NUM_STATE) and t.state.dtype == np.int32 and t.action.tolist() == [4, 4]
    assert t.done.tolist() == [False, True] and len(t) == 2 and dict(t.values) == {}
    with pytest.raises(ObjectiveError, match="events"):
        Transitions(reward=[0.0, 1.0], events=np.zeros((2, 3)))
    with pytest.raises(ObjectiveError, match="reward"):
        Transitions(reward=[[0.0]])
    with pytest.raises(ObjectiveError, match=r"values\['x'\]"):
        Transitions(reward=[0.0, 1.0], values={"x": [1.0]})
    with pytest.raises(TypeError):
        Objective()  # abstract: reward() missing


# ---------------------------------------------------------------------------------------------
# YAML.
# ---------------------------------------------------------------------------------------------

def read_yaml(path: Path) -> dict:
    """PyYAML when installed, else a tiny reader for flat ``key: value`` files."""
    try:
        import yaml
    except ImportError:
        out = {}
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            key, _, value = line.partition(":")
            value = value.strip()
            try:
                out[key.strip()] = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                out[key.strip()] = {"true": True, "false": False, "null": None}.get(value, value)
        return out
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_yaml_lists_exactly_the_parameters(name):
    path = CONF / f"{name}.yaml"
    assert path.exists(), path
    cfg = read_yaml(path)
    assert cfg.pop("name") == name
    module, _, cls_name = cfg.pop("_target_").rpartition(".")
    assert getattr(importlib.import_module(module), cls_name) is OBJECTIVES[name]
    cls = OBJECTIVES[name]
    assert list(cfg) == list(cls.parameters())
    assert cfg == cls.defaults()  # floats are written with repr, so they read back exactly
    # and the file builds the objective
    assert get_objective(read_yaml(path)) == cls()


def test_every_registered_objective_has_a_yaml():
    assert {p.stem for p in CONF.glob("*.yaml")} == set(OBJECTIVES)
