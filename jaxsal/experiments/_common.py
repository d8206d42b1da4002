"""What the experiment runners share: the trained classifier and the test images."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np


def trained_classifier(
  classifier_config, workdir: str, *, progress: bool = True
) -> tuple[Callable, Any, dict[str, Any]]:
  """Trains the classifier in ``workdir``, or restores it when its checkpoints are there.

  Returns:
    ``(apply_fn, params, info)``: a tapped ``apply_fn`` and its variables,
    and ``info`` with ``mesh``, ``accuracy`` (the last evaluation) and
    ``seconds``.
  """
  from jaxsal import train

  train.validate_config(classifier_config)
  t0 = time.perf_counter()
  trained = train.train_and_evaluate(classifier_config, workdir, progress=progress)
  apply_fn, params = trained["apply_fn"], trained["params"]
  return (
    apply_fn,
    params,
    {
      "mesh": trained["mesh"],
      "seconds": time.perf_counter() - t0,
      "accuracy": float(trained["eval"]["eval_accuracy"]),
    },
  )


def check_workdir(workdir: str, what: str = "workdir") -> None:
  """A ValueError unless ``workdir`` is a folder, or a path where one can be made and written.

  Checked before anything is computed or written, so that a workdir that
  is a file, lies under a file or in a read-only folder ends the command
  with one line instead of a traceback after the work.
  """
  if not isinstance(workdir, str) or not workdir:
    raise ValueError(f"{what} must be a folder path; got {workdir!r}")
  path = os.path.normpath(os.path.expanduser(workdir))
  if os.path.exists(path) and not os.path.isdir(path):
    raise ValueError(f"{what} {workdir!r} is a file, not a folder; give a folder")
  existing = path
  while existing and not os.path.exists(existing):
    existing = os.path.dirname(existing)
  shown = existing or os.curdir
  if existing and not os.path.isdir(existing):
    raise ValueError(f"{what} {workdir!r}: {shown!r} is a file, not a folder; give another path")
  if not os.access(existing or os.curdir, os.W_OK | os.X_OK):
    raise ValueError(
      f"{what} {workdir!r} cannot be written: {shown!r} is not writable; give a folder you can "
      "write to"
    )


def environment() -> dict[str, Any]:
  """Where a result was computed: versions, devices, cores and the date (UTC)."""
  import datetime
  import platform

  import jaxsal

  devices = jax.devices()
  return {
    "jaxsal": jaxsal.__version__,
    "jax": jax.__version__,
    "python": platform.python_version(),
    "platform": devices[0].platform,
    "device_kind": devices[0].device_kind,
    "num_devices": len(devices),
    "cpu_count": os.cpu_count(),
    "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
  }


def test_examples(classifier_config, num: int) -> list[dict[str, Any]]:
  """The first ``num`` examples (image, label, and box or mask where the dataset has them) of the classifier's evaluation split."""
  from jaxsal import data

  d = classifier_config.dataset
  src = data.load_source(
    d.name, d.eval_split, config=d.get("config", None), data_dir=d.get("data_dir", None)
  )
  return [src[i] for i in range(min(num, len(src)))]


def test_images(classifier_config, num: int) -> tuple[np.ndarray, np.ndarray]:
  """The first ``num`` images of the classifier's evaluation split, normalised as in training."""
  examples = test_examples(classifier_config, num)
  images = np.stack([np.asarray(e["image"]) for e in examples])
  labels = np.asarray([int(e["label"]) for e in examples], np.int32)
  return normalize(classifier_config, images), labels


def normalize(classifier_config, images: np.ndarray) -> np.ndarray:
  """uint8 images -> the classifier's inputs: ``(x / 255 - mean) / std``."""
  mean = np.asarray(classifier_config.dataset.mean, np.float32)
  std = np.asarray(classifier_config.dataset.std, np.float32)
  return (np.asarray(images, np.float32) / 255.0 - mean) / std


