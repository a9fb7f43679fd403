"""Episodes of saved runs, replayed (the ``episodes/<level>__<variant>.gif`` of a sweep's figures).

:func:`play_episode` replays one greedy episode of a saved run (:func:`agents.load`) on its
level (or the level it was evaluated on); :func:`save_episode_gif` writes it as a GIF
(:func:`envs.pictures.save_gif`, Pillow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

def play_episode(path, env_seed: int = 0, eval_level: str | None = None) -> tuple[list, int]:
    """The observations ``[4, H, W]`` of one greedy episode of the saved run at ``path`` (env
    seed ``env_seed``) on its level, or on ``eval_level`` (a registered name; the run's level
    params that the registered level does not already have carry over, as in the sweep), and
    that level's ``max_steps``."""
    import dataclasses

    import agents
    from envs.levels import get_level
    from envs.vector import StopButtonVectorEnv

    run = agents.load(path)
    if run.policy is None:
        raise ValueError("the saved run has no policy")
    level = run.level
    if eval_level is not None:
        trained = get_level(run.level.name).params
        changed = {f.name: getattr(run.level.params, f.name) for f in dataclasses.fields(trained)
                   if getattr(run.level.params, f.name) != getattr(trained, f.name)}
        level = get_level(eval_level)
        level = level.with_params(**changed) if changed else level
    env = StopButtonVectorEnv(num_envs=1, level=level)
    try:
        run.policy.reset_state(1)
        obs, _ = env.reset(seed=env_seed)
        frames = [np.array(obs[0], copy=True)]
        for _ in range(level.params.max_steps + 1):
            engine = env.engine  # the policy acts on the level played, eval_level included
            obs, _, term, trunc, infos = env.step(np.asarray(run.policy.act(engine.obs, engine), dtype=np.int64))
            if term[0] or trunc[0]:
                frames.append(np.array(infos["final_obs"][0], copy=True))
                break
            frames.append(np.array(obs[0], copy=True))
    finally:
        env.close()
    return frames, int(level.params.max_steps)


def save_episode_gif(run_path, gif_path, env_seed: int = 0, eval_level: str | None = None) -> Path:
    """Replay one greedy episode of the saved run at ``run_path`` (:func:`play_episode`) and write
    it as an animated GIF at ``gif_path`` (4 frames a second)."""
    from envs.pictures import save_gif

    frames, max_steps = play_episode(run_path, env_seed, eval_level)
    gif_path = Path(gif_path)
    gif_path.parent.mkdir(parents=True, exist_ok=True)
    save_gif(frames, gif_path, fps=4, max_steps=max_steps)
    return gif_path
