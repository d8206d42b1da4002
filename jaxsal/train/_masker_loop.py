"""Masker training: FIX or CA, its state, step and localisation evaluation.

Every host runs the same ``train_masker(config, workdir)``. The config (the
classifier's with it, once) is checked before anything is written; the
masker's task goes to ``_setup.run_training``. The classifier is an input of
the run: a ``classifier_workdir`` given in the config is only read (never
trained on or rewritten; a missing classifier there is an error), and without
one the classifier is trained (or resumed) in ``<workdir>/classifier``, as
part of the masker's own run. A killed run started again with the same
command resumes from the latest checkpoint and ends with the same parameters
as an uninterrupted run.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import optax

from jaxsal._checks import check_bool, check_choice, check_number, check_positive_int
from jaxsal.train._inputs import classifier_inputs
from jaxsal.train._loop import (
  classifier_identity,
  classifier_model,
  classifier_task,
  load_classifier,
  validate_config,
)
from jaxsal.train._masker_step import INFILLS, create_masker_state, make_mask_fn, make_masker_step
from jaxsal.train._optim import check_optimizer_config, make_optimizer
from jaxsal.train._runner import write_eval
from jaxsal.train._setup import Run, Task, check_run_config, run_training
from jaxsal.train._workdir import fingerprint, plain
from jaxsal.train._wsol_eval import evaluate_localization

MODES = ("fix", "ca")

# The classifier's identity keys a masker must agree with: what its inputs are.
CLASSIFIER_KEYS = (
  "model",
  "model.kwargs",
  "dataset",
  "dataset.config",
  "image_shape",
  "dataset.mean",
  "dataset.std",
  "num_classes",
)


def _optimizer(cfg, total: int) -> optax.GradientTransformation:
  if cfg.schedule == "step" and int(cfg.decay_every_steps) <= 0:
    cfg = cfg.copy_and_resolve_references()
    cfg.decay_every_steps = max(total // 3, 1)
  return make_optimizer(cfg, total)


def validate_masker_config(config) -> None:
  """Checks a masker config before anything runs.

  Raises:
    ValueError: an unknown mode, objective, infill or tap name (the known
      ones listed), a negative or non-finite loss weight, a temperature or
      blur sigma that is not > 0, a bad probability, count or optimizer
      setting (``check_optimizer_config``), or a batch size that does not
      split over the mesh. Each names the key, its value and the range
      allowed.
  """
  from jaxsal import models, objectives

  validate_config(config.classifier)
  check_choice(config.mode, "mode", MODES)
  check_choice(config.objective.name, "objective.name", objectives.OBJECTIVES)
  check_choice(config.objective.infill, "objective.infill", INFILLS)
  for name in ("lam_in", "lam_out", "lam_tv"):
    check_number(config.objective[name], f"objective.{name}", low=0.0)
  check_number(config.objective.blur_sigma, "objective.blur_sigma", low=0.0, low_open=True)
  check_bool(config.objective.tv_counted_twice, "objective.tv_counted_twice")
  check_run_config(config, ("eval_num_images", "pool_every"))
  if not 0.0 <= float(config.historic_prob) <= 1.0:
    raise ValueError(f"historic_prob must be in [0, 1]; got {config.historic_prob!r}")
  for key in ("few_shot", "pool_size"):
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
      raise ValueError(f"{key} must be an integer >= 0; got {value!r}")
  for opt in ("masker_optimizer", "classifier_optimizer"):
    check_optimizer_config(config[opt], opt)
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
  check_bool(config.masker.gumbel, "masker.gumbel")
  check_number(config.masker.temperature, "masker.temperature", low=0.0, low_open=True)


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


def _read_classifier(config, path: str, want: dict, mesh) -> dict:
  """The trained classifier in ``config.classifier_workdir``, read only.

  Returns ``run_training``'s keys the masker uses (``model``, ``variables``,
  ``apply_fn``, ``params``, ``eval``) and its ``fingerprint``.

  Raises:
    FileNotFoundError: no trained classifier there (named, with how to make one).
    ValueError: it was trained on other inputs than the masker config's
      classifier (the differing keys named).
  """
  from jaxsal import data, models
  from jaxsal.train._logging import MetricWriter

  try:
    loaded = load_classifier(path)
  except FileNotFoundError as e:
    raise FileNotFoundError(
      f"classifier_workdir: {e}; or leave classifier_workdir empty to train the classifier "
      "in the masker's workdir"
    ) from None
  info = data.dataset_info(loaded["config"].dataset.name, loaded["config"].dataset.get("config"))
  have = classifier_identity(loaded["config"], int(info["num_classes"]), loaded["image_shape"])
  diffs = [f"{k} {have[k]!r} != {want[k]!r}" for k in CLASSIFIER_KEYS if have[k] != want[k]]
  if diffs:
    raise ValueError(
      f"classifier_workdir {path!r} holds a classifier trained on other inputs than the "
      f"masker config's classifier (the workdir's != the config's): {'; '.join(diffs)}; "
      "set classifier.* to match it, or use another classifier_workdir"
    )
  model, variables = loaded["model"], loaded["variables"]
  apply_fn, params = models.from_linen(model, variables)
  step = int(loaded["step"])
  logged = [
    r
    for r in MetricWriter(os.path.join(path, "metrics.jsonl"), enabled=False).read()
    if r.get("kind") == "eval" and r.get("step") == step
  ]
  if logged:
    last_eval = logged[-1]
  else:
    # Not in its log: evaluated here, and written nowhere.
    from jaxsal import parallel
    from jaxsal.train._loop import evaluate
    from jaxsal.train._state import make_eval_step

    inputs = classifier_inputs(loaded["config"])
    eval_fn = jax.jit(
      make_eval_step(model),
      in_shardings=(parallel.replicated(mesh), parallel.batch_sharding(mesh)),
      out_shardings=parallel.replicated(mesh),
    )
    holder = type("Variables", (), {"variables": variables})()
    ev = evaluate(
      eval_fn,
      holder,
      inputs.eval_source,
      batch_size=int(config.classifier.eval_batch_size),
      normalize=inputs.normalize,
      mesh=mesh,
      preprocess=inputs.eval_pre,
    )
    last_eval = {"step": step, "kind": "eval", **{f"eval_{k}": v for k, v in ev.items()}}
  return {
    "model": model,
    "variables": variables,
    "apply_fn": apply_fn,
    "params": params,
    "eval": last_eval,
    "fingerprint": fingerprint(have, step),
  }


def masker_identity(config, clf_identity: dict) -> dict:
  """What makes a masker run what it is, without its classifier's fingerprint (known once built)."""
  return plain(
    {
      "kind": "masker",
      "mode": config.mode,
      "objective": plain(config.objective),
      "masker": plain(config.masker),
      "masker_optimizer": plain(config.masker_optimizer),
      "classifier_optimizer": plain(config.classifier_optimizer),
      "few_shot": int(config.few_shot),
      "historic_prob": float(config.historic_prob),
      "pool_size": int(config.pool_size),
      "pool_every": int(config.pool_every),
      "seed": int(config.seed),
      "batch_size": int(config.batch_size),
      **{f"classifier.{k}": clf_identity[k] for k in CLASSIFIER_KEYS},
    }
  )


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
      written into ``workdir``; a ``classifier_workdir`` whose classifier
      was trained on other inputs.
    FileNotFoundError: ``classifier_workdir`` holds no trained classifier.
    jaxsal.train.WorkdirError: ``workdir`` is in use, or was made by another
      run (another config, or a masker of another classifier).

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
  if config.classifier_workdir:
    # An input of the run: missing is an error before anything is written,
    # never a new training at a mistyped path.
    path = os.path.abspath(os.path.expanduser(config.classifier_workdir))
    if not (
      os.path.isfile(os.path.join(path, "config.json"))
      and os.path.isdir(os.path.join(path, "checkpoints"))
    ):
      raise FileNotFoundError(
        f"classifier_workdir: no trained classifier in {path!r} (no config.json and "
        f"checkpoints there); train one first: jaxsal train --config small_cnn_digits "
        f"--workdir {config.classifier_workdir}, or leave classifier_workdir empty to train "
        "the classifier in the masker's workdir"
      )
  mean = np.asarray(cc.dataset.mean, np.float32)
  std = np.asarray(cc.dataset.std, np.float32)
  normalize_images = lambda im: (np.asarray(im, np.float32) - mean) / std

  clf_identity = classifier_identity(cc, int(inputs.info["num_classes"]), image_shape)

  def build(mesh, workdir: str) -> Run:
    # The classifier (its config was validated with the masker's): read only
    # from ``classifier_workdir``, or trained (or resumed) in the masker's own
    # ``<workdir>/classifier``.
    if config.classifier_workdir:
      trained = _read_classifier(
        config, os.path.abspath(os.path.expanduser(config.classifier_workdir)), clf_identity, mesh
      )
      clf_variables = trained["variables"]
    else:
      trained = run_training(cc, classifier_workdir(config, workdir), clf_task, progress=progress)
      clf_variables = jax.device_get(trained["state"].variables)
      trained["fingerprint"] = fingerprint(clf_identity, int(trained["state"].step))
    classifier = trained["model"]
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
        mesh=mesh,
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
      identity={"classifier.fingerprint": trained["fingerprint"]},
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
    identity=masker_identity(config, clf_identity),
  )
