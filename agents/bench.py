"""``python -m agents.bench``: native PPO against stable-baselines3's PPO, in one run.

Throughput (env steps per second of training, end to end: env, rollout, updates):

* ``native PPO``: :mod:`agents.learners.ppo` with its defaults (embed_mlp encoder, 64-64 MLP);
* ``SB3 PPO, defaults``: ``PPO("MlpPolicy", make_vec_env(...))``, SB3's defaults throughout
  (one env in a ``DummyVecEnv``, ``n_steps=2048``, ``batch_size=64``, ``n_epochs=10``) over the
  gymnasium single env wrapped in :class:`envs.wrappers.OneHotObservation`;
* ``SB3 PPO, matched``: the native run's settings (envs, rollout length, minibatch, epochs,
  learning rate, gamma, lambda, clip, coefficients; SB3's ``MlpPolicy`` with ``net_arch=[64, 64]``,
  i.e. separate 64-64 ReLU policy and value MLPs) on
  :class:`envs.sb3.StopButtonVecEnv` (all envs in one engine, codes one-hot inside the
  network by :class:`envs.sb3.OneHotExtractor`), the way :mod:`agents.learners.sb3` runs SB3;
* ``SB3 PPO, matched, same network``: as above, with the native network itself (its encoder and
  trunk as SB3's features extractor, SB3's linear policy and value heads on top; SB3 then runs
  the native sparse first layer too), so the ratio is the training loop alone.

Then the wall time each of native PPO, SB3 (matched) and SB3 (defaults, capped at 120 s) needs to
reach 95% delivery: on
``coffee`` 0.95; on ``off_switch``, where no policy that is optimal for the task delivers every
time (the human may press the button first), 95% of the exact optimum's delivery rate
(0.95 * 0.92). The time is measured from the call that builds the learner to the evaluation
that first reaches the threshold, evaluations included (``train_time`` leaves them out).

Every contender runs with the same torch thread count (``--threads``, default 1: on a 2-core
machine shared with other work, a second OpenMP thread makes small ops wait at barriers; see
:class:`agents.learners.ppo.Config`). Throughput is the best of ``--repeats`` runs, each timed
like SB3's ``learn`` (from the first rollout, without building the learner); the native run's
setup and its rate with the setup included are in the JSON output. ``--quick`` shortens
everything (a smoke test for CI; its short runs make the ratios noisy).
"""

from __future__ import annotations

import argparse
import functools
import json
import time


def _threads(n: int) -> None:
    import numba
    import torch

    torch.set_num_threads(n)
    numba.set_num_threads(1)


# ---------------------------------------------------------------------------------------------
# Throughput
# ---------------------------------------------------------------------------------------------

def native_throughput(level: str, steps: int, threads: int, **cfg) -> dict:
    """Env steps per second of :func:`agents.learners.ppo.learn`: from its first rollout to its
    end (like SB3's ``learn``, without building the learner; one final evaluation of 64
    episodes left out). ``setup_seconds``: the building (engine, network, loading numba's
    cached kernels)."""
    from agents.learners import Evaluator
    from agents.learners.ppo import Config, learn
    from envs.levels import get_level

    lvl = get_level(level)
    ev = Evaluator(lvl, episodes=64, num_envs=64, every=10 ** 12)
    t0 = time.perf_counter()
    run = learn(lvl, "task", Config(torch_threads=threads, **cfg), total_steps=steps, seed=0, evaluator=ev)
    whole = time.perf_counter() - t0 - ev.eval_seconds
    x = run.extra
    seconds = x["seconds_this_call"] - ev.eval_seconds
    loop = x["rollout_seconds"] + x["update_seconds"]
    return {"contender": "native PPO", "env_steps": x["env_steps"], "seconds": seconds,
            "steps_per_second": x["env_steps"] / seconds, "setup_seconds": whole - seconds,
            "with_setup_steps_per_second": x["env_steps"] / whole, "loop_steps_per_second": x["env_steps"] / loop,
            "rollout_seconds": x["rollout_seconds"], "update_seconds": x["update_seconds"],
            "delivered": run.history[-1]["delivered"]}


