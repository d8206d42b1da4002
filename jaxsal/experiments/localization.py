"""Weakly supervised localisation: trained maskers against the centre box and gradient methods.

Each masker variant is trained (or reused) in ``<workdir>/maskers/<variant>``
on the classifier in ``workdir``. Every map is scored on the same test
images by ``jaxsal.train.evaluate_localization``: LE, OM, F1, F1a, SM (with
the original classifier), PxAP and the mean mask value.

What each row's map is:
  * a masker: its mask, from the classifier it was trained with (for CA, the
    classifier trained alongside, which also decides OM's "correct");
  * the centre box: a box of the training split's mean box size, centred;
  * an attribution method: ``|map|`` summed over channels, divided by its
    maximum per image, for the original classifier's predicted class.
"""

from __future__ import annotations

import copy
import json
import os
import time
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxsal import _checks
from jaxsal.experiments import _common

COMMAND = "localization"
HELP = (
  "localisation metrics (LE, OM, F1, SM, PxAP) of maskers, the centre box and attribution methods"
)
DEFAULT_CONFIG = "localization_digits"
CONFIG_HELP = "an experiment config (localization_digits[:test]) or a .py path"
WORKDIR_HELP = (
  "the classifier's workdir: trained there if it holds no checkpoint; maskers are trained "
  "(or reused) in <workdir>/maskers"
)
SET_EXAMPLE = "num_images=500"

RESULT_FILE = "localization.json"
COLUMNS = ("le", "om", "f1", "f1a", "sm", "pxap", "area", "accuracy")


def validate(config) -> None:
  """Checks the experiment's own entries before anything runs."""
  from jaxsal import train

  train.validate_config(config.classifier)
  if not (config.maskers or config.methods or config.center_box):
    raise ValueError("nothing to evaluate: maskers, methods and center_box are all empty")
  if config.methods:
    _common.get_methods(config.methods, classifier=config.classifier)
  for key in ("num_images", "batch_size", "center_box_images"):
    _checks.check_positive_int(config[key], key)
  for variant in config.maskers:
    if not config.maskers[variant]:
      raise ValueError(
        f"maskers.{variant} is empty: each entry of maskers is a whole masker config; "
        f"--set maskers=(...) can only pick among the variants the config holds, and in a "
        f"config file localization_digits.maskers(('{variant}',)) builds one from masker_digits"
      )
    train.validate_masker_config(masker_config(config, variant, ""))


def masker_workdir(workdir: str, variant: str) -> str:
  """Where masker ``variant`` is trained (or found) on the classifier in ``workdir``."""
  return os.path.join(workdir, "maskers", variant)


def trained_masker(masker_config, workdir: str, variant: str, *, progress: bool = True):
  """Trains masker ``variant`` in :func:`masker_workdir` (or restores it from there).

  Args:
    masker_config: the masker's config, on the classifier in ``workdir``.
    workdir: the classifier's workdir; variant: the masker's name there.
    progress: the masker's progress bar.

  Returns:
    ``(mask_fn, state)``: ``mask_fn(state, x) -> (masks [B, H, W], logits)``.
  """
  from jaxsal import train

  out = train.train_masker(masker_config, masker_workdir(workdir, variant), progress=progress)
  return train.make_mask_fn(out["classifier"], out["masker"]), out["state"]


def masker_config(config, variant: str, workdir: str):
  """The nested config of masker ``variant``, on this experiment's classifier in ``workdir``."""
  mc = copy.deepcopy(config.maskers[variant])
  mc.classifier = copy.deepcopy(config.classifier)
  mc.classifier_workdir = workdir
  return mc


def center_box(source, num: int, height: int, width: int) -> np.ndarray:
  """The centred ``(y0, x0, y1, x1)`` box of the mean box height and width of ``source``'s first ``num`` examples."""
  boxes = np.stack([np.asarray(source[i]["box"]) for i in range(min(num, len(source)))])
  bh = int(round(float((boxes[:, 2] - boxes[:, 0]).mean())))
  bw = int(round(float((boxes[:, 3] - boxes[:, 1]).mean())))
  y0, x0 = (height - bh) // 2, (width - bw) // 2
  return np.asarray([y0, x0, y0 + bh, x0 + bw], np.int32)


