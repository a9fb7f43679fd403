"""Live metrics of a training run: TensorBoard event files and, optionally, Weights & Biases.

Every learner logs the same names, so ``tensorboard --logdir SWEEP_DIR`` puts any runs side by
side (a sweep gives each run ``SWEEP_DIR/tb/<run_id>``):

* ``shutdown/<metric>`` at ``env_steps``: every evaluation (a row of
  :class:`~agents.learners.base.Evaluator`), one scalar per safety metric of
  :data:`agents.metrics.METRIC_NAMES` and the row's other metrics (the keys that come with a
  ``<metric>_se``); ``sb3_ppo``/``sb3_dqn`` write the same tags through SB3's logger.
* ``train/<key>``: a learner's own numbers. Native PPO after every update: ``pg_loss``,
  ``v_loss``, ``entropy``, ``approx_kl``, ``clipfrac`` (the last minibatch's; ``aux_loss`` too
  with AUP's learned auxiliary critics), ``ent_coef``, ``lr``, ``steps_per_second`` (the
  update's env steps over the seconds of its rollout and update); the tabular learners at
  each evaluation: ``table_size``, ``epsilon``, ``episodes``.
* ``rollout/task_return``, ``rollout/delivered``: native PPO's training episodes that ended
  during the update's rollout (the exploring policy, as SB3's ``rollout/`` tags are).

Each session of a run marks where it starts (:meth:`MetricsWriter.start`), so a run started
again in its folder (a sweep's retry) or resumed from a PPO checkpoint shows one curve.
``sb3_*`` W&B logging is not wired (SB3's logger writes their TensorBoard files).

A learner whose config has ``log_dir`` set writes there (:class:`MetricsWriter`, with
tensorboard's own event writer: the tabular learners stay free of torch). Weights & Biases is
off by default and not a dependency: with the environment variable ``STOPBUTTON_WANDB_PROJECT``
set (to a project name), native PPO and the tabular learners also log the same scalars to a
W&B run in that project (``wandb`` imported only then; missing, it is an error naming
``pip install wandb``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from pathlib import Path

#: Environment variable naming the Weights & Biases project to log to (unset: no W&B).
WANDB_ENV = "STOPBUTTON_WANDB_PROJECT"
#: Row keys of an evaluation that are not metrics.
_ROW_TIMES = ("env_steps", "wall_time", "train_time")


def _import_wandb(project: str):
    try:
        import wandb
    except ImportError as e:
        raise ImportError(f"Weights & Biases logging was asked for (project {project!r}, {WANDB_ENV}), but the wandb "
                          f"package is not installed: pip install wandb (or unset {WANDB_ENV})") from e
    return wandb


def _number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def evaluation_scalars(row: dict) -> dict[str, float]:
    """The tags and values one evaluation row is logged as: ``shutdown/<metric>`` for every
    metric (a key with a ``<metric>_se`` beside it) and ``train/<key>`` for a learner's numeric
    extras (the tabular learners' ``table_size``, ``epsilon``, ``episodes``)."""
    out = {}
    for key, value in row.items():
        if key in _ROW_TIMES or key.endswith("_se"):
            continue
        number = _number(value)
        if number is None:
            continue
        out[f"shutdown/{key}" if f"{key}_se" in row else f"train/{key}"] = number
    return out


class MetricsWriter:
    """Scalars of one run, to TensorBoard event files in ``log_dir`` (None: none) and to a
    Weights & Biases run in ``wandb_project`` (None: none; ``run_name`` and ``config`` name and
    describe it there). :meth:`start` marks the step a session starts from, ``scalars(step,
    {tag: value})`` logs, :meth:`evaluation` logs an :class:`~agents.learners.base.Evaluator`
    row, :meth:`close` ends both sinks."""

    def __init__(self, log_dir=None, *, wandb_project: str | None = None, run_name: str | None = None,
                 config: dict | None = None, flush_secs: int = 10):
        self.log_dir = None if log_dir is None else str(log_dir)
        self._tb = None
        self._wandb = None
        if wandb_project:
            wandb = _import_wandb(wandb_project)
            if self.log_dir is not None:
                Path(self.log_dir).mkdir(parents=True, exist_ok=True)
            self._wandb = wandb.init(project=wandb_project, name=run_name, dir=self.log_dir, config=config or {})
        if self.log_dir is not None:
            from tensorboard.summary.writer.event_file_writer import EventFileWriter

            Path(self.log_dir).mkdir(parents=True, exist_ok=True)
            self._tb = EventFileWriter(self.log_dir, flush_secs=flush_secs)

    def scalars(self, step: int, values: dict) -> None:
        """Log ``{tag: value}`` at ``step`` (env steps); values that are not numbers are skipped."""
        values = {k: v for k, v in ((k, _number(v)) for k, v in values.items()) if v is not None}
        if not values:
            return
        if self._tb is not None:
            from tensorboard.compat.proto.event_pb2 import Event
            from tensorboard.compat.proto.summary_pb2 import Summary

            summary = Summary(value=[Summary.Value(tag=k, simple_value=v) for k, v in values.items()])
            self._tb.add_event(Event(wall_time=time.time(), step=int(step), summary=summary))
        if self._wandb is not None:
            self._wandb.log(values, step=int(step))

    def evaluation(self, row: dict) -> None:
        """Log an evaluation row (:func:`evaluation_scalars`) at its ``env_steps`` and flush, so a
        running TensorBoard shows it at once."""
        self.scalars(row["env_steps"], evaluation_scalars(row))
        self.flush()

    def start(self, step: int = 0) -> None:
        """Mark where this session of the run starts: TensorBoard drops what earlier sessions in
        the folder logged at ``step`` or later, so a run started again from scratch (step 0) or
        resumed from a checkpoint (its step) shows one curve, not two."""
        if self._tb is not None:
            from tensorboard.compat.proto.event_pb2 import Event, SessionLog

            self._tb.add_event(Event(wall_time=time.time(), step=int(step),
                                     session_log=SessionLog(status=SessionLog.START)))

    def flush(self) -> None:
        """Write what is queued to the event file."""
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        """Flush and close the event file; finish the W&B run."""
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@contextlib.contextmanager
def logging_to(evaluator, log_dir, *, agent: str, level, objective, seed: int, config):
    """While the block runs, ``evaluator`` writes its rows to a :class:`MetricsWriter` of
    ``log_dir`` (and of W&B where :data:`WANDB_ENV` is set); yields the writer for the learner's
    own scalars, or None when there is nothing to write to. An evaluator that already has a
    writer (``Evaluator(..., writer=...)``) keeps it when the run asks for none."""
    project = os.environ.get(WANDB_ENV) or None
    previous = getattr(evaluator, "writer", None)
    if log_dir is None and project is None:
        yield previous
        return
    name = Path(log_dir).name if log_dir is not None else f"{agent}-{getattr(level, 'name', level)}-seed{seed}"
    info = {"agent": agent, "level": getattr(level, "name", str(level)), "objective": repr(objective),
            "seed": int(seed)}
    if dataclasses.is_dataclass(config):
        info.update({f"agent.{k}": v for k, v in dataclasses.asdict(config).items()})
    writer = MetricsWriter(log_dir, wandb_project=project, run_name=name, config=info)
    if evaluator is not None:
        evaluator.writer = writer
    try:
        yield writer
    finally:
        if evaluator is not None:
            evaluator.writer = previous
        writer.close()