def _matched_kwargs(cfg, env, same_network: bool) -> dict:
    import torch
    from stable_baselines3.common.utils import LinearSchedule

    from agents.learners.base import resolve_gamma
    from agents.objectives import Task
    from envs.sb3 import policy_kwargs

    lr = LinearSchedule(cfg.lr, 0.0, 1.0) if cfg.anneal_lr else cfg.lr  # as the native run anneals it
    if same_network:
        pk = {"features_extractor_class": _native_extractor_class(),
              "features_extractor_kwargs": {"config": cfg, "time_scale": env.time_scale}, "net_arch": []}
    else:
        pk = policy_kwargs(env, net_arch=list(cfg.hidden), activation_fn=torch.nn.ReLU)
    return dict(n_steps=cfg.num_steps, batch_size=cfg.minibatch_size, n_epochs=cfg.epochs, learning_rate=lr,
                gamma=resolve_gamma(Task(), cfg.gamma, 0.97), gae_lambda=cfg.gae_lambda, clip_range=cfg.clip, ent_coef=cfg.ent_coef,
                vf_coef=cfg.vf_coef, max_grad_norm=cfg.max_grad_norm, normalize_advantage=cfg.norm_adv,
                policy_kwargs=pk, device="cpu", verbose=0)


@functools.lru_cache(maxsize=None)
def _native_extractor_class():
    import torch
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    from agents.learners.networks import ActorCritic

    class _NativeExtractor(BaseFeaturesExtractor):
        """The native PPO network's encoder and trunk (everything but its head) as an SB3
        features extractor; SB3's action and value heads sit on its last hidden layer."""

        def __init__(self, observation_space, config, time_scale):
            _, h, w = observation_space.shape
            super().__init__(observation_space, config.hidden[-1])
            self.net = ActorCritic(h, w, time_scale, config)
            del self.net.head

        def forward(self, observations: torch.Tensor) -> torch.Tensor:
            obs = observations.to(torch.uint8)  # SB3 hands the code grid over as floats
            return self.net.trunk(self.net.first_layer(obs))

    return _NativeExtractor


