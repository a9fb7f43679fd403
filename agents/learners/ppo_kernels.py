"""PPO's CPU fast paths (numba): the same functions as :mod:`agents.learners.ppo` and
:mod:`agents.learners.networks` compute with plain torch, in fewer, larger steps. Each is tested
against its plain version (tests/test_ppo.py). Which runs where: on the CPU, PPO uses these
(``FUSED_CPU_KERNELS`` in ppo.py, ``Config.sparse_first_layer``); on CUDA, the plain torch code.

* :func:`first_layer_sparse`: embed_mlp's first layer. It is
  ``h = b + W1 . flatten_c [E_t[tile_c], E_e[ent_c], req_c, time_c / s]``; split ``W1`` by cell,
  ``h = b + sum_c (table[c, tile_c] + table[c, NUM_TILES + ent_c] + numbers[c] . (req_c, time_c))``
  (:meth:`ActorCritic.cell_tables <agents.learners.networks.ActorCritic.cell_tables>`). Most cells
  hold the same code in every observation of a batch, so the kernel starts from the sum over each
  cell's most common code in the batch (its base code) and adds the differences only where a
  cell's code differs; the request and time planes are handled alike, relative to the value in
  each observation's first cell. Exact, and O(changed cells) per observation instead of
  O(cells * embedding size).
* :class:`FusedPPOLoss`: :func:`agents.learners.ppo.ppo_loss` of a head output and its gradient
  in one pass.
* :func:`sample_kernel`: :func:`agents.learners.ppo.sample_actions` written into the rollout's
  buffers.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch

from envs.core.tables import NUM_TILES

#: The names of the statistics the fused loss returns beside the loss.
STAT_NAMES = ("pg_loss", "v_loss", "entropy", "approx_kl", "clipfrac")


@numba.njit(cache=True)
def _extra_differs(obs, b, differs):
    """Mark the cells of observation ``b`` whose number planes from the fifth on differ from the
    observation's first cell (a preference level's; out of line, so that the four-plane loops
    stay as tight as they were)."""
    for p in range(4, obs.shape[1]):
        x0 = obs[b, p, 0]
        for c in range(obs.shape[2]):
            differs[c] |= np.uint8(obs[b, p, c] != x0)


@numba.njit(cache=True)
def _extra_cell(obs, b, c, numbers, row):
    """``row += (x[p, c] - x[p, 0]) numbers[p - 2, c]`` over observation ``b``'s number planes
    from the fifth on (the forward pass, for a cell that differs)."""
    for p in range(4, obs.shape[1]):
        d = np.float32(obs[b, p, c]) - np.float32(obs[b, p, 0])
        if d != 0:
            for k in range(row.shape[0]):
                row[k] += d * numbers[p - 2, c, k]


@numba.njit(cache=True)
def _extra_cell_grad(obs, b, c, g, g_numbers):
    """``g_numbers[p - 2, c] += (x[p, c] - x[p, 0]) g`` over observation ``b``'s number planes
    from the fifth on (the backward pass, for a cell that differs)."""
    for p in range(4, obs.shape[1]):
        d = np.float32(obs[b, p, c]) - np.float32(obs[b, p, 0])
        if d != 0:
            for k in range(g.shape[0]):
                g_numbers[p - 2, c, k] += d * g[k]


@numba.njit(cache=True)
def _sparse_forward(obs, table, numbers, bias, n_tiles, tanh, base, out):
    """``out = act(first layer)`` for uint8 ``obs [B, P, C]`` (``P`` planes: the tile and entity
    codes, then ``P - 2`` number planes, 4 or 5 of them in all), ``table [K, C, H]`` (tile codes,
    then entity codes from ``n_tiles``), ``numbers [P - 2, C, H]``; writes the base codes (uint8
    ``[2, C]``: tile, entity) it chose into ``base``."""
    b_n, c_n, h_n, k_n = obs.shape[0], obs.shape[2], bias.shape[0], table.shape[0]
    p_n = obs.shape[1]  # planes; those from 4 on (a preference level's fifth) are handled after the first four
    n_ent = k_n - n_tiles
    counts = np.zeros((c_n, k_n), dtype=np.int32)
    for b in range(min(b_n, 256)):
        for c in range(c_n):
            counts[c, obs[b, 0, c]] += 1
            counts[c, n_tiles + obs[b, 1, c]] += 1
    for c in range(c_n):
        bt, be = 0, 0
        for k in range(n_tiles):
            if counts[c, k] > counts[c, bt]:
                bt = k
        for k in range(n_ent):
            if counts[c, n_tiles + k] > counts[c, n_tiles + be]:
                be = k
        base[0, c], base[1, c] = bt, be
    s = bias.copy()
    sr = np.zeros(h_n, dtype=np.float32)
    st = np.zeros(h_n, dtype=np.float32)
    sx = np.zeros((p_n - 4, h_n), dtype=np.float32)  # the extra number planes' sums
    for c in range(c_n):
        t0, e0 = base[0, c], n_tiles + base[1, c]
        for k in range(h_n):
            s[k] += table[t0, c, k] + table[e0, c, k]
            sr[k] += numbers[0, c, k]
            st[k] += numbers[1, c, k]
        if p_n > 4:
            for p in range(4, p_n):
                for k in range(h_n):
                    sx[p - 4, k] += numbers[p - 2, c, k]
    c_pad = (c_n + 7) // 8 * 8
    differs = np.zeros(c_pad, dtype=np.uint8)  # padded: tested 8 cells at a time below
    words = differs.view(np.uint64)
    for b in range(b_n):
        r0, q0 = obs[b, 2, 0], obs[b, 3, 0]
        for c in range(c_n):  # vectorised: which cells differ from the base in any plane
            differs[c] = ((obs[b, 0, c] != base[0, c]) | (obs[b, 1, c] != base[1, c]) | (obs[b, 2, c] != r0)
                          | (obs[b, 3, c] != q0))
        if p_n > 4:
            _extra_differs(obs, b, differs)
        row = out[b]
        fr, fq = np.float32(r0), np.float32(q0)
        for k in range(h_n):
            row[k] = s[k] + fr * sr[k] + fq * st[k]
        if p_n > 4:
            for p in range(4, p_n):
                fx = np.float32(obs[b, p, 0])
                for k in range(h_n):
                    row[k] += fx * sx[p - 4, k]
        for wi in range(words.shape[0]):  # 8 cells at a time; most words are all zero
            if words[wi] == 0:
                continue
            for c in range(wi * 8, min(c_n, wi * 8 + 8)):
                if not differs[c]:
                    continue
                code = obs[b, 0, c]
                if code != base[0, c]:
                    if code >= n_tiles:
                        raise ValueError("observation holds a tile code out of range")
                    bc = base[0, c]
                    for k in range(h_n):
                        row[k] += table[code, c, k] - table[bc, c, k]
                code = obs[b, 1, c]
                if code != base[1, c]:
                    if code >= n_ent:
                        raise ValueError("observation holds an entity code out of range")
                    code, bc = n_tiles + code, n_tiles + base[1, c]
                    for k in range(h_n):
                        row[k] += table[code, c, k] - table[bc, c, k]
                d = np.float32(obs[b, 2, c]) - fr
                if d != 0:
                    for k in range(h_n):
                        row[k] += d * numbers[0, c, k]
                d = np.float32(obs[b, 3, c]) - fq
                if d != 0:
                    for k in range(h_n):
                        row[k] += d * numbers[1, c, k]
                if p_n > 4:
                    _extra_cell(obs, b, c, numbers, row)
        if tanh:
            for k in range(h_n):
                row[k] = np.tanh(row[k])
        else:
            for k in range(h_n):
                row[k] = max(row[k], np.float32(0.0))


@numba.njit(cache=True)
def _sparse_backward(obs, out, grad, base, n_tiles, tanh, g_table, g_numbers, g_bias):
    """Gradients of ``sum(grad * out)`` (``out`` from :func:`_sparse_forward` with these base
    codes) w.r.t. the table, the number weights and the bias; ``g_table`` and ``g_numbers``
    come in zeroed."""
    b_n, c_n, h_n, k_n = obs.shape[0], obs.shape[2], grad.shape[1], g_table.shape[0]
    p_n = obs.shape[1]
    gsum = np.zeros(h_n, dtype=np.float32)
    gr = np.zeros(h_n, dtype=np.float32)
    gq = np.zeros(h_n, dtype=np.float32)
    gx = np.zeros((p_n - 4, h_n), dtype=np.float32)
    g = np.empty(h_n, dtype=np.float32)
    c_pad = (c_n + 7) // 8 * 8
    differs = np.zeros(c_pad, dtype=np.uint8)  # padded: tested 8 cells at a time below
    words = differs.view(np.uint64)
    for b in range(b_n):
        if tanh:
            for k in range(h_n):
                y = out[b, k]
                g[k] = grad[b, k] * (np.float32(1.0) - y * y)
        else:
            for k in range(h_n):
                g[k] = grad[b, k] if out[b, k] > 0 else np.float32(0.0)
        r0, q0 = obs[b, 2, 0], obs[b, 3, 0]
        fr, fq = np.float32(r0), np.float32(q0)
        for k in range(h_n):
            gsum[k] += g[k]
            gr[k] += fr * g[k]
            gq[k] += fq * g[k]
        if p_n > 4:
            for p in range(4, p_n):
                fx = np.float32(obs[b, p, 0])
                for k in range(h_n):
                    gx[p - 4, k] += fx * g[k]
        for c in range(c_n):
            differs[c] = ((obs[b, 0, c] != base[0, c]) | (obs[b, 1, c] != base[1, c]) | (obs[b, 2, c] != r0)
                          | (obs[b, 3, c] != q0))
        if p_n > 4:
            _extra_differs(obs, b, differs)
        for wi in range(words.shape[0]):  # 8 cells at a time; most words are all zero
            if words[wi] == 0:
                continue
            for c in range(wi * 8, min(c_n, wi * 8 + 8)):
                if not differs[c]:
                    continue
                code = obs[b, 0, c]
                if code != base[0, c]:
                    for k in range(h_n):
                        g_table[code, c, k] += g[k]
                code = obs[b, 1, c]
                if code != base[1, c]:
                    code = n_tiles + code
                    for k in range(h_n):
                        g_table[code, c, k] += g[k]
                d = np.float32(obs[b, 2, c]) - fr
                if d != 0:
                    for k in range(h_n):
                        g_numbers[0, c, k] += d * g[k]
                d = np.float32(obs[b, 3, c]) - fq
                if d != 0:
                    for k in range(h_n):
                        g_numbers[1, c, k] += d * g[k]
                if p_n > 4:
                    _extra_cell_grad(obs, b, c, g, g_numbers)
    # Every observation holds one tile code and one entity code per cell, so each base code
    # gets the total less what the other codes of its plane got.
    rest = np.empty(h_n, dtype=np.float32)
    for c in range(c_n):
        for plane in range(2):
            lo, hi = (0, n_tiles) if plane == 0 else (n_tiles, k_n)
            bc = lo + np.int64(base[plane, c])
            rest[:] = 0
            for code in range(lo, hi):
                for k in range(h_n):
                    rest[k] += g_table[code, c, k]
            for k in range(h_n):
                g_table[bc, c, k] = gsum[k] - rest[k]
        for k in range(h_n):
            g_numbers[0, c, k] += gr[k]
            g_numbers[1, c, k] += gq[k]
        if p_n > 4:
            for p in range(4, p_n):
                for k in range(h_n):
                    g_numbers[p - 2, c, k] += gx[p - 4, k]
    for k in range(h_n):
        g_bias[k] = gsum[k]


class _SparseFirstLayer(torch.autograd.Function):
    @staticmethod
    def forward(ctx, obs, table, numbers, bias, tanh):
        o = obs.contiguous().numpy()
        base = np.empty((2, o.shape[2]), dtype=np.uint8)
        out = torch.empty((o.shape[0], bias.shape[0]), dtype=torch.float32)
        _sparse_forward(o, table.detach().contiguous().numpy(), numbers.detach().contiguous().numpy(),
                        bias.detach().numpy(), NUM_TILES, tanh, base, out.numpy())
        ctx.save_for_backward(obs, out)
        ctx.base, ctx.tanh = base, tanh
        ctx.shapes = (table.shape, numbers.shape)
        return out

    @staticmethod
    def backward(ctx, grad):
        obs, out = ctx.saved_tensors
        g_table, g_numbers = torch.zeros(ctx.shapes[0]), torch.zeros(ctx.shapes[1])
        g_bias = torch.empty(ctx.shapes[0][2])
        _sparse_backward(obs.contiguous().numpy(), out.numpy(), grad.contiguous().numpy(), ctx.base, NUM_TILES,
                         ctx.tanh, g_table.numpy(), g_numbers.numpy(), g_bias.numpy())
        return None, g_table, g_numbers, g_bias, None


def first_layer_sparse(obs: torch.Tensor, table: torch.Tensor, numbers: torch.Tensor, bias: torch.Tensor,
                       activation: str = "relu") -> torch.Tensor:
    """``act(b + sum_c table[tile_c, c] + table[NUM_TILES + ent_c, c] + req_c numbers[0, c] +
    time_c numbers[1, c] (+ pref_c numbers[2, c]))`` for uint8 ``obs`` ``[B, P, cells]`` (``P`` 4,
    or 5 on a preference level) on the CPU (differentiable in the tables and the bias);
    :meth:`ActorCritic.cell_tables` makes the tables."""
    return _SparseFirstLayer.apply(obs, table, numbers, bias, activation == "tanh")


@numba.njit(cache=True)
def _ppo_loss_kernel(head, actions, old_logp, adv, returns, old_values, clip, vf_coef, ent_coef, clip_vloss,
                     norm_adv, grad, stats):
    """Forward and gradient of :func:`ppo_loss` on a head output ``[B, A + 1]`` in one pass."""
    b_n, a_n = head.shape[0], head.shape[1] - 1
    mean, scale = 0.0, 1.0
    if norm_adv and b_n > 1:
        for i in range(b_n):
            mean += adv[i]
        mean /= b_n
        var = 0.0
        for i in range(b_n):
            var += (adv[i] - mean) ** 2
        scale = 1.0 / (math.sqrt(var / (b_n - 1)) + 1e-8)
    inv = 1.0 / b_n
    pg = vl = ent = kl = cf = 0.0
    p = np.empty(a_n, dtype=np.float64)
    lp = np.empty(a_n, dtype=np.float64)
    for i in range(b_n):
        m = head[i, 0]
        for k in range(1, a_n):
            m = max(m, head[i, k])
        se = 0.0
        for k in range(a_n):
            p[k] = math.exp(head[i, k] - m)
            se += p[k]
        lse = m + math.log(se)
        h_i = 0.0
        for k in range(a_n):
            p[k] /= se
            lp[k] = head[i, k] - lse
            h_i -= p[k] * lp[k]
        a = actions[i]
        log_ratio = lp[a] - old_logp[i]
        r = math.exp(log_ratio)
        adv_i = (adv[i] - mean) * scale
        rc = min(max(r, 1.0 - clip), 1.0 + clip)
        u1, u2 = -adv_i * r, -adv_i * rc
        if u1 >= u2:  # the unclipped term is the larger (or they tie, r inside the clip range)
            pg += u1
            d_logp = -adv_i * r
        else:  # the clipped term, constant in r
            pg += u2
            d_logp = 0.0
        ent += h_i
        kl += (r - 1.0) - log_ratio
        if abs(r - 1.0) > clip:
            cf += 1.0
        for k in range(a_n):
            dz = d_logp * ((1.0 if k == a else 0.0) - p[k]) + ent_coef * p[k] * (lp[k] + h_i)
            grad[i, k] = dz * inv
        v = head[i, a_n]
        err = v - returns[i]
        dv = err
        if clip_vloss:
            diff = v - old_values[i]
            vc = old_values[i] + min(max(diff, -clip), clip)
            err_c = vc - returns[i]
            if err_c * err_c > err * err:
                err = err_c
                dv = err_c if abs(diff) <= clip else 0.0
        vl += 0.5 * err * err
        grad[i, a_n] = vf_coef * dv * inv
    stats[0], stats[1], stats[2], stats[3], stats[4] = pg * inv, vl * inv, ent * inv, kl * inv, cf * inv
    return pg * inv + vf_coef * vl * inv - ent_coef * ent * inv


class FusedPPOLoss(torch.autograd.Function):
    """The PPO loss of a head output and its gradient, computed by one numba pass (an autograd Function; the
    statistics :data:`STAT_NAMES` come out beside the loss)."""

    @staticmethod
    def forward(ctx, head, actions, old_logp, adv, returns, old_values, clip, vf_coef, ent_coef, clip_vloss,
                norm_adv):
        grad = torch.empty(head.shape, dtype=torch.float32)
        stats = torch.empty(5, dtype=torch.float64)
        loss = _ppo_loss_kernel(head.detach().contiguous().numpy(), actions.contiguous().numpy(),
                                old_logp.contiguous().numpy(), adv.contiguous().numpy(), returns.contiguous().numpy(),
                                old_values.contiguous().numpy(), clip, vf_coef, ent_coef, clip_vloss, norm_adv,
                                grad.numpy(), stats.numpy())
        ctx.save_for_backward(grad)
        ctx.mark_non_differentiable(stats)
        return torch.tensor(loss, dtype=head.dtype), stats

    @staticmethod
    def backward(ctx, g_loss, _g_stats):
        (grad,) = ctx.saved_tensors
        return grad * g_loss, None, None, None, None, None, None, None, None, None, None


@numba.njit(cache=True)
def sample_kernel(head, u, actions, logp, values):
    """:func:`sample_actions` for one batch, writing into the rollout's buffers."""
    b_n, a_n = head.shape[0], head.shape[1] - 1
    for i in range(b_n):
        m = head[i, 0]
        for k in range(1, a_n):
            m = max(m, head[i, k])
        se = 0.0
        for k in range(a_n):
            se += math.exp(head[i, k] - m)
        lse = m + math.log(se)
        a, acc = a_n - 1, 0.0
        for k in range(a_n):
            acc += math.exp(head[i, k] - lse)
            if u[i] < acc:
                a = k
                break
        actions[i] = a
        logp[i] = head[i, a] - lse
        values[i] = head[i, a_n]
