"""Orbax checkpoints: every N steps, keep K, restore the latest, and say so when one is corrupt.

This is the one file that talks to orbax. A checkpoint holds the train state
and a small JSON of metadata (the model's name, the config), so that
restoring into a different model is refused with a clear message.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
  """A checkpoint exists but cannot be used."""


class CorruptCheckpointError(CheckpointError):
  """The checkpoint asked for could not be read."""

  def __init__(self, message: str, step: int, previous: int | None):
    super().__init__(message)
    self.step = step
    self.previous = previous


class Checkpoints:
  """Saves and restores train states under one directory.

  Args:
    directory: where the step folders go (created if missing).
    every: save only on steps divisible by this (``save(..., force=True)``
      saves regardless).
    keep: how many of the newest checkpoints to keep.
    use_async: write in a background thread while training goes on. Orbax
      writes each step to a temporary folder and renames it when complete, so
      a process killed mid-write leaves no half checkpoint behind.

  Example:
    >>> import tempfile, jax.numpy as jnp
    >>> ckpt = Checkpoints(tempfile.mkdtemp(), every=100, keep=3, use_async=False)
    >>> state = {'w': jnp.arange(3.0)}
    >>> ckpt.save(100, state, meta={'model': 'small_cnn'})
    True
    >>> state, meta = ckpt.restore(state)
    >>> meta, state['w'].tolist()
    ({'model': 'small_cnn'}, [0.0, 1.0, 2.0])
    >>> ckpt.close()
  """

  def __init__(self, directory: str, *, every: int = 1, keep: int = 3, use_async: bool = True):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
      max_to_keep=keep,
      save_interval_steps=max(int(every), 1),
      enable_async_checkpointing=use_async,
      create=True,
    )
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def steps(self) -> list[int]:
    """The steps that have a finished checkpoint, oldest first."""
    self._manager.reload()
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any, *, meta: dict, force: bool = False) -> bool:
    """Saves ``state`` at ``step`` if it is a save step (or ``force``). Returns whether it saved."""
    return self._manager.save(
      int(step),
      args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
      force=force,
    )

  def wait(self) -> None:
    """Blocks until a background save has finished."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()

  def restore(
    self, target: Any, step: int | None = None, *, expect_meta: dict | None = None
  ) -> tuple[Any, dict] | None:
    """Restores a state with ``target``'s structure, shapes, dtypes and shardings.

    Args:
      target: a state (or tree of ``jax.ShapeDtypeStruct``) to restore into.
      step: the step to restore; the latest when None.
      expect_meta: metadata entries that must match (e.g. ``{'model': 'small_cnn'}``).

    Returns:
      ``(state, meta)``, or None when there is no checkpoint at all.

    Raises:
      CorruptCheckpointError: the checkpoint could not be read; the message
        names the previous checkpoint, if any, and how to use it.
      CheckpointError: the step does not exist, or the checkpoint belongs to
        another model.
    """
    steps = self.steps()
    if not steps:
      return None
    if step is None:
      step = steps[-1]
    if step not in steps:
      raise CheckpointError(
        f"no checkpoint at step {step} in {self.directory}; available steps: {steps}"
      )
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    try:
      meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))[
        "meta"
      ]
    except Exception as e:
      raise self._corrupt(step, steps, e) from e
    for key, want in (expect_meta or {}).items():
      if key in meta and meta[key] != want:
        raise CheckpointError(
          f"the checkpoint at step {step} in {self.directory} was written for {key}={meta[key]!r}, "
          f"but this run uses {key}={want!r}; use another workdir, or the matching config"
        )
    try:
      restored = self._manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
      )
    except Exception as e:
      raise self._corrupt(step, steps, e) from e
    return restored["state"], meta

  def _corrupt(self, step: int, steps: list[int], error: Exception) -> CorruptCheckpointError:
    previous = max((s for s in steps if s < step), default=None)
    reason = f"{type(error).__name__}: {str(error).splitlines()[0][:300] if str(error) else ''}"
    if previous is None:
      hint = f"There is no earlier checkpoint: delete {os.path.join(self.directory, str(step))} to start over."
    else:
      hint = (
        f"The previous checkpoint, step {previous}, is available: rerun with "
        f"--set checkpoint.restore_step={previous}, or delete "
        f"{os.path.join(self.directory, str(step))}."
      )
    return CorruptCheckpointError(
      f"the latest checkpoint (step {step}) in {self.directory} is corrupt or unreadable "
      f"({reason}). {hint}",
      step,
      previous,
    )
