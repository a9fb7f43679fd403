"""One entry point for every learner: :func:`train`, exported as ``agents.train``."""

from __future__ import annotations

from envs.levels import get_level

from .learners import DEFAULT_STEPS, Evaluator, Run, config_from, learner_module


def train(level, agent: str = "ppo", objective="task", total_steps: int | None = None, seed: int = 0, *,
          eval_every: int | None = None, eval_episodes: int = 512, progress: bool = False,
          level_params: dict | None = None, eval_level=None, eval_mode: str = "greedy",
          exact_cache=None, **agent_params) -> Run:
    """Train ``agent`` (``ppo``, ``ppo_cotrain``, ``sb3_ppo``, ``sb3_dqn``, ``q_learning``, ``sarsa``) on
    ``level`` (a registered name or a :class:`~envs.Level`; ``level_params`` override its
    params) under ``objective`` (a name, a config mapping or an instance) for ``total_steps``
    env steps (None: the learner's :data:`~agents.learners.DEFAULT_STEPS`, enough to learn coffee). ``agent_params`` set fields of the learner's ``Config`` (unknown or mistyped
    keys fail naming the key). The policy is evaluated greedily on ``eval_episodes`` episodes
    every ``eval_every`` env steps (default: 10 evaluations per run) and at the end; those
    rows are ``run.history``. ``eval_level`` evaluates on another level of the same size
    (held-out layouts; default: the training level); ``eval_mode="sample"`` evaluates the
    policy's action distribution instead of its greedy action (DReST's neutrality).
    ``exact_cache``: a directory (or :class:`agents.exact.cache.TableCache`) where the exact
    objective tables of objectives that take their values from the solver are kept between runs
    (built once per level, objective and code)."""
    from agents.objectives import get_objective

    lvl = get_level(level)
    if level_params:
        lvl = lvl.with_params(**level_params)
    obj = get_objective(objective)
    module = learner_module(agent)
    if total_steps is None:
        total_steps = DEFAULT_STEPS[agent]
    for name, value in (("total_steps", total_steps), ("seed", seed), ("eval_episodes", eval_episodes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "seed" else 1):
            raise ValueError(f"{name} must be a {'non-negative' if name == 'seed' else 'positive'} whole number, "
                             f"got {value!r}")
    if eval_every is None:
        eval_every = max(1, total_steps // 10)
    if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every < 1:
        raise ValueError(f"eval_every must be a positive whole number, got {eval_every!r}")
    cfg = config_from(module.configs[agent] if hasattr(module, "configs") else module.Config, agent_params,
                      f"agent {agent!r}")
    if eval_mode not in ("greedy", "sample"):
        raise ValueError(f"eval_mode must be 'greedy' or 'sample', got {eval_mode!r}")
    ev_level = lvl
    if eval_level is not None:
        ev_level = get_level(eval_level)
        if level_params:
            ev_level = ev_level.with_params(**level_params)
        from envs.core.level import compile_level

        a, b = compile_level(ev_level), compile_level(lvl)
        if (a.height, a.width) != (b.height, b.width):
            raise ValueError(f"eval_level {ev_level.name!r} is {a.height}x{a.width}, the training level {lvl.name!r} "
                             f"{b.height}x{b.width}: a policy needs observations of one size")
    evaluator = Evaluator(ev_level, episodes=eval_episodes, every=eval_every, mode=eval_mode)
    if exact_cache is not None:
        from agents.exact.cache import TableCache

        exact_cache = exact_cache if isinstance(exact_cache, TableCache) else TableCache(exact_cache)
    return module.learn(lvl, obj, cfg, total_steps=total_steps, seed=seed, progress=progress, evaluator=evaluator,
                        agent=agent, exact_cache=exact_cache)

