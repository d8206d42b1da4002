"""The one training setup: mesh, checks, workdir, metric log, checkpoints, restore and batches.

The classifier, masker and generator differ in their state, step,
evaluation and checkpoint metadata; they hand those over as a ``Task`` (what
is known before anything is written) whose ``build`` gives a ``Run`` (what
needs the mesh and the workdir). ``run_training`` does the rest, in the same
order for all three, so their RNG keys, batch order and checkpoints follow
one path. ``restore_on_host`` is the one way back from a workdir to a state.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax

from jaxsal import parallel
from jaxsal._checks import check_positive_int
from jaxsal.train._checkpoint import Checkpoints
from jaxsal.train._logging import MetricWriter
from jaxsal.train._runner import restore, run_steps, write_config
from jaxsal.train._workdir import WorkdirLock, check_identity, read_identity, write_identity


class Run(NamedTuple):
  """What a kind of training builds once the mesh and the workdir are there.

  Attributes:
    init: ``(key, *init_args) -> state``, pure; jitted with replicated output
      and called with ``jax.random.key(config.seed)``.
    init_args: further (array) arguments of ``init``.
    step: the pure ``(state, batch) -> (state, metrics)``; jitted with
      replicated state, the batch sharded over ``data`` and the state donated.
    evaluate: ``state -> metrics`` (a dict of numbers).
    meta: the checkpoints' metadata.
    expect: the keys of ``meta`` a restored checkpoint must match.
    finish: the shared result dict -> the caller's result dict.
    files: JSON files written into the workdir (first host) after restoring.
    identity: what the run adds to ``Task.identity`` once built (a masker: its
      classifier's fingerprint); checked against the workdir's ``identity.json``.
  """

  init: Callable
  init_args: tuple
  step: Callable
  evaluate: Callable[[Any], dict]
  meta: dict
  expect: tuple[str, ...]
  finish: Callable[[dict], dict]
  files: Mapping[str, Any] = {}
  identity: Mapping[str, Any] = {}


class Task(NamedTuple):
  """What a kind of training brings to ``run_training`` before anything is written.

  Attributes:
    desc: the progress bar's label.
    what: the restore message's label (``''``: "checkpoint").
    source: the training examples (random access).
    host_batch: a host batch -> the arrays the step takes (on the host).
    build: ``(mesh, workdir) -> Run``.
    postfix: a log window's means -> the progress bar's postfix.
    eval_line: ``(step, metrics) -> a line to print, or None``.
    preprocess: a per-example transform of the training batches, or None.
    sharded: the config's batch sizes that split over the mesh's ``data`` axis.
    identity: what makes the run what it is (``kind``, model, data,
      preprocessing, optimizer, seed, ...), JSON-plain; a workdir made with
      another identity is refused (see ``jaxsal.train._workdir``).
  """

  desc: str
  what: str
  source: Any
  host_batch: Callable[[dict], dict]
  build: Callable[[jax.sharding.Mesh, str], Run]
  postfix: Callable[[dict], dict]
  eval_line: Callable[[int, dict], str | None]
  preprocess: Callable | None = None
  sharded: tuple[str, ...] = ("batch_size", "eval_batch_size")
  identity: Mapping[str, Any] = {}


def prepare_workdir(workdir: str) -> str:
  """Creates ``workdir`` if needed and checks that files can be written in it.

  Args:
    workdir: a directory path (``~`` is expanded).

  Returns:
    The absolute path.

  Raises:
    ValueError: it is empty, cannot be created or written, or is a file (the
      message says which).

  Example:
    >>> import tempfile, os
    >>> path = prepare_workdir(os.path.join(tempfile.mkdtemp(), 'run'))
    >>> os.path.isdir(path)
    True
  """
  if not workdir:
    raise ValueError("workdir must be a directory path; got an empty value")
  path = os.path.abspath(os.path.expanduser(workdir))
  if os.path.exists(path) and not os.path.isdir(path):
    raise ValueError(f"workdir {path!r} exists and is not a directory")
  try:
    os.makedirs(path, exist_ok=True)
    probe = os.path.join(path, f".write_probe_{os.getpid()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise ValueError(f"workdir {path!r} cannot be written: {e.strerror or e}") from e
  return path


RUN_COUNTS = ("batch_size", "num_train_steps", "log_every", "eval_every", "eval_batch_size")


def check_run_config(config, counts: tuple[str, ...] = ()) -> None:
  """Checks the counts every training config has (``RUN_COUNTS``, ``checkpoint.every``/``keep``).

  Args:
    config: a training config.
    counts: further top-level keys that must be positive integers.

  Raises:
    ValueError: one of them is not a positive integer (named in the message).

  Example:
    >>> from jaxsal import configs
    >>> check_run_config(configs.get_config('small_cnn_digits:test'))
    >>> check_run_config(configs.get_config('small_cnn_digits:test'), ('seed',))
    Traceback (most recent call last):
    ...
    ValueError: seed must be a positive integer; got 0
  """
  for key in RUN_COUNTS + tuple(counts):
    check_positive_int(config[key], key)
  check_positive_int(config.checkpoint.every, "checkpoint.every")
  check_positive_int(config.checkpoint.keep, "checkpoint.keep")


def make_mesh(config, sharded: tuple[str, ...]) -> jax.sharding.Mesh:
  """The mesh of ``config.mesh``, after checking that the batch sizes ``sharded`` split over it.

  Args:
    config: a training config with ``mesh.shape`` and ``mesh.num_devices``
      (0: all devices).
    sharded: the config keys of batch sizes split over the ``data`` axis.

  Returns:
    The ``jax.sharding.Mesh``.

  Raises:
    ValueError: ``mesh.num_devices`` is out of range, or a batch size does
      not divide by the ``data`` axis's width.

  Example:
    >>> from jaxsal import configs
    >>> mesh = make_mesh(configs.get_config('small_cnn_digits:test'), ('batch_size',))
    >>> 'data' in mesh.shape
    True
  """
  n = int(config.mesh.num_devices)
  devices = jax.devices()
  if n < 0 or n > len(devices):
    raise ValueError(f"mesh.num_devices must be 0 (all) or 1..{len(devices)}; got {n}")
  mesh = parallel.make_mesh(dict(config.mesh.shape), devices=devices[:n] if n else devices)
  width = mesh.shape[parallel.DATA_AXIS]
  for key in sharded:
    if config[key] % width:
      raise ValueError(
        f"{key}={config[key]} must be divisible by the {width} devices "
        f"of the mesh's {parallel.DATA_AXIS!r} axis"
      )
  return mesh


def load_sources(dataset) -> tuple[Any, Any]:
  """The train and eval sources of a ``config.dataset`` (``name``, ``train_split``, ``eval_split``).

  Args:
    dataset: a dataset config; ``config`` and ``data_dir`` are optional.

  Returns:
    ``(train_source, eval_source)``, random-access sources.

  Raises:
    ValueError: an unknown dataset (from ``jaxsal.data.load_source``).
  """
  from jaxsal import data

  kw = {"config": dataset.get("config", None), "data_dir": dataset.get("data_dir", None)}
  return (
    data.load_source(dataset.name, dataset.train_split, **kw),
    data.load_source(dataset.name, dataset.eval_split, **kw),
  )


def run_training(config, workdir: str, task: Task, *, progress: bool = True) -> dict[str, Any]:
  """Trains ``task`` as ``config`` says, resuming from and checkpointing into ``workdir``.

  In order: multi-host initialisation, the mesh and its batch-size checks,
  the workdir (the first thing written), its lock (held until the end, on
  the first host) and the check of its ``identity.json`` against
  ``task.identity``, ``task.build``, the check of ``run.identity``, the
  initial state from ``key(config.seed)``, the metric log and checkpoints,
  restoring the latest checkpoint (or ``config.checkpoint.restore_step``,
  moving the later ones aside), ``identity.json`` (if new), ``config.json``
  and ``run.files``, then the steps from the restored one on, the batches
  read from there.

  Args:
    config: a training config (``seed``, ``batch_size``, ``num_train_steps``,
      ``log_every``, ``eval_every``, ``checkpoint``, ``mesh``, ``distributed``);
      already validated by the caller.
    workdir: where checkpoints, ``metrics.jsonl`` and ``config.json`` go.
    task: what differs between the kinds of training.
    progress: a progress bar on the first host.

  Returns:
    ``task.build(...).finish`` of a dict with ``state`` (the final state),
    ``history`` (the train records of this run), ``eval`` (the last eval
    record, its keys ``eval_``-prefixed), ``restored_step`` (or None),
    ``mesh`` and ``workdir`` (absolute).

  Raises:
    ValueError: a batch size that does not split over the mesh, or an
      unwritable workdir, before anything is written.
    jaxsal.train.WorkdirError: another run holds the workdir's lock, or
      another kind of run (or one with other settings) made it; nothing is
      written then.
    jaxsal.train.CheckpointError: the latest checkpoint belongs to another run
      or cannot be read.
    jaxsal.train.NonFiniteError: a loss or gradient norm became NaN or Inf.
  """
  parallel.initialize(config.get("distributed", "auto"))
  parallel.check_same_everywhere(f"{task.what or 'training'} config", config.to_dict())
  mesh = make_mesh(config, task.sharded)
  workdir = prepare_workdir(workdir)
  # A workdir of another kind of run is refused before its lock file is touched.
  check_identity(workdir, dict(task.identity), partial=True)
  # One writer per workdir; the hosts of a multi-host run share it, and only
  # the first one writes, so it alone holds the lock.
  lock = WorkdirLock(workdir) if jax.process_index() == 0 else None
  try:
    return _run_locked(config, workdir, task, mesh, progress=progress)
  finally:
    if lock is not None:
      lock.release()


def _run_locked(config, workdir: str, task: Task, mesh, *, progress: bool) -> dict[str, Any]:
  from jaxsal import data

  run = task.build(mesh, workdir)
  identity = {**task.identity, **run.identity}
  recorded = check_identity(workdir, identity)
  repl = parallel.replicated(mesh)
  state = jax.jit(run.init, out_shardings=repl)(jax.random.key(config.seed), *run.init_args)

  is_main = jax.process_index() == 0
  writer = MetricWriter(os.path.join(workdir, "metrics.jsonl"), enabled=is_main)
  ckpt = Checkpoints(
    os.path.join(workdir, "checkpoints"),
    every=config.checkpoint.every,
    keep=config.checkpoint.keep,
    use_async=config.checkpoint.use_async,
  )
  state, restored_step = restore(
    ckpt, state, config, meta=run.meta, expect=run.expect, writer=writer, what=task.what
  )
  if is_main and recorded is None:
    # After the restore: a workdir from before identities were recorded gets
    # one only once its checkpoint has been found to be this run's.
    write_identity(workdir, identity)
  write_config(workdir, config)
  if is_main:
    for name, content in run.files.items():
      with open(os.path.join(workdir, name), "w") as f:
        json.dump(content, f, indent=2)

  step_fn = jax.jit(
    run.step,
    in_shardings=(repl, parallel.batch_sharding(mesh)),
    out_shardings=(repl, repl),
    donate_argnums=(0,),
  )
  start = int(jax.device_get(state.step))
  batches = data.make_batches(
    task.source,
    batch_size=config.batch_size,
    seed=config.seed,
    shuffle=True,
    num_epochs=None,
    drop_remainder=True,
    start_step=start,
    preprocess=task.preprocess,
  )
  state, history, last_eval = run_steps(
    state=state,
    step_fn=step_fn,
    batches=batches,
    prepare=lambda raw: parallel.shard_batch(task.host_batch(raw), mesh),
    start=start,
    total=int(config.num_train_steps),
    log_every=int(config.log_every),
    eval_every=int(config.eval_every),
    writer=writer,
    ckpt=ckpt,
    meta=run.meta,
    evaluate=run.evaluate,
    desc=task.desc,
    progress=progress,
    postfix=task.postfix,
    eval_line=task.eval_line,
  )
  return run.finish(
    {
      "state": state,
      "history": history,
      "eval": last_eval,
      "restored_step": restored_step,
      "mesh": mesh,
      "workdir": workdir,
    }
  )


def restore_on_host(
  workdir: str,
  *,
  what: str,
  how: str,
  files: tuple[str, ...],
  target: Callable[[dict], tuple[Any, dict, Any]],
  kind: str | None = None,
) -> tuple[Any, Any]:
  """The latest checkpoint of a finished run in ``workdir``, restored to the host.

  The state is restored onto this process's first device and fetched, so a
  checkpoint written on 8 devices or a pod slice loads on a laptop.

  Args:
    workdir: a directory a training run wrote (``checkpoints/`` and ``files``).
    what: what is missing, for the error (e.g. ``'trained classifier'``).
    how: how to make one, for the error.
    files: the JSON files the workdir must hold besides ``checkpoints/``.
    target: ``{file: its parsed JSON} -> (abstract state, expected metadata,
      extra)``: the abstract state as ``jax.eval_shape`` gives it, and what the
      caller wants back besides the state (the model it built, ...).
    kind: the kind of run expected (``'classifier'``, ...); a workdir whose
      ``identity.json`` says another is refused as such.

  Returns:
    ``(state, extra)``, the state's arrays on the host.

  Raises:
    FileNotFoundError: the files or a finished checkpoint are missing; the
      message names the path and says ``how``.
    jaxsal.train.CheckpointError: the checkpoint's metadata does not match.
    jaxsal.train.WorkdirError: the workdir holds another kind of run.
  """
  from jaxsal.train._workdir import WorkdirError

  path = os.path.abspath(os.path.expanduser(workdir))
  ckpt_dir = os.path.join(path, "checkpoints")
  recorded = read_identity(path) if os.path.isdir(path) else None
  if kind is not None and recorded is not None and recorded.get("kind") != kind:
    raise WorkdirError(
      f"{path!r} holds another kind of run: a {recorded.get('kind')} run (its identity.json), "
      f"not a {what}; {how}"
    )
  if not all(os.path.isfile(os.path.join(path, f)) for f in files) or not os.path.isdir(ckpt_dir):
    raise FileNotFoundError(
      f"no {what} in {path!r} (no {', '.join(files)} and checkpoints there); {how}"
    )
  loaded = {}
  for name in files:
    with open(os.path.join(path, name)) as f:
      loaded[name] = json.load(f)
  abstract, expect_meta, extra = target(loaded)
  one = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=one), abstract)
  ckpt = Checkpoints(ckpt_dir, every=1, keep=1_000_000, use_async=False)
  try:
    restored = ckpt.restore(abstract, expect_meta=expect_meta)
  finally:
    ckpt.close()
  if restored is None:
    raise FileNotFoundError(f"no {what} in {path!r}: it has no finished checkpoint; {how}")
  return jax.device_get(restored[0]), extra