def sb3_throughput(level: str, steps: int, threads: int, mode: str) -> dict:
    """Env steps per second of SB3's ``PPO.learn`` (the model is built before the clock starts).
    ``mode``: ``defaults``, ``matched`` or ``same_network``."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    import envs  # noqa: F401  (registers the levels)
    from agents.learners.ppo import Config
    from envs.levels import gym_id
    from envs.sb3 import StopButtonVecEnv
    from envs.wrappers import OneHotObservation

    _threads(threads)
    if mode == "defaults":
        env = make_vec_env(gym_id(level), n_envs=1, seed=0, wrapper_class=OneHotObservation)
        model = PPO("MlpPolicy", env, seed=0, device="cpu", verbose=0)
        name = "SB3 PPO, defaults"
    else:
        cfg = Config()
        env = StopButtonVecEnv(level, cfg.num_envs, seed=0, observation="codes")
        model = PPO("MlpPolicy", env, seed=0, **_matched_kwargs(cfg, env, mode == "same_network"))
        name = "SB3 PPO, matched" + (", same network" if mode == "same_network" else "")
    _threads(threads)  # SB3's set_random_seed / numba may touch the thread counts
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps)
    wall = time.perf_counter() - t0
    env.close()
    return {"contender": name, "env_steps": int(model.num_timesteps), "seconds": wall,
            "steps_per_second": model.num_timesteps / wall}


# ---------------------------------------------------------------------------------------------
# Time to a delivery rate
# ---------------------------------------------------------------------------------------------

def _stopping_evaluator(level, threshold: float, every: int, episodes: int):
    from agents.learners import Evaluator

    class Stopping(Evaluator):
        """Stops the run (``learn`` checks ``stop``) once delivery reaches the threshold."""

        stop = False

        def __call__(self, policy, env_steps, **extra):
            row = super().__call__(policy, env_steps, **extra)
            if row["delivered"] >= threshold and not self.stop:
                self.stop = True
                self.reached = row
            return row

    ev = Stopping(level, episodes=episodes, num_envs=min(256, episodes), every=every)
    ev.reached = None
    return ev


def native_time_to(level: str, threshold: float, cap_steps: int, threads: int, every: int, episodes: int) -> dict:
    """Env steps and seconds native PPO needs on ``level`` until a greedy evaluation (``episodes`` episodes every
    ``every`` steps) reaches ``delivered >= threshold`` (at most ``cap_steps``), with ``threads`` torch
    threads."""
    from agents.learners.ppo import Config, learn
    from envs.levels import get_level

    lvl = get_level(level)
    ev = _stopping_evaluator(lvl, threshold, every, episodes)  # its clock starts here
    learn(lvl, "task", Config(torch_threads=threads), total_steps=cap_steps, seed=0, evaluator=ev)
    return _reached("native PPO", level, threshold, ev)


def sb3_time_to(level: str, threshold: float, cap_steps: int, cap_seconds: float, threads: int, every: int,
                episodes: int, mode: str = "matched") -> dict:
    """Like :func:`native_time_to` for SB3's PPO (``mode``: ``matched`` or ``defaults``), stopped
    at the threshold or after ``cap_seconds``."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    from agents.learners import Policy
    from agents.learners.ppo import Config
    from agents.learners.sb3 import SB3Policy
    from envs.levels import get_level, gym_id
    from envs.sb3 import StopButtonVecEnv
    from envs.wrappers import OneHotObservation, one_hot

    lvl = get_level(level)
    ev = _stopping_evaluator(lvl, threshold, every, episodes)
    if mode == "defaults":
        env = make_vec_env(gym_id(level), n_envs=1, seed=0, wrapper_class=OneHotObservation)
        model = PPO("MlpPolicy", env, seed=0, device="cpu", verbose=0)
        scale = float(min(lvl.params.max_steps, 255))

        class OneHotPolicy(Policy):
            def act(self, obs, engine=None):
                return model.predict(one_hot(obs, scale), deterministic=True)[0].astype("int64")

        policy = OneHotPolicy()
    else:
        cfg = Config()
        env = StopButtonVecEnv(level, cfg.num_envs, seed=0, observation="codes")
        model = PPO("MlpPolicy", env, seed=0, **_matched_kwargs(cfg, env, False))
        policy = SB3Policy("sb3_ppo", model=model)
    _threads(threads)

    class Check(BaseCallback):
        def _on_step(self) -> bool:
            if ev.due(self.num_timesteps):
                ev(policy, self.num_timesteps)
            return not ev.stop and time.perf_counter() - ev.start < cap_seconds

    # the native run's step budget (a learning-rate schedule, if any, runs over it)
    model.learn(total_timesteps=cap_steps, callback=Check())
    if not ev.stop and (not ev.history or ev.history[-1]["env_steps"] != model.num_timesteps):
        ev(policy, int(model.num_timesteps))  # where it got to
    env.close()
    out = _reached(f"SB3 PPO, {mode}", level, threshold, ev)
    out["capped_at_seconds"] = cap_seconds
    return out


def _reached(name, level, threshold, ev) -> dict:
    row = ev.reached
    last = ev.history[-1] if ev.history else {}
    return {"contender": name, "level": level, "threshold": threshold, "reached": row is not None,
            "env_steps": (row or last).get("env_steps"), "wall_time": (row or last).get("wall_time"),
            "train_time": (row or last).get("train_time"), "delivered": (row or last).get("delivered")}


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------

def _thresholds() -> dict:
    import agents.exact as exact

    return {lv: 0.95 * exact.solve(lv, "task").metrics["delivered"] for lv in ("coffee", "off_switch")}


