"""Masker training: FIX or CA, its state, step and localisation evaluation.

Every host runs the same ``train_masker(config, workdir)``. The config (the
classifier's with it, once) is checked before anything is written; the
masker's task goes to ``_setup.run_training``; the classifier comes from its own
workdir (trained there first if it has no checkpoint); a killed run started
again with the same command resumes from the latest checkpoint and ends
with the same parameters as an uninterrupted run.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import optax

from jaxsal._checks import check_choice, check_positive_int
from jaxsal.train._inputs import classifier_inputs
from jaxsal.train._loop import classifier_model, classifier_task, validate_config
from jaxsal.train._masker_step import INFILLS, create_masker_state, make_mask_fn, make_masker_step
from jaxsal.train._optim import OPTIMIZERS, SCHEDULES, make_optimizer
from jaxsal.train._runner import write_eval
from jaxsal.train._setup import Run, Task, check_run_config, run_training
from jaxsal.train._wsol_eval import evaluate_localization

MODES = ("fix", "ca")


def _optimizer(cfg, total: int) -> optax.GradientTransformation:
  if cfg.schedule == "step" and int(cfg.decay_every_steps) <= 0:
    cfg = cfg.copy_and_resolve_references()
    cfg.decay_every_steps = max(total // 3, 1)
  return make_optimizer(cfg, total)


def validate_masker_config(config) -> None:
  """Checks a masker config before anything runs.

  Raises:
    ValueError: an unknown mode, objective, infill or tap name (the known
      ones listed), a negative weight, a bad probability or count, or a
      batch size that does not split over the mesh.
  """
  from jaxsal import models, objectives

  validate_config(config.classifier)
  check_choice(config.mode, "mode", MODES)
  check_choice(config.objective.name, "objective.name", objectives.OBJECTIVES)
  check_choice(config.objective.infill, "objective.infill", INFILLS)
  for name in ("lam_in", "lam_out", "lam_tv"):
    value = config.objective[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
      raise ValueError(f"objective.{name} must be a number >= 0; got {value!r}")
  check_run_config(config, ("eval_num_images", "pool_every"))
  if not 0.0 <= float(config.historic_prob) <= 1.0:
    raise ValueError(f"historic_prob must be in [0, 1]; got {config.historic_prob!r}")
  for key in ("few_shot", "pool_size"):
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
      raise ValueError(f"{key} must be an integer >= 0; got {value!r}")
  for opt in ("masker_optimizer", "classifier_optimizer"):
    check_choice(config[opt].name, f"{opt}.name", OPTIMIZERS)
    check_choice(config[opt].schedule, f"{opt}.schedule", SCHEDULES)
  model = _classifier_model(config)
  taps = models.tap_names(model)
  layers = list(config.masker.layers)
  if not layers:
    raise ValueError("masker.layers must name at least one tap; available taps: " + ", ".join(taps))
  for name in layers:
    if name not in taps:
      raise ValueError(
        f"unknown tap {name!r} in masker.layers; the classifier "
        f"{config.classifier.model.name!r} has taps: {', '.join(taps)}"
      )
  check_positive_int(config.masker.hidden, "masker.hidden")
  check_positive_int(config.masker.mask_scale, "masker.mask_scale")


def _classifier_model(config):
  from jaxsal import data

  c = config.classifier
  info = data.dataset_info(c.dataset.name, c.dataset.get("config", None))
  return classifier_model(c, int(info["num_classes"]))


def make_masker(config):
  """The ``jaxsal.models.Masker`` a masker config describes."""
  from jaxsal import models

  m = config.masker
  return models.Masker(
    layers=tuple(m.layers),
    hidden=int(m.hidden),
    mask_scale=int(m.mask_scale),
    gumbel=bool(m.gumbel),
    temperature=float(m.temperature),
  )


def classifier_workdir(config, workdir: str) -> str:
  """Where the classifier of a masker run lives: ``config.classifier_workdir`` or ``<workdir>/classifier``."""
  return config.classifier_workdir or os.path.join(workdir, "classifier")


def train_masker(config, workdir: str, *, progress: bool = True) -> dict[str, Any]:
  """Trains a masker (FIX or CA) as ``config`` says, checkpointing into ``workdir``.

  Args:
    config: a masker config (see ``jaxsal.configs.masker_digits``).
    workdir: where checkpoints, ``metrics.jsonl``, ``config.json`` and
      ``eval.json`` go. If it holds checkpoints, training resumes from the
      latest.
    progress: progress bars on the first host.

  Returns:
    A dict with ``state`` (the final ``MaskerTrainState``), ``history``,
    ``eval`` (the localisation metrics of the last evaluation),
    ``classifier_eval`` (the original classifier's test accuracy),
    ``restored_step``, ``mesh``, ``workdir``, the ``masker`` and
    ``classifier`` modules, and ``original``: the classifier as trained, as
    ``(apply_fn, params)`` (what the maps are scored against).

  Raises:
    ValueError: a bad config (an unknown tap, a few-shot k larger than a
      class's images, ...) or an unwritable workdir, before anything is
      written into ``workdir``.

  Example:
    >>> import tempfile
    >>> from jaxsal import configs, train
    >>> out = train.train_masker(
    ...     configs.get_config('masker_digits:test'), tempfile.mkdtemp(), progress=False)
    >>> out['eval']['le'] <= 1.0
    True
  """
  validate_masker_config(config)
  return run_training(config, workdir, _masker_task(config, progress=progress), progress=progress)


def _masker_task(config, *, progress: bool) -> Task:
  """The masker's part of ``run_training``; its ``build`` trains (or restores) the classifier."""
  from jaxsal import data

  cc = config.classifier
  inputs = classifier_inputs(cc)
  # The classifier's task is made now, so that its errors come before anything is written.
  clf_task = classifier_task(cc, inputs)
  eval_source, image_shape = inputs.eval_source, inputs.image_shape
  # Localisation needs ground-truth boxes and masks (cluttered_digits has
  # them; tfds ImageNet does not, and then evaluation is skipped).
  has_truth = all(key in eval_source[0] for key in ("box", "mask"))
  train_source = inputs.train_source
  if config.few_shot:
    train_source = data.FewShotSource(train_source, int(config.few_shot), seed=int(config.seed))
  masker = make_masker(config)
  if image_shape[0] % masker.mask_scale or image_shape[1] % masker.mask_scale:
    raise ValueError(
      f"the {image_shape[0]}x{image_shape[1]} inputs must be multiples of "
      f"masker.mask_scale={masker.mask_scale}"
    )
  mean = np.asarray(cc.dataset.mean, np.float32)
  std = np.asarray(cc.dataset.std, np.float32)
  normalize_images = lambda im: (np.asarray(im, np.float32) - mean) / std

  def build(mesh, workdir: str) -> Run:
    # The classifier: restored (or trained) in its own workdir; its config was
    # validated with the masker's.
    trained = run_training(cc, classifier_workdir(config, workdir), clf_task, progress=progress)
    classifier = trained["model"]
    clf_variables = jax.device_get(trained["state"].variables)
    original_apply, original_params = trained["apply_fn"], trained["params"]

    total = int(config.num_train_steps)
    masker_tx = _optimizer(config.masker_optimizer, total)
    train_classifier = config.mode == "ca"
    clf_tx = (
      _optimizer(config.classifier_optimizer, total) if train_classifier else optax.set_to_zero()
    )
    pool_size = int(config.pool_size) if train_classifier else 0
    o = config.objective
    step = make_masker_step(
      classifier,
      masker,
      masker_tx,
      clf_tx,
      train_classifier=train_classifier,
      objective=o.name,
      lam_in=float(o.lam_in),
      lam_out=float(o.lam_out),
      lam_tv=float(o.lam_tv),
      tv_counted_twice=bool(o.tv_counted_twice),
      historic_prob=float(config.historic_prob),
      pool_size=pool_size,
      pool_every=int(config.pool_every),
      infill=o.infill,
      blur_sigma=float(o.blur_sigma),
      seed=int(config.seed),
    )
    mask_fn = make_mask_fn(classifier, masker)

    def eval_maps(x, label, st):
      mask, logits = mask_fn(st, x)
      return mask, (logits.argmax(-1) == label).astype(np.float32)

    def run_eval(st):
      if not has_truth:
        return {"count": 0}
      return evaluate_localization(
        eval_maps,
        eval_source,
        maps_args=(st,),
        batch_size=int(config.eval_batch_size),
        normalize=normalize_images,
        apply_fn=original_apply,
        params=original_params,
        num_images=int(config.eval_num_images),
        progress=False,
      )

    def finish(out: dict) -> dict:
      classifier_eval = trained["eval"]
      result = write_eval(
        out["workdir"], out["eval"], classifier_accuracy=float(classifier_eval["eval_accuracy"])
      )
      return {
        **out,
        "eval": result,
        "classifier_eval": classifier_eval,
        "masker": masker,
        "classifier": classifier,
        "original": (original_apply, original_params),
      }

    return Run(
      init=lambda k, v: create_masker_state(
        masker, masker_tx, classifier, v, clf_tx, k, (1,) + tuple(image_shape), pool_size=pool_size
      ),
      init_args=(clf_variables,),
      step=step,
      evaluate=run_eval,
      meta={
        "kind": "masker",
        "model": cc.model.name,
        "mode": config.mode,
        "layers": list(config.masker.layers),
        "image_shape": list(image_shape),
      },
      expect=("kind", "model", "mode", "layers"),
      finish=finish,
    )

  def eval_line(done, ev):
    if not ev["count"]:
      return None
    return (
      f"step {done}: LE {ev['le']:.3f} OM {ev['om']:.3f} F1 {ev['f1']:.3f} "
      f"PxAP {ev['pxap']:.3f} area {ev['area']:.3f} "
      f"accuracy {ev['accuracy']:.3f} ({ev['count']} images)"
    )

  return Task(
    desc=f"masker {config.mode}",
    what="masker",
    source=train_source,
    host_batch=inputs.normalize,
    build=build,
    postfix=lambda m: {
      "loss": f"{m['train_masker_loss']:.3f}",
      "area": f"{m['train_mask_area']:.3f}",
    },
    eval_line=eval_line,
    preprocess=inputs.train_pre,
    # Only the training batch is sharded: localisation is evaluated on the host.
    sharded=("batch_size",),
  )
