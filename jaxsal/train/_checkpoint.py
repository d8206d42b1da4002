"""Orbax checkpoints: every N steps, keep K, restore the latest, and say so when one is corrupt.

This is the one file that talks to orbax. A checkpoint holds the train state,
a small JSON of metadata (the model's name, the kind of run) and the sha256
of the state's bytes. Restoring checks the metadata (another model or kind of
run is refused as such, never called corrupt), the checksum (a flipped byte
is found) and that the parameters are finite.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
import re
import sys
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

# An unfinished checkpoint folder that orbax removes before it saves that step again.
_UNFINISHED = re.compile(
  r"Attempted to create temporary directory (?P<path>.+) which already exists\. "
  r"Removing existing directory since it is not finalized\."
)


class _OrbaxWarningFilter(logging.Filter):
  """Keeps orbax's warnings that a jaxsal user cannot act on off stderr.

  - A checkpoint holds items a restore did not ask for: jaxsal restores a
    step's items one at a time (its metadata, its checksum, its state), so
    every restore would print it for the others.
  - A step's ``_CHECKPOINT_METADATA`` does not exist: a run killed while it
    finished a save; the step's arrays were complete (orbax renames the
    folder only then) and their checksum is verified on restore.
  - An unfinished ``<step>.orbax-checkpoint-tmp`` folder, left by a run
    killed while it saved that step, is removed before the step is saved
    again: replaced by one jaxsal line on stderr, once per folder.
  - jaxsal's own replacement of orbax's array handler
    (``_small_arrays_whole``): "Type handler registry type ... overriding".
  """

  def __init__(self):
    super().__init__()
    self._said: set[str] = set()

  def filter(self, record: logging.LogRecord) -> bool:
    message = record.getMessage()
    if "was found in the checkpoint, but could not be restored" in message:
      return False
    if message.startswith("Metadata file does not exist") and "_CHECKPOINT_METADATA" in message:
      return False
    if message.startswith("Type handler registry type") and "overriding" in message:
      return False
    unfinished = _UNFINISHED.search(message)
    if unfinished:
      path = unfinished.group("path")
      if path not in self._said:
        self._said.add(path)
        step = os.path.basename(path).split(".", 1)[0]
        print(
          f"jaxsal: removed an unfinished checkpoint of step {step} ({path}, left by a run "
          "stopped while it was written); that step is saved again",
          file=sys.stderr,
          flush=True,
        )
      return False
    return True


logging.getLogger("absl").addFilter(_OrbaxWarningFilter())

SET_ASIDE_DIR = "checkpoints_set_aside"


def host_tree(tree: Any) -> Any:
  """``tree``'s arrays as numpy on this host (a replicated array's local copy; typed keys as data)."""

  def one(x):
    if isinstance(x, jax.Array):
      if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
      if not x.is_fully_addressable:
        return np.asarray(x.addressable_data(0))
    return np.asarray(x)

  return jax.tree.map(one, tree)


def checksum(host: Any) -> str:
  """The sha256 of a host tree: every leaf's path, dtype, shape and bytes, in tree order."""
  h = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(host)[0]:
    a = np.ascontiguousarray(leaf)
    h.update(f"{jax.tree_util.keystr(path)}|{a.dtype.str}|{a.shape}|".encode())
    h.update(a.tobytes())
  return h.hexdigest()


def non_finite_params(host: Any) -> list[str]:
  """The paths of the parameter leaves (a ``params`` in their path) that hold NaN or Inf."""
  bad = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(host)[0]:
    name = jax.tree_util.keystr(path)
    a = np.asarray(leaf)
    if "params" in name and np.issubdtype(a.dtype, np.inexact) and not np.all(np.isfinite(a)):
      bad.append(name)
  return bad


def _shapes(tree: Any) -> list[tuple]:
  """The sorted (shape, dtype) of ``tree``'s leaves (orbax metadata or arrays alike)."""
  out = []
  for leaf in jax.tree.leaves(tree):
    if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
      out.append((tuple(leaf.shape), str(leaf.dtype)))
  return sorted(out)


class CheckpointError(RuntimeError):
  """A checkpoint exists but cannot be used."""


class CorruptCheckpointError(CheckpointError):
  """The checkpoint asked for could not be read."""

  def __init__(self, message: str, step: int, previous: int | None):
    super().__init__(message)
    self.step = step
    self.previous = previous


# Replicated arrays smaller than this are written whole by one replica; larger
# ones are split between the replicas that hold them (orbax's replica-parallel
# writes), which pays off for large states on many hosts but costs a compiled
# slice per array, shape and device at the first save: 112 of them, ~5 s of
# compilation, for the test masker's state on 8 CPU devices.
REPLICA_PARALLEL_MIN_BYTES = 8 * 2**20
_registered = False