def run(config, workdir: str, *, progress: bool = True) -> dict[str, Any]:
  """Trains or reuses the maskers, scores every map, writes ``localization.json``.

  Returns:
    ``{'rows': {name: metrics}, 'classifier_accuracy', 'num_images', 'path',
    'seconds': {name: s}}``.
  """
  from jaxsal import data, metrics, train

  validate(config)
  t_start = time.perf_counter()
  cc = config.classifier
  apply_fn, params, info = _common.trained_classifier(cc, workdir, progress=progress)
  src = lambda split: data.load_source(
    cc.dataset.name,
    split,
    config=cc.dataset.get("config", None),
    data_dir=cc.dataset.get("data_dir", None),
  )
  test = src(cc.dataset.eval_split)
  normalize = lambda im: _common.normalize(cc, np.asarray(im) * 255.0)
  common = dict(
    source=test,
    batch_size=int(config.batch_size),
    normalize=normalize,
    apply_fn=apply_fn,
    params=params,
    num_images=int(config.num_images),
    progress=progress,
    mesh=info["mesh"],
  )
  rows, seconds = {}, {}

  def record(name, fn):
    t0 = time.perf_counter()
    rows[name] = train.evaluate_localization(fn, desc=name, **common)
    seconds[name] = time.perf_counter() - t0

  for variant in config.maskers:
    mc = masker_config(config, variant, workdir)
    mask_fn, state = trained_masker(mc, workdir, variant, progress=progress)

    def masker_maps(x, label, mask_fn=mask_fn, state=state):
      mask, logits = mask_fn(state, x)
      return mask, (logits.argmax(-1) == label).astype(jnp.float32)

    record(f"masker {variant}", masker_maps)

  if config.center_box:
    h, w = np.asarray(test[0]["image"]).shape[:2]
    box = center_box(src(cc.dataset.train_split), int(config.center_box_images), h, w)
    box_mask = metrics.box_masks(jnp.asarray(box), h, w)

    def center_maps(x, label):
      correct = (apply_fn(params, x).argmax(-1) == label).astype(jnp.float32)
      return jnp.broadcast_to(box_mask, x.shape[:3]), correct

    record("center box", center_maps)

  for name, method in (_common.get_methods(config.methods) if config.methods else {}).items():

    def method_maps(x, label, method=method, name=name):
      logits = apply_fn(params, x)
      pred = logits.argmax(-1)
      extra = _common.method_key(name, int(config.seed), x.shape[0])
      maps = jnp.abs(method(apply_fn, params, x, pred, **extra)).sum(-1)
      maps = maps / jnp.maximum(maps.max((1, 2), keepdims=True), 1e-12)
      return jnp.clip(maps, 0.0, 1.0), (pred == label).astype(jnp.float32)

    record(name, method_maps)

  path = os.path.join(workdir, RESULT_FILE)
  result = {
    "rows": rows,
    "seconds": seconds,
    "classifier_accuracy": info["accuracy"],
    "num_images": min(int(config.num_images), len(test)),
    "path": path,
    "config": json.loads(config.to_json_best_effort()),
  }
  _common.write_result(path, result)
  result["total_seconds"] = time.perf_counter() - t_start
  return result


def summary(result: dict[str, Any]) -> str:
  """The table and a closing line, as ``jaxsal localization`` prints them."""
  return (
    f"{format_table(result)}\n"
    f"jaxsal: localisation of {len(result['rows'])} maps on {result['num_images']} test images "
    f"(lower is better for LE, OM, SM) in {result['total_seconds']:.1f}s; results in "
    f"{result['path']}"
  )


def format_table(result: dict[str, Any]) -> str:
  """The results as a plain-text table, one row per map (lower is better for LE, OM, SM)."""
  head = ["map"] + [c.upper() if c not in ("area", "accuracy") else c for c in COLUMNS]
  rows = [[name] + [f"{r[c]:.3f}" for c in COLUMNS] for name, r in result["rows"].items()]
  return "\n".join(_common.text_table(head, rows))
