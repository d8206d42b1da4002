"""What every jaxsal training loop shares: resume, the step loop, logging, evaluation, checkpoints.

The classifier, masker and generator loops differ in their state, step and
evaluation; the rest (restoring the latest checkpoint and truncating the
metric log after it, the progress bar, the per-window means written to
``metrics.jsonl``, evaluation every ``eval_every`` steps and at the end,
checkpoints every ``checkpoint.every`` steps and at the end) lives here once.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxsal.train import _interrupt
from jaxsal.train._checkpoint import Checkpoints
from jaxsal.train._logging import MetricWriter


class NonFiniteError(FloatingPointError):
  """A training metric (a loss or a gradient norm) became NaN or Inf; the run stopped."""

  def __init__(self, message: str, step: int, metric: str):
    super().__init__(message)
    self.step = step
    self.metric = metric


def _guarded(name: str) -> bool:
  """The metrics checked finite: the losses and the gradient norms."""
  return "loss" in name or "grad_norm" in name


def _stop_requested(*, sync_point: bool) -> bool:
  """Whether to stop after this step for Ctrl-C.

  One process decides alone. The processes of a multi-process job must stop
  at the same step (a checkpoint is saved by all of them together), so they
  decide together, at the steps where they synchronise anyway (a logged step,
  a checkpoint, the last step): if Ctrl-C reached any of them, all stop.
  """
  if jax.process_count() == 1:
    return _interrupt.requested()
  if not sync_point:
    return False
  from jax.experimental import multihost_utils

  flags = multihost_utils.process_allgather(np.asarray(_interrupt.requested(), np.int32))
  return bool(np.any(flags))


def restore(
  ckpt: Checkpoints,
  state: Any,
  config,
  *,
  meta: dict,
  expect: tuple[str, ...],
  writer: MetricWriter,
  what: str,
) -> tuple[Any, int | None]:
  """Restores the latest checkpoint (or ``config.checkpoint.restore_step``) into ``state``.

  Restoring an earlier step than the latest (``restore_step``) moves the later
  steps' checkpoints aside (``Checkpoints.set_aside``: kept, not deleted), so
  the run trains on from there and saves those steps again. The metric log is
  cut after the restored step, so a resumed run does not log a step twice.
  Returns ``(state, restored_step or None)``.
  """
  step = int(config.checkpoint.restore_step)
  restored = ckpt.restore(
    state, None if step < 0 else step, expect_meta={k: meta[k] for k in expect}
  )
  if restored is None:
    return state, None
  state = restored[0]
  restored_step = int(jax.device_get(state.step))
  moved, dest = ckpt.set_aside(restored_step)
  writer.truncate_after(restored_step)
  if jax.process_index() == 0:
    label = f"{what} checkpoint" if what else "checkpoint"
    print(f"jaxsal: restored {label} at step {restored_step} from {ckpt.directory}", flush=True)
    if moved:
      print(f"jaxsal: moved the checkpoints of steps {moved} aside to {dest}", flush=True)
  return state, restored_step


def write_config(workdir: str, config) -> None:
  """``config.json`` in ``workdir``, on the first host."""
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      json.dump(json.loads(config.to_json_best_effort()), f, indent=2, sort_keys=True)


def run_steps(
  *,
  state: Any,
  step_fn: Callable,
  batches: Iterator,
  prepare: Callable,
  start: int,
  total: int,
  log_every: int,
  eval_every: int,
  writer: MetricWriter,
  ckpt: Checkpoints,
  meta: dict,
  evaluate: Callable[[Any], dict],
  desc: str,
  progress: bool,
  postfix: Callable[[dict], dict],
  eval_line: Callable[[int, dict], str | None],
) -> tuple[Any, list, dict]:
  """Runs steps ``start + 1 .. total``; returns ``(state, train records, last eval record)``.

  Args:
    step_fn: ``(state, batch) -> (state, metrics)``, jitted by the caller.
    batches: host batches, the first one being step ``start + 1``'s.
    prepare: a host batch -> the step's (sharded) batch.
    evaluate: ``state -> metrics`` (a dict of numbers).
    postfix: the window's means -> the progress bar's postfix.
    eval_line: ``(step, metrics) -> a line to print, or None``.

  When no step is left to run, the last eval record is the log's record of
  the final step (on one host), or else the restored state is evaluated (and
  not logged again), so the last eval record is always there.

  The losses and gradient norms of every step are checked finite when they
  are fetched anyway: at each logged step and before each checkpoint, so no
  checkpoint holds a state that came from a non-finite step.

  Raises:
    NonFiniteError: a loss or gradient norm was NaN or Inf; the message names
      the first such step and metric, and the last checkpoint kept.
    jaxsal.train._interrupt.RunInterrupted: Ctrl-C (under the ``jaxsal``
      command); a checkpoint of the step reached was saved first.
  """
  is_main = jax.process_index() == 0
  bar = tqdm(
    total=total,
    initial=start,
    desc=desc,
    disable=not (progress and is_main),
    dynamic_ncols=True,
    mininterval=0.5,
  )
  history, last_eval = [], None
  window: dict[str, list] = {}
  window_steps: list[int] = []
  t0 = time.perf_counter()

  def check_window() -> None:
    # The window's metrics come to the host once (and stay there for the
    # log), not once per step.
    for k in window:
      window[k] = [np.asarray(v) for v in jax.device_get(window[k])]
    for i, at in enumerate(window_steps):
      for k, values in window.items():
        if _guarded(k) and not np.all(np.isfinite(values[i])):
          ckpt.wait()  # a save in flight is of a good step: let it finish
          kept = ckpt.steps()
          last = f"the last checkpoint, step {kept[-1]}, is kept" if kept else "no checkpoint"
          raise NonFiniteError(
            f"training stopped at step {at}: train_{k} is {float(np.mean(values[i]))} "
            f"(not finite); {last} in {ckpt.directory}. Check the inputs and the config "
            "(dataset.std, the learning rate) before resuming",
            at,
            f"train_{k}",
          )

  try:
    with _interrupt.loop():
      for step in range(start, total):
        state, metrics = step_fn(state, prepare(next(batches)))
        for k, v in metrics.items():
          window.setdefault(k, []).append(v)
        done = step + 1
        window_steps.append(done)
        log = done % log_every == 0 or done == total
        stop = _stop_requested(sync_point=log or done == total or ckpt.should_save(done))
        save = done == total or stop or ckpt.should_save(done)
        if log or save:
          check_window()
        if log:
          means = {f"train_{k}": float(np.mean(v)) for k, v in window.items()}
          means["steps_per_sec"] = len(window_steps) / max(time.perf_counter() - t0, 1e-9)
          history.append(writer.write(done, "train", means))
          bar.set_postfix(**postfix(means))
          window, window_steps, t0 = {}, [], time.perf_counter()
        if done % eval_every == 0 or done == total:
          ev = evaluate(state)
          last_eval = writer.write(done, "eval", {f"eval_{k}": v for k, v in ev.items()})
          line = eval_line(done, ev)
          if is_main and progress and line:
            bar.write(line)
        saved = save and ckpt.save(done, state, meta=meta, force=True)
        bar.update(1)
        if stop or (jax.process_count() == 1 and _interrupt.requested()):
          if not saved:
            check_window()
            ckpt.save(done, state, meta=meta, force=True)
          ckpt.wait()
          raise _interrupt.RunInterrupted(
            f"jaxsal: interrupted at step {done}; saved a checkpoint there; rerun the same "
            f"command to resume from step {done}"
          )
  finally:
    bar.close()
    ckpt.close()
  if last_eval is None and start == total:
    # A finished run is not evaluated again: its final evaluation is in the log
    # (experiments that reuse a trained model call this often). Every process
    # reads the same log (the workdir is shared), so all of them skip the
    # evaluation together, or none does and all take part in its collectives.
    logged = [r for r in writer.read() if r.get("kind") == "eval" and r.get("step") == total]
    last_eval = logged[-1] if logged else None
  if last_eval is None:
    ev = evaluate(state)
    last_eval = {"step": start, "kind": "eval", **{f"eval_{k}": v for k, v in ev.items()}}
  return state, history, last_eval


def write_eval(workdir: str, last_eval: dict, **extra) -> dict:
  """The metrics of an eval record, without their ``eval_`` prefix; also ``eval.json`` on the first host."""
  metrics = {k[len("eval_") :]: v for k, v in last_eval.items() if k.startswith("eval_")}
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "eval.json"), "w") as f:
      json.dump({"step": last_eval["step"], "metrics": metrics, **extra}, f, indent=2)
  return metrics
