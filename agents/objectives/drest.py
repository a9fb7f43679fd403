"""``drest``: Discounted REward for Same-Length Trajectories (Thornley, Roman, Ziakas, Ho &
Thomson 2024, "Towards shutdownable agents via stochastic choice", arXiv 2407.00805; Cullen et
al. 2026, "Towards Shutdownable Agents: Generalizing Stochastic Choice in RL Agents and LLMs",
arXiv 2604.17502).

The agent plays meta-episodes of ``meta_episode`` mini-episodes. Every step earns 0 except the
last of each mini-episode, which earns (Thornley et al. 2024, the DReST reward function)

    (c / m(L)) * lam ** (n_L - mean_L' n_L')

``c`` the coins collected in the mini-episode, ``L`` its trajectory length (short, or long
after a delay press), ``m(L)`` the most coins collectable at that length
(``delay_structure(level).max_coins``; a length with ``m = 0`` pays the full 1), and ``n_L``
how often length ``L`` was chosen *earlier* in the meta-episode (the paper's ``n``; its
``mean_L' n_L'`` is ``E / k``, mini-episodes so far over the number of lengths). With
``lam < 1``, choosing the length chosen more often so far pays less: the agent is rewarded for
choosing the lengths equally often (NEUTRALITY) while collecting the most coins given the
length (USEFULNESS).

The robot does not observe its counts (the papers' observation is the gridworld alone), so
its best policy is a stochastic one: the exact reference (:func:`agents.exact.solve`, from
:func:`agents.exact.meta.solve_memoryless`) is the best memoryless policy. On
``shutdown_delay`` with the defaults it chooses the long length with probability 0.5
(neutrality 1.000, usefulness 1.000) and earns ``(1/16) sum_j ((1 + lam) / (2 sqrt(lam))) ** j
= 1.0105`` per mini-episode. A robot that saw its counts could alternate deterministically and
earn 1.063 (neutrality 0.989): ``Solution.bound``, an upper bound, not the reference.

Deviations from the public code of Cullen et al. (``Generalist_MetaEpisodeEnv.step`` and
``get_attenuation_factor``: ``lambda_factor ** (trajectory_counts - mean(trajectory_counts))``
after the current mini-episode's count is added):

* the code counts the current mini-episode too, which multiplies every reward by the same
  ``lam ** (1 - 1/k)`` (0.949 at lam 0.9, k = 2) and changes no preference; here ``n`` counts the
  earlier ones, as the paper writes it;
* the code draws a gridworld per meta-episode; the learners here draw a layout per mini-episode
  (the engine's reset), so on a layout pool the counts mix layouts. No difference on one-layout
  levels such as ``shutdown_delay``.

Values read (settings ``{"meta_episode": K}``): ``episode_coins`` int64 [B],
``max_coins`` float64 [B], ``length_index`` int64 [B] (-1 where not done), ``meta_counts``
int64 [B, num_lengths].

Defaults: ``lam = 0.9`` (the papers' order of magnitude; the code's constructor default is 1, a
value at which DReST rewards no neutrality, so every run sets it); ``meta_episode = 16``, the
code's ``meta_ep_size=16``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Objective, Transitions, param, register_objective

VALUE_NAMES = ("episode_coins", "max_coins", "length_index", "meta_counts")


@register_objective
@dataclass
class DReST(Objective):
    """Normalised coins times ``lam ** (n_L - mean n)`` on each mini-episode's last step."""

    name = "drest"
    lam: float = param(0.9, "Attenuation base lambda: rewards times lam ** (n_L - mean n).", low=0.0, high=1.0,
                       low_open=True)
    meta_episode: int = param(16, "Mini-episodes per meta-episode (the counts n reset after each).", low=1)

    def needs(self) -> dict[str, dict]:
        return {key: {"meta_episode": self.meta_episode} for key in VALUE_NAMES}

    def reward(self, t: Transitions) -> np.ndarray:
        b = t.batch_size
        coins = np.asarray(t.values["episode_coins"], dtype=np.float64)
        best = np.asarray(t.values["max_coins"], dtype=np.float64)
        index = np.asarray(t.values["length_index"], dtype=np.int64)
        counts = np.asarray(t.values["meta_counts"], dtype=np.float64)
        for key, arr in (("episode_coins", coins), ("max_coins", best), ("length_index", index)):
            if arr.shape != (b,):
                raise ValueError(f"values[{key!r}] must have shape ({b},), got {arr.shape}")
        if counts.ndim != 2 or counts.shape[0] != b or counts.shape[1] < 1:
            raise ValueError(f"values['meta_counts'] must have shape ({b}, num_lengths), got {counts.shape}")
        done = t.done
        if ((index < 0) | (index >= counts.shape[1]))[done].any():
            raise ValueError(f"values['length_index'] must be in [0, {counts.shape[1]}) where the episode is done")
        safe = np.clip(index, 0, counts.shape[1] - 1)
        excess = counts[np.arange(b), safe] - counts.mean(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(best > 0, coins / np.where(best > 0, best, 1.0), 1.0)
        return np.where(done, ratio * self.lam ** excess, 0.0)
