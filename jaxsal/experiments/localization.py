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

import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxsal import _checks
from jaxsal import attribution as A
from jaxsal.experiments import _common

METHODS = {
  "gradient": A.gradient,
  "gradient_x_input": A.gradient_x_input,
  "integrated_gradients": A.integrated_gradients,
  "smoothgrad": None,  # built from the config (samples)
  "guided_backprop": A.guided_backprop,
  "gradcam": A.gradcam,
}
RESULT_FILE = "localization.json"
COLUMNS = ("le", "om", "f1", "f1a", "sm", "pxap", "area", "accuracy")


def validate(config) -> None:
  """Checks the experiment's own entries before anything runs."""
  from jaxsal import train
  from jaxsal.configs import localization_digits

  for m in config.methods:
    _checks.check_choice(m, "method", METHODS)
  for key in ("num_images", "batch_size", "ig_steps", "smoothgrad_samples", "center_box_images"):
    _checks.check_positive_int(config[key], key)
  if not (config.maskers or config.methods or config.center_box):
    raise ValueError("nothing to evaluate: maskers, methods and center_box are all empty")
  for v in config.maskers:
    train.validate_masker_config(_masker_config(config, v, localization_digits))


def _masker_config(config, variant, module):
  from jaxsal import configs

  m = module.masker_config(variant, config.classifier)
  return configs.apply_overrides(m, list(config.masker_overrides))


def _method(name: str, config):
  if name == "smoothgrad":
    return A.smoothgrad(A.gradient, samples=int(config.smoothgrad_samples))
  return METHODS[name]


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
  from jaxsal.configs import localization_digits

  validate(config)
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
  )
  rows, seconds = {}, {}

  def record(name, fn):
    t0 = time.perf_counter()
    rows[name] = train.evaluate_localization(fn, desc=name, **common)
    seconds[name] = time.perf_counter() - t0

  for variant in config.maskers:
    mc = _masker_config(config, variant, localization_digits)
    mc.classifier_workdir = workdir
    out = train.train_masker(mc, os.path.join(workdir, "maskers", variant), progress=progress)
    mask_fn = train.make_mask_fn(out["classifier"], out["masker"])
    state = out["state"]

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

  for name in config.methods:
    method, kwargs = _method(name, config), _common.method_kwargs(name, config)

    def method_maps(x, label, method=method, kwargs=kwargs, name=name):
      logits = apply_fn(params, x)
      pred = logits.argmax(-1)
      extra = (
        {"key": jax.random.split(jax.random.key(config.seed), x.shape[0])}
        if name == "smoothgrad"
        else {}
      )
      maps = jnp.abs(method(apply_fn, params, x, pred, **kwargs, **extra)).sum(-1)
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
  return result


def format_table(result: dict[str, Any]) -> str:
  """The results as a plain-text table, one row per map (lower is better for LE, OM, SM)."""
  head = ["map"] + [c.upper() if c not in ("area", "accuracy") else c for c in COLUMNS]
  rows = [[name] + [f"{r[c]:.3f}" for c in COLUMNS] for name, r in result["rows"].items()]
  return "\n".join(_common.text_table(head, rows))
