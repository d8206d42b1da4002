"""What the experiment runners share: the trained classifier and the test images."""

from __future__ import annotations

import json
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
  from jaxsal import data, models, train

  train.validate_config(classifier_config)
  t0 = time.perf_counter()
  trained = train.train_and_evaluate(classifier_config, workdir, progress=progress)
  c = classifier_config
  num_classes = data.dataset_info(c.dataset.name, c.dataset.get("config", None))["num_classes"]
  model = models.get_model(c.model.name, num_classes=num_classes, **dict(c.model.kwargs))
  apply_fn, params = models.from_linen(model, jax.device_get(trained["state"].variables))
  return (
    apply_fn,
    params,
    {
      "mesh": trained["mesh"],
      "seconds": time.perf_counter() - t0,
      "accuracy": float(trained["eval"]["eval_accuracy"]),
    },
  )


def test_images(classifier_config, num: int) -> tuple[np.ndarray, np.ndarray]:
  """The first ``num`` images of the classifier's evaluation split, normalised as in training."""
  from jaxsal import data

  c = classifier_config
  src = data.load_source(
    c.dataset.name,
    c.dataset.eval_split,
    config=c.dataset.get("config", None),
    data_dir=c.dataset.get("data_dir", None),
  )
  num = min(num, len(src))
  examples = [src[i] for i in range(num)]
  images = np.stack([np.asarray(e["image"]) for e in examples])
  labels = np.asarray([int(e["label"]) for e in examples], np.int32)
  return normalize(c, images), labels


def normalize(classifier_config, images: np.ndarray) -> np.ndarray:
  """uint8 images -> the classifier's inputs: ``(x / 255 - mean) / std``."""
  mean = np.asarray(classifier_config.dataset.mean, np.float32)
  std = np.asarray(classifier_config.dataset.std, np.float32)
  return (np.asarray(images, np.float32) / 255.0 - mean) / std


def method_kwargs(name: str, config) -> dict[str, Any]:
  """The experiment config's hyperparameters for one attribution method."""
  if name == "integrated_gradients":
    return {"steps": int(config.ig_steps)}
  if name in ("gradcam", "guided_gradcam"):
    return {"layer": config.gradcam_layer}
  return {}


def write_result(path: str, result: dict[str, Any]) -> None:
  """``result`` as JSON at ``path``, on the first host only."""
  if jax.process_index() == 0:
    with open(path, "w") as f:
      json.dump(result, f, indent=2)


def text_table(head: list[str], rows: list[list[str]]) -> list[str]:
  """Lines of a plain-text table: a header, a rule, then the rows, columns padded."""
  widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
  fmt = lambda r: " | ".join(c.ljust(w) for c, w in zip(r, widths))
  return [fmt(head), "-+-".join("-" * w for w in widths)] + [fmt(r) for r in rows]