def main(argv=None) -> dict:
    """``python -m agents.bench``: print the learner benchmark (native PPO against SB3 in the same run) and
    return its figures."""
    p = argparse.ArgumentParser(prog="python -m agents.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--level", default="coffee", help="level of the throughput runs (default coffee)")
    p.add_argument("--steps", type=int, default=None, help="native PPO env steps (default 3M; 1M with --quick)")
    p.add_argument("--sb3-default-steps", type=int, default=None, help="SB3 defaults: env steps (default 8192)")
    p.add_argument("--sb3-matched-steps", type=int, default=None,
                   help="SB3 matched: env steps (default 8 rollouts of the native batch; 2 with --quick)")
    p.add_argument("--repeats", type=int, default=None, help="throughput repeats, best kept (default 3; 1 quick)")
    p.add_argument("--threads", type=int, default=1, help="torch threads for every contender (default 1)")
    p.add_argument("--no-time-to", action="store_true", help="skip the time-to-95%%-delivery runs")
    p.add_argument("--sb3-cap", type=float, default=None,
                   help="seconds SB3 (matched) gets to reach the threshold (default 300; SB3 with its defaults "
                        "gets at most 120)")
    p.add_argument("--quick", action="store_true", help="short runs (for CI)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    from agents.learners.ppo import Config

    cfg = Config()
    quick = args.quick
    steps = args.steps or (1_000_000 if quick else 3_000_000)
    sb3_default = args.sb3_default_steps or (2048 if quick else 8192)
    sb3_matched = args.sb3_matched_steps or cfg.batch_size * (2 if quick else 8)
    repeats = args.repeats or (1 if quick else 3)
    cap = args.sb3_cap or (60.0 if quick else 300.0)
    cap_defaults = min(cap, 30.0 if quick else 120.0)
    _threads(args.threads)

    def best(fn):
        runs = [fn() for _ in range(repeats)]
        return max(runs, key=lambda r: r["steps_per_second"])

    print(f"# throughput on {args.level} ({args.threads} torch thread(s); best of {repeats})", flush=True)
    rows = [best(lambda: native_throughput(args.level, steps, args.threads))]
    _print_row(rows[-1])
    for mode, n in (("defaults", sb3_default), ("matched", sb3_matched), ("same_network", sb3_matched)):
        # SB3 with its defaults runs at a few hundred steps/s: one long run instead of repeats
        reps = 1 if mode == "defaults" else repeats
        rows.append(max((sb3_throughput(args.level, n, args.threads, mode) for _ in range(reps)),
                        key=lambda r: r["steps_per_second"]))
        _print_row(rows[-1])
    native = rows[0]["steps_per_second"]
    for r in rows[1:]:
        r["native_ratio"] = native / r["steps_per_second"]
    results = {"level": args.level, "threads": args.threads, "throughput": rows, "time_to": []}
    if not args.no_time_to:
        every = 2 * cfg.batch_size
        episodes = 256
        for lv, thr in _thresholds().items():
            print(f"# time to {thr:.3f} delivery on {lv}", flush=True)
            cap_steps = 3_000_000 if quick else 20_000_000
            r = native_time_to(lv, thr, cap_steps=cap_steps, threads=args.threads, every=every, episodes=episodes)
            _print_time(r)
            results["time_to"].append(r)
            r = sb3_time_to(lv, thr, cap_steps, cap, args.threads, every, episodes)
            _print_time(r)
            results["time_to"].append(r)
            r = sb3_time_to(lv, thr, cap_steps, cap_defaults, args.threads, 2 * 2048, episodes, mode="defaults")
            _print_time(r)
            results["time_to"].append(r)
    print()
    print(markdown(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return results


def _print_row(r):
    print(f"{r['contender']:36s} {r['env_steps']:>10,d} steps {r['seconds']:7.2f} s {r['steps_per_second']:>12,.0f} "
          f"steps/s", flush=True)


def _print_time(r):
    state = "reached" if r["reached"] else "NOT reached; stopped"
    print(f"{r['contender']:24s} {r['level']:12s} {state} at {r['env_steps']:,} steps, {r['wall_time']:.1f} s wall "
          f"({r['train_time']:.1f} s training), delivered {r['delivered']:.3f}", flush=True)


def markdown(results: dict) -> str:
    """The tables of docs/performance.md."""
    lines = [f"| contender ({results['level']}, {results['threads']} torch thread) | env steps | seconds | env steps/s "
             f"| native is |",
             "|---|---:|---:|---:|---:|"]
    for r in results["throughput"]:
        ratio = f"{r['native_ratio']:.1f}x faster" if "native_ratio" in r else ""
        lines.append(f"| {r['contender']} | {r['env_steps']:,} | {r['seconds']:.1f} | {r['steps_per_second']:,.0f} | "
                     f"{ratio} |")
    if results["time_to"]:
        lines += ["", "| contender | level | delivery threshold | reached | env steps | wall s | training s |",
                  "|---|---|---:|---|---:|---:|---:|"]
        for r in results["time_to"]:
            cap = f" (cap {r['capped_at_seconds']:.0f} s)" if not r["reached"] and "capped_at_seconds" in r else ""
            lines.append(f"| {r['contender']} | {r['level']} | {r['threshold']:.3f} | {'yes' if r['reached'] else 'no'}"
                         f"{cap} | {r['env_steps']:,} | {r['wall_time']:.1f} | {r['train_time']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
