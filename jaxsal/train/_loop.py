"""The classifier training loop: jit with shardings, checkpoints, resume, metrics.

Every host runs the same ``train_and_evaluate(config, workdir)``. The loop
validates the config before it writes anything, restores the latest
checkpoint if the workdir has one, and reads the data from the step it
stopped at, so a killed run started again with the same command ends with the
same parameters as an uninterrupted one.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxsal import parallel
from jaxsal._checks import check_choice, check_positive_int
from jaxsal.train._checkpoint import Checkpoints
from jaxsal.train._labels import MODES as LABEL_MODES
from jaxsal.train._labels import RandomLabelSource
from jaxsal.train._logging import MetricWriter
from jaxsal.train._optim import make_optimizer
from jaxsal.train._runner import restore, run_steps, write_config
from jaxsal.train._state import TrainState, create_train_state, make_eval_step, make_train_step


def prepare_workdir(workdir: str) -> str:
  """Creates ``workdir`` if needed and checks that files can be written in it.

  Raises:
    ValueError: it cannot be created or written (the message says why).
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


def validate_config(config) -> None:
  """Checks the names and numbers of a classifier config before anything runs.

  Raises:
    ValueError: an unknown model, dataset, optimizer, schedule or label mode,
      or a batch size that does not split over the mesh.
  """
  from jaxsal import data, models

  check_choice(config.model.name, "model", models.list_models())
  check_choice(config.dataset.name, "dataset", data.DATASETS)
  check_choice(config.dataset.label_randomization, "dataset.label_randomization", LABEL_MODES)
  from jaxsal.train._optim import OPTIMIZERS, SCHEDULES

  check_choice(config.optimizer.name, "optimizer.name", OPTIMIZERS)
  check_choice(config.optimizer.schedule, "optimizer.schedule", SCHEDULES)
  for key in ("batch_size", "num_train_steps", "log_every", "eval_every", "eval_batch_size"):
    check_positive_int(config[key], key)
  check_positive_int(config.checkpoint.every, "checkpoint.every")
  check_positive_int(config.checkpoint.keep, "checkpoint.keep")
  if len(config.dataset.mean) != len(config.dataset.std):
    raise ValueError(
      f"dataset.mean {config.dataset.mean} and dataset.std {config.dataset.std} "
      "must have one entry per channel"
    )


def _devices(config) -> list:
  n = int(config.mesh.num_devices)
  devices = jax.devices()
  if n < 0 or n > len(devices):
    raise ValueError(f"mesh.num_devices must be 0 (all) or 1..{len(devices)}; got {n}")
  return devices[:n] if n else devices


def _normalizer(config, channels: int):
  mean = np.asarray(config.dataset.mean, np.float32)
  std = np.asarray(config.dataset.std, np.float32)
  if mean.shape[0] not in (1, channels):
    raise ValueError(
      f"dataset.mean has {mean.shape[0]} entries but the images have {channels} channels"
    )

  def normalize(batch: dict) -> dict:
    out = {
      "image": (np.asarray(batch["image"], np.float32) - mean) / std,
      "label": np.asarray(batch["label"], np.int32),
    }
    return out

  return normalize


def _transforms(config, info: dict):
  """Per-example transforms and the model's input shape.

  Datasets whose images vary in size (ImageNet) get the standard
  random-resized-crop for training and a central crop for evaluation, to
  ``dataset.image_size``; fixed-size datasets are used as stored.
  """
  from jaxsal import data

  shape = tuple(info["image_shape"])
  if all(d is not None for d in shape):
    return None, None, shape
  size = int(config.dataset.get("image_size", 0) or 0)
  if size <= 0:
    raise ValueError(
      f"dataset {config.dataset.name!r} has images of varying size {shape}; "
      "set dataset.image_size to the side length to crop them to"
    )
  return data.TrainTransform(size), data.EvalTransform(size), (size, size, shape[-1])