def _small_arrays_whole() -> None:
  global _registered
  if _registered:
    return
  from orbax.checkpoint._src.serialization import jax_array_handlers

  handler = jax_array_handlers.ArrayHandler(
    min_slice_bytes_for_replica_parallel=REPLICA_PARALLEL_MIN_BYTES
  )
  ocp.type_handlers.register_type_handler(jax.Array, handler, override=True)
  _registered = True


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
    _small_arrays_whole()
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
      max_to_keep=keep,
      save_interval_steps=max(int(every), 1),
      enable_async_checkpointing=use_async,
      create=True,
    )
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def should_save(self, step: int) -> bool:
    """Whether ``save(step, ...)`` would save without ``force``."""
    return bool(self._manager.should_save(int(step)))

  def steps(self) -> list[int]:
    """The steps that have a finished checkpoint, oldest first."""
    self._manager.reload()
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any, *, meta: dict, force: bool = False) -> bool:
    """Saves ``state`` at ``step`` if it is a save step (or ``force``). Returns whether it saved.

    The state's sha256 (``checksum``) is saved with it, as the ``checksum`` item.
    """
    if not force and not self.should_save(step):
      return False
    digest = {"sha256": checksum(host_tree(state))}
    return self._manager.save(
      int(step),
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        meta=ocp.args.JsonSave(meta),
        checksum=ocp.args.JsonSave(digest),
      ),
      force=force,
    )

  def set_aside(self, after: int) -> tuple[list[int], str | None]:
    """Moves the checkpoints of the steps after ``after`` into ``checkpoints_set_aside/<time>/``.

    They are kept, not deleted, beside the checkpoints folder, so that a run
    restored from step ``after`` can save its later steps again. Only the
    first host moves them.

    Returns:
      ``(the steps moved, the folder they went to or None)``.
    """
    later = [s for s in self.steps() if s > after]
    if not later:
      return [], None
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    dest = os.path.join(os.path.dirname(self.directory), SET_ASIDE_DIR, stamp)
    if jax.process_index() == 0:
      os.makedirs(dest, exist_ok=True)
      for s in later:
        os.replace(os.path.join(self.directory, str(s)), os.path.join(dest, str(s)))
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils

      multihost_utils.sync_global_devices("jaxsal_set_aside")
    self._manager.reload()
    return later, dest

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
      CorruptCheckpointError: the checkpoint could not be read, its checksum
        does not match, or its parameters are not finite; the message names
        the previous checkpoint, if any, and how to use it.
      CheckpointError: the step does not exist, or the checkpoint belongs to
        another model or kind of run (its metadata or its arrays' shapes differ).
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
      # A classifier's checkpoints written before ``kind`` was recorded are a classifier's.
      got = meta.get(key, "classifier" if key == "kind" else None)
      if (key in meta or key == "kind") and got != want:
        what = "another kind of run: " if key == "kind" else ""
        raise CheckpointError(
          f"the checkpoint at step {step} in {self.directory} is of {what}it was written for "
          f"{key}={got!r}, but this run uses {key}={want!r}; use another workdir, or the "
          "matching config"
        )
    try:
      stored = self._manager.item_metadata(step)["state"]
    except Exception:  # no readable metadata: the restore below says what is wrong
      stored = None
    if stored is not None and _shapes(stored) != _shapes(abstract):
      raise CheckpointError(
        f"the checkpoint at step {step} in {self.directory} holds a different state than this "
        "run's (another model, optimizer or kind of run wrote it; its arrays' shapes differ); "
        "use another workdir, or the matching config"
      )
    try:
      restored = self._manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
      )
    except Exception as e:
      raise self._corrupt(step, steps, e) from e
    state = restored["state"]
    host = host_tree(state)
    if os.path.isdir(os.path.join(self.directory, str(step), "checksum")):
      try:
        want = self._manager.restore(
          step, args=ocp.args.Composite(checksum=ocp.args.JsonRestore())
        )["checksum"]["sha256"]
      except Exception as e:
        raise self._corrupt(step, steps, e) from e
      if checksum(host) != want:
        raise self._corrupt(
          step, steps, reason="its arrays do not match the checksum saved with them"
        )
    bad = non_finite_params(host)
    if bad:
      raise self._corrupt(
        step, steps, reason=f"its parameters hold NaN or Inf values ({', '.join(bad[:3])})"
      )
    return state, meta

  def _corrupt(
    self, step: int, steps: list[int], error: Exception | None = None, *, reason: str = ""
  ) -> CorruptCheckpointError:
    previous = max((s for s in steps if s < step), default=None)
    if error is not None:
      first = str(error).splitlines()[0][:300] if str(error) else ""
      reason = f"{type(error).__name__}: {first}"
    aside = os.path.join(os.path.dirname(self.directory), SET_ASIDE_DIR)
    if previous is None:
      hint = (
        f"There is no earlier checkpoint: move {os.path.join(self.directory, str(step))} "
        "out of the way (or use a new --workdir) to start over."
      )
    else:
      hint = (
        f"The previous checkpoint, step {previous}, is available: rerun the same command with "
        f"--set checkpoint.restore_step={previous} (the checkpoints after step {previous} are "
        f"then moved to {aside}, not deleted)."
      )
    which = "latest checkpoint" if step == steps[-1] else "checkpoint"
    return CorruptCheckpointError(
      f"the {which} (step {step}) in {self.directory} is corrupt or unreadable ({reason}). {hint}",
      step,
      previous,
    )
