"""The reachable graph of a level: every state, every random outcome with its probability.

Built from the engine's own numba rules (:func:`envs.core.rules.transition` and
:func:`envs.core.rules.outcome_probabilities`), never a copy of them.

States. An underlying state is the engine's state row (columns ``S_*``) plus a bitmask of the
level's one-shot cells that have been used (switch, vase, fragile wall, delay button, coins):
the rest of the grid never changes, and the button and interruption tiles follow ``S_DISABLED``.
Time is a column, so the graph is layered by step and acyclic.

What the robot knows. The robot acts on what it observes. Where the request flag is hidden
(``request_observable=False``), the requested and frozen bits are not observed; on a preference
level (``request="preference"``, the off-switch game of Hadfield-Menell et al., IJCAI 2017) the
human's utility U of the robot's plan (``S_PREFERENCE``) is not observed, while the robot's
signal of it (``S_SIGNAL``) is. A decision node is then an *information state*: the observed
part of the state plus a belief, the probability of each combination of the hidden columns
(:attr:`Graph.hidden_spec`) given the observations so far. Where everything is observed the
belief is a single certain combination and an information state is a state. The start states
are drawn as the engine draws them (each layout with probability 1/K, then U and the signal),
and start states that look alike form one information state whose belief is the posterior of
U given the signal. Successors of (information state, action) that look the same to the robot
form one next information state, whose belief is Bayes' rule over the underlying successors.
The built-in human's answer to the robot's plan is a random outcome like the request draw
(its probability depends on U), so the robot never decides on U itself.

Layer ``t`` holds the information states at step ``t``; each transition is one (member state,
action, outcome) with its probability ``weight(member) * p(outcome)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit

from envs.core.level import P_CHANNELS, CompiledLevel, P_REQUEST_OBSERVABLE
from envs.core.rules import (
    NUM_STATE,
    S_DISABLED,
    S_FROZEN,
    S_LAYOUT,
    S_PREFERENCE,
    S_REQUESTED,
    S_SIGNAL,
    outcome_probabilities,
    reset_env,
    transition,
    write_obs,
)
from envs.core.tables import (
    AFTER_ENTER,
    HUMAN_SCRIPTED,
    NUM_ACTIONS,
    NUM_EVENTS,
    ON_ENTER,
    Effect,
    Tile,
)

#: Column of the used-cells bitmask after the state columns in a key row.
K_MASK = NUM_STATE
KEY_COLS = NUM_STATE + 1
MAX_MUTABLE = 62  # one-shot cells per layout (bits of an int64 mask)
_MAX_OUTCOMES = 10  # request bit (2) x cat move (5)
_BUTTON, _BUTTON_OFF, _INTERRUPT, _FLOOR = int(Tile.BUTTON), int(Tile.BUTTON_DISABLED), int(Tile.INTERRUPT), int(Tile.FLOOR)
_BELIEF_SCALE = 1e9  # beliefs are compared after rounding to this many parts
#: Hidden columns and their values: the request and frozen bits where the request is hidden, U
#: on a preference level (a combination's index counts through them, the first fastest).
HIDDEN_REQUEST = ((S_REQUESTED, (0, 1)), (S_FROZEN, (0, 1)))
HIDDEN_PREFERENCE = ((S_PREFERENCE, (1, -1)),)


class LevelTooLarge(ValueError):
    """The level has more reachable states than the solver was allowed to enumerate."""


def mutable_cells(c: CompiledLevel) -> np.ndarray:
    """int64 [K, M]: flat indices of each layout's one-shot cells (-1 pads)."""
    one_shot = np.array([ON_ENTER[t] != Effect.NONE and AFTER_ENTER[t] != t for t in range(len(Tile))])
    cells = [np.flatnonzero(one_shot[c.tiles[k].reshape(-1)]) for k in range(c.num_layouts)]
    m = max((len(x) for x in cells), default=0)
    if m > MAX_MUTABLE:
        raise LevelTooLarge(f"level {c.name!r} has a layout with {m} one-shot cells (switch, vase, fragile wall, "
                            f"delay button, coins); the solver supports at most {MAX_MUTABLE}")
    out = np.full((c.num_layouts, max(m, 1)), -1, dtype=np.int64)
    for k, x in enumerate(cells):
        out[k, :len(x)] = x
    return out


