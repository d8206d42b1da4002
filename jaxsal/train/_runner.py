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

from jaxsal.train._checkpoint import Checkpoints
from jaxsal.train._logging import MetricWriter


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

  The metric log is cut after the restored step, so a resumed run does not
  log a step twice. Returns ``(state, restored_step or None)``.
  """
  step = int(config.checkpoint.restore_step)
  restored = ckpt.restore(
    state, None if step < 0 else step, expect_meta={k: meta[k] for k in expect}
  )
  if restored is None:
    return state, None
  state = restored[0]
  restored_step = int(jax.device_get(state.step))
  writer.truncate_after(restored_step)
  if jax.process_index() == 0:
    label = f"{what} checkpoint" if what else "checkpoint"
    print(f"jaxsal: restored {label} at step {restored_step} from {ckpt.directory}", flush=True)
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
  t0, steps_done = time.perf_counter(), 0
  try:
    for step in range(start, total):
      state, metrics = step_fn(state, prepare(next(batches)))
      for k, v in metrics.items():
        window.setdefault(k, []).append(v)
      steps_done += 1
      done = step + 1
      if done % log_every == 0 or done == total:
        # One device-to-host transfer per window, not per step.
        means = {f"train_{k}": float(np.mean(jax.device_get(v))) for k, v in window.items()}
        means["steps_per_sec"] = steps_done / max(time.perf_counter() - t0, 1e-9)
        history.append(writer.write(done, "train", means))
        bar.set_postfix(**postfix(means))
        window, t0, steps_done = {}, time.perf_counter(), 0
      if done % eval_every == 0 or done == total:
        ev = evaluate(state)
        last_eval = writer.write(done, "eval", {f"eval_{k}": v for k, v in ev.items()})
        line = eval_line(done, ev)
        if is_main and progress and line:
          bar.write(line)
      ckpt.save(done, state, meta=meta, force=(done == total))
      bar.update(1)
  finally:
    bar.close()
    ckpt.close()
  if last_eval is None and start == total and jax.process_count() == 1:
    # A finished run is not evaluated again: its final evaluation is in the log
    # (experiments that reuse a trained model call this often). Multi-host runs
    # evaluate, so that every host takes part in the same collectives.
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