def evaluate(
  eval_fn, state: TrainState, source, *, batch_size: int, normalize, mesh, preprocess=None
) -> dict:
  """Loss and accuracy over a whole split, every example counted once."""
  from jaxsal import data

  totals = None
  local_batch = batch_size // jax.process_count()
  for batch in data.make_batches(
    source,
    batch_size=batch_size,
    seed=0,
    shuffle=False,
    num_epochs=1,
    drop_remainder=False,
    preprocess=preprocess,
  ):
    b = normalize(batch)
    n = b["label"].shape[0]
    pad = local_batch - n
    b["valid"] = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
    if pad:
      b["image"] = np.concatenate([b["image"], np.zeros((pad,) + b["image"].shape[1:], np.float32)])
      b["label"] = np.concatenate([b["label"], np.zeros(pad, np.int32)])
    sums = eval_fn(state, parallel.shard_batch(b, mesh))
    # Summed on device: one host sync per evaluation, not one per batch.
    totals = sums if totals is None else jax.tree.map(lambda a, c: a + c, totals, sums)
  totals = (
    {k: float(v) for k, v in jax.device_get(totals).items()}
    if totals
    else {"loss": 0.0, "correct": 0.0, "count": 0.0}
  )
  count = max(totals["count"], 1.0)
  return {
    "loss": totals["loss"] / count,
    "accuracy": totals["correct"] / count,
    "count": int(totals["count"]),
  }


def train_and_evaluate(config, workdir: str, *, progress: bool = True) -> dict[str, Any]:
  """Trains a classifier as ``config`` says, checkpointing into ``workdir``.

  Args:
    config: a classifier config (see ``jaxsal.configs.small_cnn_digits``).
    workdir: where checkpoints, ``metrics.jsonl`` and ``config.json`` go. If it
      holds checkpoints, training resumes from the latest (or from
      ``config.checkpoint.restore_step``).
    progress: show a progress bar on the first host.

  Returns:
    A dict with ``state`` (the final TrainState), ``history`` (the train
    records written this run), ``eval`` (the last evaluation), ``restored_step``
    (the step resumed from, or None) and ``mesh``.

  Raises:
    ValueError: a bad config or an unwritable workdir, before anything is written.
    jaxsal.train.CorruptCheckpointError: the latest checkpoint cannot be read.

  Example:
    >>> from jaxsal import configs, train
    >>> out = train.train_and_evaluate(configs.get_config('small_cnn_digits:test'), '/tmp/run')
    >>> out['eval']['accuracy'] > 0.1
    True
  """
  from jaxsal import data, models

  validate_config(config)
  parallel.initialize(config.distributed)
  mesh = parallel.make_mesh(dict(config.mesh.shape), devices=_devices(config))
  data_width = mesh.shape[parallel.DATA_AXIS]
  for key in ("batch_size", "eval_batch_size"):
    if config[key] % data_width:
      raise ValueError(
        f"{key}={config[key]} must be divisible by the {data_width} devices "
        f"of the mesh's {parallel.DATA_AXIS!r} axis"
      )
  ds_config = config.dataset.get("config", None)
  data_dir = config.dataset.get("data_dir", None)
  info = data.dataset_info(config.dataset.name, ds_config)
  train_source = data.load_source(
    config.dataset.name, config.dataset.train_split, config=ds_config, data_dir=data_dir
  )
  eval_source = data.load_source(
    config.dataset.name, config.dataset.eval_split, config=ds_config, data_dir=data_dir
  )
  if config.dataset.label_randomization != "none":
    train_source = RandomLabelSource(
      train_source,
      config.dataset.label_randomization,
      num_classes=info["num_classes"],
      seed=config.seed,
    )
  train_pre, eval_pre, image_shape = _transforms(config, info)
  # Only now, with the config and the data known good, is anything written.
  workdir = prepare_workdir(workdir)
  normalize = _normalizer(config, image_shape[-1])

  model = models.get_model(
    config.model.name, num_classes=info["num_classes"], **dict(config.model.kwargs)
  )
  tx = make_optimizer(config.optimizer, config.num_train_steps)
  repl = parallel.replicated(mesh)
  batch_sh = parallel.batch_sharding(mesh)
  key = jax.random.key(config.seed)
  init = jax.jit(lambda k: create_train_state(model, tx, k, (1,) + image_shape), out_shardings=repl)
  state = init(key)

  is_main = jax.process_index() == 0
  writer = MetricWriter(os.path.join(workdir, "metrics.jsonl"), enabled=is_main)
  ckpt = Checkpoints(
    os.path.join(workdir, "checkpoints"),
    every=config.checkpoint.every,
    keep=config.checkpoint.keep,
    use_async=config.checkpoint.use_async,
  )
  meta = {
    "model": config.model.name,
    "num_classes": int(info["num_classes"]),
    "image_shape": list(image_shape),
    "dataset": config.dataset.name,
  }
  state, restored_step = restore(
    ckpt, state, config, meta=meta, expect=("model", "num_classes"), writer=writer, what=""
  )
  write_config(workdir, config)

  train_step = jax.jit(
    make_train_step(model, tx),
    in_shardings=(repl, batch_sh),
    out_shardings=(repl, repl),
    donate_argnums=(0,),
  )
  eval_step = jax.jit(make_eval_step(model), in_shardings=(repl, batch_sh), out_shardings=repl)

  start = int(jax.device_get(state.step))
  total = int(config.num_train_steps)
  batches = data.make_batches(
    train_source,
    batch_size=config.batch_size,
    seed=config.seed,
    shuffle=True,
    num_epochs=None,
    drop_remainder=True,
    start_step=start,
    preprocess=train_pre,
  )
  run_eval = lambda st: evaluate(
    eval_step,
    st,
    eval_source,
    batch_size=config.eval_batch_size,
    normalize=normalize,
    mesh=mesh,
    preprocess=eval_pre,
  )
  state, history, last_eval = run_steps(
    state=state,
    step_fn=train_step,
    batches=batches,
    prepare=lambda b: parallel.shard_batch(normalize(b), mesh),
    start=start,
    total=total,
    log_every=int(config.log_every),
    eval_every=int(config.eval_every),
    writer=writer,
    ckpt=ckpt,
    meta=meta,
    evaluate=run_eval,
    desc="train",
    progress=progress,
    postfix=lambda m: {"loss": f"{m['train_loss']:.4f}", "acc": f"{m['train_accuracy']:.3f}"},
    eval_line=lambda done, ev: (
      f"step {done}: eval loss {ev['loss']:.4f} accuracy "
      f"{ev['accuracy']:.4f} ({ev['count']} images)"
    ),
  )
  return {
    "state": state,
    "history": history,
    "eval": last_eval,
    "restored_step": restored_step,
    "mesh": mesh,
    "workdir": workdir,
  }


