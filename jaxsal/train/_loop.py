"""The classifier: its config check, its training task, training and loading it back.

Every host runs the same ``train_and_evaluate(config, workdir)``. The config
is validated before anything is written; ``jaxsal.train._setup.run_training``
does the rest (resume, the sharded steps, checkpoints), so a killed run
started again with the same command ends with the same parameters as an
uninterrupted one.
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
import numpy as np

from jaxsal import parallel
from jaxsal._checks import check_choice
from jaxsal.train._inputs import ClassifierInputs, classifier_inputs, transforms
from jaxsal.train._labels import MODES as LABEL_MODES
from jaxsal.train._labels import RandomLabelSource
from jaxsal.train._optim import make_optimizer
from jaxsal.train._setup import Run, Task, check_run_config, restore_on_host, run_training
from jaxsal.train._state import TrainState, create_train_state, make_eval_step, make_train_step


def validate_config(config) -> None:
  """Checks the names and numbers of a classifier config before anything runs.

  Args:
    config: a classifier config (see ``jaxsal.configs.small_cnn_digits``).

  Raises:
    ValueError: an unknown model, dataset, optimizer, schedule or label mode,
      a count that is not a positive integer, an optimizer setting out of
      its range (``check_optimizer_config``), or a ``dataset.mean`` and
      ``dataset.std`` of different lengths. (A batch size that does not split
      over the mesh is found when the mesh is made.)

  Example:
    >>> from jaxsal import configs
    >>> validate_config(configs.get_config('small_cnn_digits:test'))
  """
  from jaxsal import data, models
  from jaxsal.train._optim import check_optimizer_config

  check_choice(config.model.name, "model", models.list_models())
  check_choice(config.dataset.name, "dataset", data.DATASETS)
  check_choice(config.dataset.label_randomization, "dataset.label_randomization", LABEL_MODES)
  check_optimizer_config(config.optimizer, "optimizer")
  check_run_config(config)
  if len(config.dataset.mean) != len(config.dataset.std):
    raise ValueError(
      f"dataset.mean {config.dataset.mean} and dataset.std {config.dataset.std} "
      "must have one entry per channel"
    )
  check_normalization(config.dataset.mean, config.dataset.std)
  size = config.dataset.get("image_size", 0)
  if isinstance(size, bool) or not isinstance(size, int) or size < 0:
    raise ValueError(
      f"dataset.image_size must be 0 (the dataset's own) or a positive int; got {size!r}"
    )
  step = config.checkpoint.get("restore_step", -1)
  if isinstance(step, bool) or not isinstance(step, int) or step < -1:
    raise ValueError(
      f"checkpoint.restore_step must be -1 (the latest) or a step >= 0; got {step!r}"
    )
  kwargs = dict(config.model.get("kwargs") or {})
  try:
    models.get_model(config.model.name, num_classes=2, **kwargs)
  except TypeError as e:
    raise ValueError(
      f"model.kwargs {kwargs}: model {config.model.name!r} does not take them ({e})"
    ) from None


def check_normalization(mean, std) -> None:
  """Checks ``dataset.mean`` (finite numbers) and ``dataset.std`` (finite numbers > 0).

  Raises:
    ValueError: an entry that is not a number, not finite, or a standard
      deviation <= 0 (which would divide the images into Inf and NaN).

  Example:
    >>> check_normalization((0.5,), (0.0,))
    Traceback (most recent call last):
    ...
    ValueError: dataset.std must hold finite numbers > 0 (the images are divided by it); got (0.0,)
  """
  for name, values, positive in (("dataset.mean", mean, False), ("dataset.std", std, True)):
    try:
      a = np.asarray(values, np.float64).reshape(-1)
    except (TypeError, ValueError):
      a = None
    if a is None or a.size == 0 or not np.all(np.isfinite(a)) or (positive and np.any(a <= 0)):
      what = "finite numbers > 0 (the images are divided by it)" if positive else "finite numbers"
      raise ValueError(f"{name} must hold {what}; got {values!r}")


def classifier_identity(config, num_classes: int, image_shape) -> dict:
  """What makes a classifier run what it is (its workdir's ``identity.json``)."""
  from jaxsal.train._workdir import plain

  d = config.dataset
  return plain(
    {
      "kind": "classifier",
      "model": config.model.name,
      "model.kwargs": plain(config.model.kwargs),
      "dataset": d.name,
      "dataset.config": d.get("config", None),
      "dataset.train_split": d.train_split,
      "dataset.label_randomization": d.label_randomization,
      "image_shape": list(image_shape),
      "dataset.mean": [float(v) for v in d.mean],
      "dataset.std": [float(v) for v in d.std],
      "num_classes": int(num_classes),
      "optimizer": plain(config.optimizer),
      "seed": int(config.seed),
      "batch_size": int(config.batch_size),
    }
  )


def evaluate(
  eval_fn, state: TrainState, source, *, batch_size: int, normalize, mesh, preprocess=None
) -> dict:
  """Loss and accuracy over a whole split, every example counted once.

  Args:
    eval_fn: the jitted ``make_eval_step(model)``: ``(state, batch) -> sums``.
    state: the ``TrainState`` to evaluate.
    source: the split (random access).
    batch_size: the global batch size; the last batch is padded and masked.
    normalize: a host batch -> ``{'image', 'label'}`` as the model takes them.
    mesh: the mesh the batches are sharded over (``data`` axis).
    preprocess: a per-example transform (a central crop), or None.

  Returns:
    ``{'loss', 'accuracy', 'count'}`` over the split.
  """
  from jaxsal import data

  totals = None
  for batch in data.eval_batches(source, batch_size=batch_size, preprocess=preprocess):
    valid = batch.pop("valid")
    b = normalize(batch)
    b["valid"] = valid
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


def classifier_model(config, num_classes: int):
  """The Linen module of a classifier config with ``num_classes`` outputs."""
  from jaxsal import models

  return models.get_model(config.model.name, num_classes=num_classes, **dict(config.model.kwargs))


def classifier_task(config, inputs: ClassifierInputs | None = None) -> Task:
  """The classifier's part of ``run_training``: its state, step, evaluation and metadata.

  Args:
    config: a classifier config, already validated (``validate_config``).
    inputs: its ``classifier_inputs``, if the caller has them already.

  Returns:
    A ``Task`` whose result dict adds ``model`` (the Linen module),
    ``apply_fn`` and ``params`` (the trained classifier on the ``apply_fn``
    contract, ``params`` on the host) to ``run_training``'s.

  Raises:
    ValueError: the inputs cannot be made (see ``classifier_inputs``).
  """
  inputs = inputs or classifier_inputs(config)
  num_classes = int(inputs.info["num_classes"])
  train_source = inputs.train_source
  if config.dataset.label_randomization != "none":
    train_source = RandomLabelSource(
      train_source,
      config.dataset.label_randomization,
      num_classes=num_classes,
      seed=config.seed,
    )

  def build(mesh, workdir: str) -> Run:
    from jaxsal import models

    model = classifier_model(config, num_classes)
    tx = make_optimizer(config.optimizer, config.num_train_steps)
    eval_step = jax.jit(
      make_eval_step(model),
      in_shardings=(parallel.replicated(mesh), parallel.batch_sharding(mesh)),
      out_shardings=parallel.replicated(mesh),
    )

    def finish(out: dict) -> dict:
      apply_fn, params = models.from_linen(model, jax.device_get(out["state"].variables))
      return {**out, "model": model, "apply_fn": apply_fn, "params": params}

    return Run(
      init=lambda k: create_train_state(model, tx, k, (1,) + inputs.image_shape),
      init_args=(),
      step=make_train_step(model, tx),
      evaluate=lambda st: evaluate(
        eval_step,
        st,
        inputs.eval_source,
        batch_size=config.eval_batch_size,
        normalize=inputs.normalize,
        mesh=mesh,
        preprocess=inputs.eval_pre,
      ),
      meta={
        "kind": "classifier",
        "model": config.model.name,
        "num_classes": num_classes,
        "image_shape": list(inputs.image_shape),
        "dataset": config.dataset.name,
      },
      expect=("kind", "model", "num_classes"),
      finish=finish,
    )

  return Task(
    desc="train",
    what="",
    source=train_source,
    host_batch=inputs.normalize,
    build=build,
    postfix=lambda m: {"loss": f"{m['train_loss']:.4f}", "acc": f"{m['train_accuracy']:.3f}"},
    eval_line=lambda done, ev: (
      f"step {done}: eval loss {ev['loss']:.4f} accuracy "
      f"{ev['accuracy']:.4f} ({ev['count']} images)"
    ),
    preprocess=inputs.train_pre,
    identity=classifier_identity(config, num_classes, inputs.image_shape),
  )


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
    (the step resumed from, or None), ``mesh``, ``workdir``, ``model`` (the
    Linen module), and ``apply_fn`` and ``params``: the trained classifier on
    the ``apply_fn(params, x) -> logits`` contract (tapped, ``params`` on the
    host), as ``models.from_linen`` gives it.

  Raises:
    ValueError: a bad config or an unwritable workdir, before anything is written.
    jaxsal.train.CorruptCheckpointError: the latest checkpoint cannot be read.

  Example:
    >>> import tempfile
    >>> import numpy as np
    >>> from jaxsal import configs, train
    >>> out = train.train_and_evaluate(
    ...     configs.get_config('small_cnn_digits:test'), tempfile.mkdtemp(), progress=False)
    >>> out['apply_fn'](out['params'], np.zeros((2, 32, 32, 1), np.float32)).shape
    (2, 10)
  """
  validate_config(config)
  return run_training(config, workdir, classifier_task(config), progress=progress)


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
    FileNotFoundError: no trained classifier there (the message names the
      path and says how to train one).
    jaxsal.train.CheckpointError: the checkpoint belongs to another model.

  Example:
    >>> load_classifier('/nonexistent/run')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: no trained classifier in '/nonexistent/run' ...
  """
  from jaxsal import data

  def target(files: dict):
    config = ml_collections.ConfigDict(files["config.json"])
    info = data.dataset_info(config.dataset.name, config.dataset.get("config", None))
    _, _, image_shape = transforms(config, info)
    model = classifier_model(config, int(info["num_classes"]))
    tx = make_optimizer(config.optimizer, int(config.num_train_steps))
    abstract = jax.eval_shape(
      lambda k: create_train_state(model, tx, k, (1,) + tuple(image_shape)), jax.random.key(0)
    )
    expect = {
      "kind": "classifier",
      "model": config.model.name,
      "num_classes": int(info["num_classes"]),
    }
    return abstract, expect, (config, info, tuple(image_shape), model)

  state, (config, info, image_shape, model) = restore_on_host(
    workdir,
    what="trained classifier",
    how=f"train one first: jaxsal train --config small_cnn_digits --workdir {workdir}",
    files=("config.json",),
    target=target,
    kind="classifier",
  )
  return {
    "model": model,
    "variables": {"params": state.params, **state.model_state},
    "config": config,
    "image_shape": image_shape,
    "num_classes": int(info["num_classes"]),
    "class_names": tuple(info["class_names"]),
    "mean": np.asarray(config.dataset.mean, np.float32),
    "std": np.asarray(config.dataset.std, np.float32),
    "step": int(state.step),
  }