def method_params(methods: Any) -> dict[str, dict[str, Any]]:
  """An experiment config's ``methods`` as ``{name: hyperparameters}``.

  ``methods`` is a mapping ``{name: {hparam: value}}`` (a ConfigDict), or a
  sequence of names, each then with the registry's defaults.
  """
  if isinstance(methods, str):
    return {methods: {}}
  if hasattr(methods, "items"):
    return {
      str(name): dict(h.to_dict() if hasattr(h, "to_dict") else (h or {}))
      for name, h in methods.items()
    }
  return {str(name): {} for name in methods}


def classifier_taps(classifier_config) -> list[str]:
  """The names of the taps (the layers a method's ``layer`` can name) of a classifier config's model."""
  from jaxsal import models

  m = classifier_config.model
  kwargs = (
    m.kwargs.to_dict() if hasattr(m.get("kwargs"), "to_dict") else dict(m.get("kwargs") or {})
  )
  try:
    model = models.get_model(m.name, num_classes=2, **kwargs)
  except TypeError as e:
    raise ValueError(f"model.kwargs {kwargs}: model {m.name!r} does not take them ({e})") from None
  return models.tap_names(model)


def get_methods(
  methods: Any, *, special: tuple[str, ...] = (), where: str = "methods", classifier=None
) -> dict[str, Callable | None]:
  """Every method an experiment's config names, from ``jaxsal.attribution.get_method``.

  Args:
    methods: the config's ``methods`` (see :func:`method_params`).
    special: names the experiment computes itself (a masker, random
      baselines); they map to ``None``.
    where: the config entry's name, for errors.
    classifier: the classifier config the methods explain; where given, a
      ``layer`` hyperparameter must name one of its model's taps (checked
      here, before anything is trained, not when the method is traced).

  Returns:
    ``{name: fn(apply_fn, params, x, target, *, key=None)}``, the registry's
    methods in the registry's order, then ``special`` in its order.

  Raises:
    ValueError: no method, an unknown name (the known ones listed), a
      hyperparameter the method does not take, or a ``layer`` the classifier
      does not have.
  """
  from jaxsal import attribution as A

  params = method_params(methods)
  known = tuple(A.method_names()) + tuple(special)
  # A ConfigDict keeps no order: results come in the registry's order, then
  # the experiment's own rows in the order it gives.
  order = {name: i for i, name in enumerate(known)}
  params = dict(sorted(params.items(), key=lambda kv: order.get(kv[0], len(order))))
  if not params:
    raise ValueError(f"{where} must name at least one method; known: {', '.join(known)}")
  out: dict[str, Callable | None] = {}
  for name, hparams in params.items():
    if name in special:
      if hparams:
        raise ValueError(f"{where}.{name} takes no hyperparameters; got {hparams}")
      out[name] = None
      continue
    if name not in A.method_names():
      raise ValueError(f"{where}: unknown method {name!r}; known: {', '.join(known)}")
    try:
      out[name] = A.get_method(name, **hparams)
    except ValueError as e:
      raise ValueError(f"{where}.{name}: {e}") from None
    layer = hparams.get("layer")
    if classifier is not None and layer is not None:
      taps = classifier_taps(classifier)
      if layer not in taps:
        raise ValueError(
          f"{where}.{name}.layer: the classifier {classifier.model.name!r} has no layer "
          f"{layer!r}; its layers (taps): {', '.join(taps)}"
        )
  return out


def method_key(name: str, seed: int, batch: int) -> dict[str, Any]:
  """``{'key': [batch] keys}`` for a stochastic method, ``{}`` for a deterministic one."""
  from jaxsal import attribution as A

  if A.needs_key(name):
    return {"key": jax.random.split(jax.random.key(seed), batch)}
  return {}


def write_result(path: str, result: dict[str, Any]) -> None:
  """``result`` as JSON at ``path``, on the first host only, written whole or not at all."""
  if jax.process_index() == 0:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
      json.dump(result, f, indent=2)
    os.replace(tmp, path)


def text_table(head: list[str], rows: list[list[str]]) -> list[str]:
  """Lines of a plain-text table: a header, a rule, then the rows, columns padded."""
  widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
  fmt = lambda r: " | ".join(c.ljust(w) for c, w in zip(r, widths))
  return [fmt(head), "-+-".join("-" * w for w in widths)] + [fmt(r) for r in rows]