def load_classifier(workdir: str) -> dict[str, Any]:
  """The trained classifier in ``workdir`` (its latest checkpoint), without training anything.

  Args:
    workdir: a directory written by ``jaxsal train`` (``config.json`` and
      ``checkpoints/``).

  Returns:
    A dict with ``model`` (the Linen module), ``variables`` (``{'params', ...}``
    on the host), ``config``, ``image_shape`` ``(H, W, C)``, ``num_classes``,
    ``class_names``, ``mean`` and ``std`` (the input normalisation of
    training) and ``step``.

  Raises:
    FileNotFoundError: no trained classifier there (the message says how to
      train one).
    jaxsal.train.CheckpointError: the checkpoint belongs to another model.
  """
  from jaxsal import data, models

  path = os.path.abspath(os.path.expanduser(workdir))
  how = f"train one first: jaxsal train --config small_cnn_digits --workdir {workdir}"
  config_path = os.path.join(path, "config.json")
  ckpt_dir = os.path.join(path, "checkpoints")
  if not os.path.isfile(config_path) or not os.path.isdir(ckpt_dir):
    raise FileNotFoundError(
      f"no trained classifier in {path!r} (no config.json and checkpoints there); {how}"
    )
  with open(config_path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  ds = config.dataset
  info = data.dataset_info(ds.name, ds.get("config", None))
  _, _, image_shape = _transforms(config, info)
  model = models.get_model(
    config.model.name, num_classes=info["num_classes"], **dict(config.model.kwargs)
  )
  tx = make_optimizer(config.optimizer, int(config.num_train_steps))
  abstract = jax.eval_shape(
    lambda k: create_train_state(model, tx, k, (1,) + image_shape), jax.random.key(0)
  )
  # Restore onto this process's first device, whatever the topology of training
  # (a checkpoint written on 8 devices or a pod slice loads on a laptop).
  one = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=one), abstract)
  ckpt = Checkpoints(ckpt_dir, every=1, keep=1_000_000, use_async=False)
  try:
    restored = ckpt.restore(
      abstract, expect_meta={"model": config.model.name, "num_classes": int(info["num_classes"])}
    )
  finally:
    ckpt.close()
  if restored is None:
    raise FileNotFoundError(
      f"no trained classifier in {path!r}: it has no finished checkpoint; {how}"
    )
  state = jax.device_get(restored[0])
  return {
    "model": model,
    "variables": {"params": state.params, **state.model_state},
    "config": config,
    "image_shape": tuple(image_shape),
    "num_classes": int(info["num_classes"]),
    "class_names": tuple(info["class_names"]),
    "mean": np.asarray(ds.mean, np.float32),
    "std": np.asarray(ds.std, np.float32),
    "step": int(state.step),
  }