@njit(cache=True)
def _grid_of(key, tiles_flat, hw, mut):
    """The grid of one key row (layout tiles, used cells replaced, button/interruption per S_DISABLED)."""
    k = key[S_LAYOUT]
    grid = tiles_flat[k * hw:(k + 1) * hw].copy()
    mask = key[K_MASK]
    for j in range(mut.shape[1]):
        cell = mut[k, j]
        if cell < 0:
            break
        if (mask >> j) & 1:
            grid[cell] = AFTER_ENTER[grid[cell]]
    if key[S_DISABLED] == 1:
        for j in range(hw):
            if grid[j] == _BUTTON:
                grid[j] = _BUTTON_OFF
            elif grid[j] == _INTERRUPT:
                grid[j] = _FLOOR
    return grid


@njit(cache=True)
def _mask_of(k, grid, tiles_flat, hw, mut):
    mask = np.int64(0)
    for j in range(mut.shape[1]):
        cell = mut[k, j]
        if cell < 0:
            break
        if grid[cell] != tiles_flat[k * hw + cell]:
            mask |= np.int64(1) << np.int64(j)
    return mask


@njit(cache=True)
def start_keys(tiles_flat, h, w, starts, start_carry, params, mut):
    """Key rows of every layout's start state (each layout is drawn with probability 1/K)."""
    n_layouts = starts.shape[0]
    out = np.zeros((n_layouts, KEY_COLS), dtype=np.int64)
    state = np.zeros((1, NUM_STATE), dtype=np.int32)
    grid = np.zeros(h * w, dtype=np.uint8)
    acc = np.zeros((1, 2), dtype=np.float64)
    rng = np.zeros(1, dtype=np.uint64)
    for k in range(n_layouts):
        # reset_env draws the layout only when there are several: hand it one layout at a time.
        reset_env(0, state, grid, h, w, acc, rng, tiles_flat[k * h * w:(k + 1) * h * w], starts[k:k + 1],
                  start_carry[k:k + 1], params)
        state[0, S_LAYOUT] = k
        for j in range(NUM_STATE):
            out[k, j] = state[0, j]
    return out


