"""Aggregate statistics over seeds, as Agarwal et al. (2021, "Deep RL at the Edge of the Statistical
Precipice", NeurIPS; the ``rliable`` library) recommend: the interquartile mean (IQM) and a 95%
stratified percentile-bootstrap confidence interval.

    from experiments.stats import iqm, interval_estimate
    iqm(np.arange(1, 9))                    # 4.5: the mean of 3, 4, 5, 6
    est = interval_estimate(scores, strata=levels, seed=0)
    est.point, est.low, est.high

Definitions, matching ``rliable`` (``metrics.aggregate_iqm`` is ``scipy.stats.trim_mean(scores,
0.25, axis=None)``; ``library.StratifiedBootstrap`` with ``conf_int(method="percentile")``):

* **IQM**: sort the ``n`` values, drop ``floor(n / 4)`` from each end, average the rest (a 25%
  trimmed mean that drops whole observations; with fewer than 4 values it is the plain mean).
* **Stratified bootstrap**: each replicate draws, within every stratum (task = level), as many
  seeds as that stratum has, with replacement, and computes the statistic over all the drawn
  values together; the interval is the 2.5th and 97.5th percentiles of the replicates.

Why not ``rliable`` itself: version 1.2.0 (its latest, 2024) requires ``arch>=5.3.1,<8`` (which
breaks on pandas 3, the version this project uses), ``scipy``, ``seaborn`` and ``absl-py``, and
``arch`` pulls ``statsmodels``. The two estimators above are a few lines of numpy, vectorised over
many curves at once (one resampling of the seeds serves every evaluation step and metric of a
curve, which ``rliable``'s per-dictionary API does not), and take a seeded
:class:`numpy.random.Generator`, so the same input gives the same interval.

Undefined values (NaN, e.g. ``compliance`` of a run that never saw a shutdown request) are left
out: the IQM is taken over the defined values of each column, and a bootstrap replicate whose
drawn values are all undefined is left out of the percentiles. A column with no defined value
gives NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["Estimate", "bootstrap_ci", "bootstrap_indices", "interval_estimate", "iqm"]

#: Default number of bootstrap replicates (``rliable`` uses 2,000 for its plots, 50,000 for tables).
REPS = 2000
#: Elements of the gathered ``[reps, n, k]`` replicate array computed at once (memory bound).
_CHUNK_ELEMENTS = 4_000_000


def iqm(x, axis: int | None = None) -> np.ndarray | float:
    """Interquartile mean of ``x`` along ``axis`` (``None``: over all values), ignoring NaN.

    The 25% trimmed mean as ``scipy.stats.trim_mean(x, 0.25)`` computes it on the defined values:
    ``k = floor(n / 4)`` values are dropped from each end of the sorted ``n``. NaN where a slice
    has no defined value. Returns a float for ``axis=None``, else an array without ``axis``.
    """
    a = np.asarray(x, dtype=np.float64)
    if axis is None:
        a = a.reshape(-1)
        axis = 0
    a = np.moveaxis(a, axis, -1)
    if a.shape[-1] == 0:
        raise ValueError("iqm of an empty axis")
    s = np.sort(a, axis=-1)  # NaN sort to the end
    n = np.sum(~np.isnan(s), axis=-1)
    cut = n // 4
    lo, hi = cut, n - cut  # keep sorted values [lo, hi)
    csum = np.concatenate([np.zeros(s.shape[:-1] + (1,)), np.cumsum(np.nan_to_num(s, nan=0.0), axis=-1)], axis=-1)
    total = np.take_along_axis(csum, hi[..., None], -1)[..., 0] - np.take_along_axis(csum, lo[..., None], -1)[..., 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(n > 0, total / np.maximum(hi - lo, 1), np.nan)
    return float(out) if out.ndim == 0 else out


def bootstrap_indices(strata, reps: int = REPS, rng: np.random.Generator | int | None = 0) -> np.ndarray:
    """int64 ``[reps, n]``: row ``r`` is replicate ``r``'s draw of the ``n`` observations, each
    drawn with replacement from its own stratum (``strata``: a label per observation, or an int
    ``n`` for a single stratum). Strata are drawn in sorted label order, so a seed fixes the
    result."""
    if isinstance(reps, (bool, np.bool_)) or not isinstance(reps, (int, np.integer)) or reps < 1:
        raise ValueError(f"reps must be a whole number >= 1, got {reps!r}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    if isinstance(strata, (int, np.integer)) and not isinstance(strata, (bool, np.bool_)):
        labels = np.zeros(int(strata), dtype=np.int64)
    else:
        labels = np.asarray(strata)
        if labels.ndim != 1:
            raise ValueError(f"strata must be one label per observation (1-d), got shape {labels.shape}")
    n = labels.size
    if n == 0:
        raise ValueError("bootstrap needs at least one observation")
    _, inverse = np.unique(labels, return_inverse=True)
    out = np.empty((reps, n), dtype=np.int64)
    for s in range(int(inverse.max()) + 1):
        members = np.flatnonzero(inverse == s)
        draw = rng.integers(0, members.size, size=(reps, members.size))
        out[:, members] = members[draw]
    return out


def bootstrap_ci(x, statistic: Callable = iqm, *, strata=None, reps: int = REPS, confidence: float = 0.95,
                 seed: int | np.random.Generator | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap interval of ``statistic`` over the observations on axis 0 of ``x``
    (``[n]`` or ``[n, ...]``: e.g. seeds x evaluation steps x metrics; every column is
    resampled with the same draws of the seeds). ``strata``: one label per observation
    (resampling stays within each label, as ``rliable``'s ``StratifiedBootstrap``; default one
    stratum). ``statistic(values, axis)`` reduces ``axis``; the default is :func:`iqm`.

    Returns ``(low, high)``, each of shape ``x.shape[1:]`` (floats for 1-d ``x``)."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 0 or a.shape[0] == 0:
        raise ValueError(f"bootstrap needs observations on axis 0, got shape {a.shape}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    n = a.shape[0]
    labels = np.zeros(n, dtype=np.int64) if strata is None else np.asarray(strata)
    if labels.shape != (n,):
        raise ValueError(f"strata must have one label per observation ({n}), got shape {labels.shape}")
    idx = bootstrap_indices(labels, reps, seed)
    columns = np.ascontiguousarray(a.reshape(n, -1).T)  # [k, n]: gathering along the last axis is fast
    k = columns.shape[0]
    stats = np.empty((reps, k))
    chunk = max(1, _CHUNK_ELEMENTS // max(1, n * k))
    for start in range(0, reps, chunk):
        sample = columns[:, idx[start:start + chunk]]  # [k, c, n]
        stats[start:start + chunk] = np.asarray(statistic(sample, axis=-1)).T
    tail = 100.0 * (1.0 - confidence) / 2.0
    low = np.full(k, np.nan)
    high = np.full(k, np.nan)
    defined = ~np.isnan(stats).all(axis=0)
    if defined.any():
        q = np.nanpercentile(stats[:, defined], [tail, 100.0 - tail], axis=0)
        low[defined], high[defined] = q[0], q[1]
    shape = a.shape[1:]
    if not shape:
        return float(low[0]), float(high[0])
    return low.reshape(shape), high.reshape(shape)


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its confidence interval (arrays of one shape, or floats)."""

    point: np.ndarray | float
    low: np.ndarray | float
    high: np.ndarray | float


def interval_estimate(x, statistic: Callable = iqm, *, strata=None, reps: int = REPS, confidence: float = 0.95,
                      seed: int | np.random.Generator | None = 0) -> Estimate:
    """``statistic`` over axis 0 of ``x`` (default the IQM over seeds) with its
    :func:`bootstrap_ci` interval."""
    a = np.asarray(x, dtype=np.float64)
    low, high = bootstrap_ci(a, statistic, strata=strata, reps=reps, confidence=confidence, seed=seed)
    point = statistic(a, axis=0)
    if np.ndim(point) == 0:
        point = float(point)
    return Estimate(point, low, high)