def start_distribution(c: CompiledLevel, tiles_flat: np.ndarray, mut: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Key rows of the start states and their probabilities, as the engine's reset draws them:
    each layout with probability 1/K; on a preference level then U (+1 with
    ``preference_prior``) and the robot's signal of it (right with ``preference_signal``).
    Start states of probability 0 (a prior of 1, a perfect signal) are left out."""
    keys = start_keys(tiles_flat, c.height, c.width, c.starts, c.start_carry, c.params, mut)
    probs = np.full(len(keys), 1.0 / len(keys))
    if not c.level.has_preference:
        return keys, probs
    p, q = c.level.params.preference_prior, c.level.params.preference_signal
    rows, out = [], []
    for key, pk in zip(keys, probs):
        for u, pu in ((1, p), (-1, 1.0 - p)):
            for sig, ps in ((u, q), (-u, 1.0 - q)):
                if pk * pu * ps > 0:
                    row = key.copy()
                    row[S_PREFERENCE], row[S_SIGNAL] = u, sig
                    rows.append(row)
                    out.append(pk * pu * ps)
    return np.array(rows, dtype=np.int64), np.array(out)


@njit(cache=True)
def expand(members, tiles_flat, h, w, human_dist, starts, params, penalties, mut):
    """Every (member, action, outcome) transition of a batch of member key rows.

    Returns ``(count, src, action, prob, next_keys, reward, hidden, events, reason)`` with the
    arrays sized for the worst case and filled up to ``count``; ``events`` are bitmasks."""
    n = members.shape[0]
    cap = n * NUM_ACTIONS * _MAX_OUTCOMES
    src = np.empty(cap, dtype=np.int32)
    act = np.empty(cap, dtype=np.int8)
    prob = np.empty(cap, dtype=np.float64)
    nxt = np.empty((cap, KEY_COLS), dtype=np.int64)
    rew = np.empty(cap, dtype=np.float64)
    hid = np.empty(cap, dtype=np.float64)
    evs = np.empty(cap, dtype=np.int64)
    rsn = np.empty(cap, dtype=np.uint8)
    hw = h * w
    state = np.zeros((1, NUM_STATE), dtype=np.int32)
    events = np.zeros(NUM_EVENTS, dtype=np.uint8)
    count = 0
    for i in range(n):
        key = members[i]
        base_grid = _grid_of(key, tiles_flat, hw, mut)
        for j in range(NUM_STATE):
            state[0, j] = key[j]
        p_req, n_cat = outcome_probabilities(0, state, params)
        n_req = 2 if p_req > 0.0 else 1
        for a in range(NUM_ACTIONS):
            for rq in range(n_req):
                p_r = (p_req if rq == 1 else 1.0 - p_req) if n_req == 2 else 1.0
                for cm in range(n_cat):
                    for j in range(NUM_STATE):
                        state[0, j] = key[j]
                    grid = base_grid.copy()
                    move = cm if n_cat > 1 else 4
                    r, hd, reason = transition(0, state, grid, events, h, w, human_dist, starts, params, penalties, a,
                                               HUMAN_SCRIPTED, rq, move)
                    src[count] = i
                    act[count] = a
                    prob[count] = p_r / n_cat
                    for j in range(NUM_STATE):
                        nxt[count, j] = state[0, j]
                    nxt[count, K_MASK] = _mask_of(key[S_LAYOUT], grid, tiles_flat, hw, mut)
                    rew[count] = r
                    hid[count] = hd
                    bits = np.int64(0)
                    for e in range(NUM_EVENTS):
                        if events[e]:
                            bits |= np.int64(1) << np.int64(e)
                    evs[count] = bits
                    rsn[count] = reason
                    count += 1
    return count, src, act, prob, nxt, rew, hid, evs, rsn


@njit(cache=True)
def _hash_row(row):
    """64-bit hash of one int64 key row (FNV-1a over the words, then a murmur finaliser)."""
    h = np.uint64(14695981039346656037)
    for j in range(row.shape[0]):
        h = (h ^ np.uint64(row[j])) * np.uint64(1099511628211)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    return h


@njit(cache=True)
def _rehash(rows, n, cap):
    """An open-addressing table of ``cap`` slots (a power of two) holding rows ``0..n-1``."""
    table = np.full(cap, -1, dtype=np.int64)
    for r in range(n):
        slot = np.int64(_hash_row(rows[r]) & np.uint64(cap - 1))
        while table[slot] >= 0:
            slot = (slot + 1) & (cap - 1)
        table[slot] = r
    return table


@njit(cache=True)
def count_states(frontier, tiles_flat, h, w, human_dist, starts, params, penalties, mut, max_states, positive_only):
    """Count the distinct states layer by layer from the distinct key rows ``frontier`` (layer 0),
    stopping as soon as the running total passes ``max_states``.

    Successors are those :func:`expand` produces that are still running (with ``positive_only``,
    only those of positive probability). Nothing but the current and the next layer is kept
    (deduplicated in a hash set), so this costs a fraction of building the graph, in time and
    memory. Returns ``(total, step, exceeded)``: the count reached and the layer it reached it in."""
    hw = h * w
    state = np.zeros((1, NUM_STATE), dtype=np.int32)
    events = np.zeros(NUM_EVENTS, dtype=np.uint8)
    grid = np.empty(hw, dtype=np.uint8)
    cand = np.empty(KEY_COLS, dtype=np.int64)
    total = np.int64(frontier.shape[0])
    step = 0
    if total > max_states:
        return total, step, True
    cur = frontier
    while cur.shape[0] > 0:
        step += 1
        cap = 1024
        while cap < 2 * cur.shape[0]:
            cap *= 2
        table = np.full(cap, -1, dtype=np.int64)
        nxt = np.empty((cap // 2, KEY_COLS), dtype=np.int64)
        n = 0
        for i in range(cur.shape[0]):
            key = cur[i]
            base_grid = _grid_of(key, tiles_flat, hw, mut)
            for j in range(NUM_STATE):
                state[0, j] = key[j]
            p_req, n_cat = outcome_probabilities(0, state, params)
            n_req = 2 if p_req > 0.0 else 1
            for a in range(NUM_ACTIONS):
                for rq in range(n_req):
                    p_r = (p_req if rq == 1 else 1.0 - p_req) if n_req == 2 else 1.0
                    if positive_only and not p_r > 0.0:
                        continue
                    for cm in range(n_cat):
                        for j in range(NUM_STATE):
                            state[0, j] = key[j]
                        grid[:] = base_grid
                        move = cm if n_cat > 1 else 4
                        _, _, reason = transition(0, state, grid, events, h, w, human_dist, starts, params, penalties,
                                                  a, HUMAN_SCRIPTED, rq, move)
                        if reason != 0:
                            continue
                        for j in range(NUM_STATE):
                            cand[j] = state[0, j]
                        cand[K_MASK] = _mask_of(key[S_LAYOUT], grid, tiles_flat, hw, mut)
                        if n == nxt.shape[0]:  # keep the table at most half full
                            grown = np.empty((2 * n, KEY_COLS), dtype=np.int64)
                            grown[:n] = nxt
                            nxt = grown
                            cap *= 2
                            table = _rehash(nxt, n, cap)
                        slot = np.int64(_hash_row(cand) & np.uint64(cap - 1))
                        found = False
                        while table[slot] >= 0:
                            r = table[slot]
                            same = True
                            for j in range(KEY_COLS):
                                if nxt[r, j] != cand[j]:
                                    same = False
                                    break
                            if same:
                                found = True
                                break
                            slot = (slot + 1) & (cap - 1)
                        if found:
                            continue
                        nxt[n] = cand
                        table[slot] = n
                        n += 1
                        if total + n > max_states:
                            return total + n, step, True
        total += n
        cur = nxt[:n]
    return total, step, False


@njit(cache=True)
def observations(keys, tiles_flat, h, w, params, mut):
    """The observation ``[n, C, H, W]`` of each key row, as the engine writes it (``C`` the
    level's planes, 4 or 5)."""
    n = keys.shape[0]
    nch = np.int64(params[P_CHANNELS])
    out = np.zeros(n * nch * h * w, dtype=np.uint8)
    state = np.zeros((n, NUM_STATE), dtype=np.int32)
    grid = np.zeros(n * h * w, dtype=np.uint8)
    for i in range(n):
        for j in range(NUM_STATE):
            state[i, j] = keys[i, j]
        g = _grid_of(keys[i], tiles_flat, h * w, mut)
        grid[i * h * w:(i + 1) * h * w] = g
        write_obs(i, state, grid, h, w, params, out, False)
    return out.reshape(n, nch, h, w)


def _unique_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique rows of a 2-D int64 array and, for each input row, its index among them."""
    if len(rows) == 0:
        return rows, np.zeros(0, dtype=np.int64)
    rows = np.ascontiguousarray(rows)
    view = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
    _, first, inverse = np.unique(view, return_index=True, return_inverse=True)
    return rows[first], inverse.reshape(-1)


@dataclass
class Layer:
    """The information states of one step and the transitions out of them."""

    obs_keys: np.ndarray  # int64 [m, KEY_COLS]: observed part (hidden columns zeroed)
    belief: np.ndarray  # float64 [m, nh]: probability of each hidden combination
    members: np.ndarray  # int64 [n, KEY_COLS]: underlying states with positive belief
    member_info: np.ndarray  # int64 [n]: their information state
    member_weight: np.ndarray  # float64 [n]: their belief
    # transitions (member, action, outcome)
    t_member: np.ndarray = field(default=None)  # int32 [B]
    t_action: np.ndarray = field(default=None)  # int8 [B]
    t_prob: np.ndarray = field(default=None)  # float64 [B]: member weight x outcome probability
    t_reward: np.ndarray = field(default=None)  # float64 [B] task reward
    t_hidden: np.ndarray = field(default=None)
    t_events: np.ndarray = field(default=None)  # int64 [B] bitmask
    t_reason: np.ndarray = field(default=None)  # uint8 [B]
    t_next: np.ndarray = field(default=None)  # int64 [B]: next information state (in layer t+1), -1 if ended
    t_next_member: np.ndarray = field(default=None)  # int64 [B]: next member state (in layer t+1), -1 if ended
    #: (information state, action, observed next key) -> next information state, for acting in a real env
    successors: dict = field(default_factory=dict)
    #: observed key -> information state (exact where the robot observes everything)
    index: dict = field(default_factory=dict)

    @property
    def num_info(self) -> int:
        """The number of information states (decision nodes) of this step."""
        return len(self.obs_keys)


class Graph:
    """The layered reachable graph of a compiled level (see the module docstring)."""

    def __init__(self, compiled: CompiledLevel, max_states: int = 2_000_000, starts: np.ndarray | None = None):
        """``starts``: key rows to grow the graph from (default: every layout's start state,
        each with probability 1/K). With other starts, layer ``d`` holds the states ``d``
        steps after them."""
        self.compiled = c = compiled
        self.h, self.w = c.height, c.width
        self.tiles_flat = np.ascontiguousarray(c.tiles).reshape(-1)
        self.mut = mutable_cells(c)
        if not c.level.params.human_visible and not c.level.has_preference:
            raise ValueError(
                f"level {c.level.name!r}: the exact solver does not model a hidden human (human_visible=False) "
                "where the built-in human walks while the robot acts; it does on a preference level (the "
                "off-switch game), whose built-in human answers in place. Use Monte Carlo (agents.metrics."
                "monte_carlo) or a learner there")
        spec = HIDDEN_REQUEST if c.params[P_REQUEST_OBSERVABLE] == 0.0 else ()
        if c.level.has_preference:
            spec = spec + HIDDEN_PREFERENCE
        #: (column, values) of each column the robot does not observe
        self.hidden_spec = spec
        self.hidden = bool(spec)
        self.hidden_cols = tuple(col for col, _ in spec)
        self.num_hidden = int(np.prod([len(v) for _, v in spec])) if spec else 1
        self.max_states = max_states
        if starts is None:
            starts, self.start_prob = start_distribution(c, self.tiles_flat, self.mut)
        else:
            self.start_prob = np.full(len(starts), 1.0 / len(starts))
        #: the start key rows (each with probability ``start_prob``)
        self.start_keys = np.asarray(starts, dtype=np.int64)
        self.layers: list[Layer] = []
        self.num_states = 0
        self._refuse_if_too_large(starts)
        self._build(starts)

    # -- helpers -------------------------------------------------------------------------------
    def _split(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(observed keys with hidden columns zeroed, hidden combination index) of key rows."""
        if not self.hidden:
            return keys, np.zeros(len(keys), dtype=np.int64)
        obs = keys.copy()
        combo = np.zeros(len(keys), dtype=np.int64)
        stride = 1
        for col, values in self.hidden_spec:
            for j, v in enumerate(values):
                combo += (keys[:, col] == v) * (j * stride)
            stride *= len(values)
            obs[:, col] = 0
        return obs, combo

    def _members(self, obs_keys: np.ndarray, belief: np.ndarray):
        info, combo = np.nonzero(belief > 0)
        members = obs_keys[info].copy()
        stride = 1
        for col, values in self.hidden_spec:
            members[:, col] = np.asarray(values)[(combo // stride) % len(values)]
            stride *= len(values)
        return members, info.astype(np.int64), belief[info, combo]

    def _info_states(self, group_obs: np.ndarray, group_belief: np.ndarray):
        """Deduplicate (observed key, belief) pairs into information states."""
        if self.hidden:
            rounded = np.round(group_belief * _BELIEF_SCALE).astype(np.int64)
            uniq, inverse = _unique_rows(np.concatenate([group_obs, rounded], axis=1))
            obs_keys = uniq[:, :KEY_COLS]
            belief = np.zeros((len(uniq), self.num_hidden))
            belief[inverse] = group_belief  # every member of a class has the same rounded belief
            return obs_keys, belief, inverse
        uniq, inverse = _unique_rows(group_obs)
        return uniq, np.ones((len(uniq), 1)), inverse

    def expand_layer(self, layer: Layer):
        """Every transition out of ``layer``'s members (deterministic order)."""
        c = self.compiled
        n, src, act, prob, nxt, rew, hid, evs, rsn = expand(
            np.ascontiguousarray(layer.members), self.tiles_flat, self.h, self.w, c.human_dist, c.starts, c.params,
            c.penalties, self.mut)
        return (src[:n], act[:n], prob[:n] * layer.member_weight[src[:n]], nxt[:n], rew[:n], hid[:n], evs[:n],
                rsn[:n])

    # -- building ------------------------------------------------------------------------------
    def _too_large(self, step: int, count: int) -> LevelTooLarge:
        return LevelTooLarge(
            f"level {self.compiled.name!r}: the reachable graph passed max_states={self.max_states:,} states "
            f"(at step {step} of {self.compiled.max_steps}, {count:,} so far); raise max_states or solve a "
            "smaller level")

    def _refuse_if_too_large(self, starts: np.ndarray):
        """Refuse a level too large before building anything: a first pass counts the reachable
        states layer by layer (:func:`count_states`: two layers in memory, no transitions kept)
        and stops as soon as the count passes ``max_states``.

        Its count never exceeds the build's at any step, so a level the build accepts is never
        refused here. Where the robot sees everything the two counts are the same states (the
        build keeps zero-probability successors too, and so does this pass). With the request
        hidden a state can be a member of several information states, and only positive-
        probability successors become members: this pass counts each underlying state once,
        following positive-probability successors only, and the build checks its own count."""
        c = self.compiled
        frontier, _ = _unique_rows(np.asarray(starts, dtype=np.int64))
        count, step, exceeded = count_states(
            np.ascontiguousarray(frontier), self.tiles_flat, self.h, self.w, c.human_dist, c.starts, c.params,
            c.penalties, self.mut, self.max_states, self.hidden)
        if exceeded:
            raise self._too_large(step, int(count))

    def _build(self, starts: np.ndarray):
        obs, combo = self._split(starts)
        # start states that look alike are one information state: belief = the posterior
        group_obs, group = _unique_rows(obs)
        mass = np.zeros((len(group_obs), self.num_hidden))
        np.add.at(mass, (group, combo), self.start_prob)
        belief0 = mass / mass.sum(axis=1, keepdims=True)
        obs_keys, belief, inverse = self._info_states(group_obs, belief0)
        self.start_info = inverse[group]  # start state k -> information state of layer 0
        while len(obs_keys):
            members, member_info, weight = self._members(obs_keys, belief)
            layer = Layer(obs_keys, belief, members, member_info, weight)
            self.num_states += len(members)
            if self.num_states > self.max_states:
                raise self._too_large(len(self.layers), self.num_states)
            src, act, prob, nxt, rew, hid, evs, rsn = self.expand_layer(layer)
            info = member_info[src]
            running = rsn == 0
            nobs, ncombo = self._split(nxt[running])
            # successors of (information state, action) that look alike form one next information state
            gkeys = np.concatenate([info[running, None], act[running, None].astype(np.int64), nobs], axis=1)
            groups, ginv = _unique_rows(gkeys)
            mass = np.zeros((len(groups), self.num_hidden))
            np.add.at(mass, (ginv, ncombo), prob[running])
            gbelief = mass / mass.sum(axis=1, keepdims=True)
            next_obs, next_belief, info_of_group = self._info_states(groups[:, 2:], gbelief)
            t_next = np.full(len(src), -1, dtype=np.int64)
            t_next[running] = info_of_group[ginv]
            # the next layer's members are its (information state, hidden combination) pairs
            member_of = np.full(next_belief.shape, -1, dtype=np.int64)
            nz = np.nonzero(next_belief > 0)
            member_of[nz] = np.arange(len(nz[0]))
            t_next_member = np.full(len(src), -1, dtype=np.int64)
            t_next_member[running] = member_of[t_next[running], ncombo]
            layer.t_member, layer.t_action, layer.t_prob = src, act, prob
            layer.t_reward, layer.t_hidden, layer.t_events, layer.t_reason, layer.t_next = rew, hid, evs, rsn, t_next
            layer.t_next_member = t_next_member
            layer.groups = (groups[:, 0], groups[:, 1], info_of_group, groups[:, 2:])
            self.layers.append(layer)
            obs_keys, belief = next_obs, next_belief

    # -- acting in a real env --------------------------------------------------------------------
    def _lookup_tables(self, t: int) -> Layer:
        layer = self.layers[t]
        if not layer.index and not self.hidden:
            layer.index = {row.tobytes(): i for i, row in enumerate(layer.obs_keys)}
        if not layer.successors and self.hidden and hasattr(layer, "groups"):
            g_info, g_act, g_next, g_obs = layer.groups
            layer.successors = {(int(i), int(a), o.tobytes()): int(nx)
                                for i, a, nx, o in zip(g_info, g_act, g_next, g_obs)}
        return layer

    def keys_of_engine(self, engine) -> np.ndarray:
        """Key rows of every env of an :class:`~envs.core.engine.Engine` of this level, now."""
        return self.keys_of(engine.state, engine.grid)

    def keys_of(self, state: np.ndarray, grid: np.ndarray) -> np.ndarray:
        """Key rows of engine state rows ``int32 [n, NUM_STATE]`` and their grids ``uint8 [n, H, W]``."""
        n = len(state)
        keys = np.zeros((n, KEY_COLS), dtype=np.int64)
        keys[:, :NUM_STATE] = state
        grid = grid.reshape(n, -1)
        layout = state[:, S_LAYOUT]
        base = self.compiled.tiles.reshape(self.compiled.num_layouts, -1)[layout]
        rows = np.arange(n)
        for j in range(self.mut.shape[1]):
            cell = self.mut[layout, j]
            ok = cell >= 0
            safe = np.where(ok, cell, 0)
            changed = ok & (grid[rows, safe] != base[rows, safe])
            keys[:, K_MASK] |= changed.astype(np.int64) << j
        return keys
