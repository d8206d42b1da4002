"""A classifier config's inputs: its sources, crops, input shape and normalisation.

The classifier trains on them and the masker explains that classifier on the
same images, so both read them here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from jaxsal.train._setup import load_sources


class ClassifierInputs(NamedTuple):
  """What a classifier config's dataset gives.

  Attributes:
    info: ``jaxsal.data.dataset_info`` (``num_classes``, ``class_names``, ...).
    train_source, eval_source: the random-access splits.
    train_pre, eval_pre: per-example crops (None for fixed-size images).
    image_shape: the model's input ``(H, W, C)``.
    normalize: a host batch -> ``{'image': float32 normalised, 'label': int32}``.
  """

  info: dict
  train_source: Any
  eval_source: Any
  train_pre: Callable | None
  eval_pre: Callable | None
  image_shape: tuple[int, int, int]
  normalize: Callable[[dict], dict]


def transforms(config, info: dict):
  """Per-example transforms and the model's input shape.

  Datasets whose images vary in size (ImageNet) get the standard
  random-resized-crop for training and a central crop for evaluation, to
  ``dataset.image_size``; fixed-size datasets are used as stored.

  Args:
    config: a classifier config.
    info: its dataset's ``jaxsal.data.dataset_info``.

  Returns:
    ``(train_transform or None, eval_transform or None, (H, W, C))``.

  Raises:
    ValueError: the images vary in size and ``dataset.image_size`` is not set.
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


def normalizer(config, channels: int) -> Callable[[dict], dict]:
  """``batch -> {'image': (image - dataset.mean) / dataset.std, 'label': int32}`` on the host.

  Raises:
    ValueError: ``dataset.mean`` has neither 1 nor ``channels`` entries.
  """
  mean = np.asarray(config.dataset.mean, np.float32)
  std = np.asarray(config.dataset.std, np.float32)
  if mean.shape[0] not in (1, channels):
    raise ValueError(
      f"dataset.mean has {mean.shape[0]} entries but the images have {channels} channels"
    )

  def normalize(batch: dict) -> dict:
    return {
      "image": (np.asarray(batch["image"], np.float32) - mean) / std,
      "label": np.asarray(batch["label"], np.int32),
    }

  return normalize


def classifier_inputs(config) -> ClassifierInputs:
  """The inputs of a (validated) classifier config; reads no image, writes nothing.

  Args:
    config: a classifier config (see ``jaxsal.configs.small_cnn_digits``).

  Returns:
    Its ``ClassifierInputs``.

  Raises:
    ValueError: varying image sizes without ``dataset.image_size``, or a
      ``dataset.mean`` that does not fit the channels.

  Example:
    >>> from jaxsal import configs
    >>> classifier_inputs(configs.get_config('small_cnn_digits:test')).image_shape
    (32, 32, 1)
  """
  from jaxsal import data

  info = data.dataset_info(config.dataset.name, config.dataset.get("config", None))
  train_source, eval_source = load_sources(config.dataset)
  train_pre, eval_pre, image_shape = transforms(config, info)
  return ClassifierInputs(
    info=info,
    train_source=train_source,
    eval_source=eval_source,
    train_pre=train_pre,
    eval_pre=eval_pre,
    image_shape=tuple(image_shape),
    normalize=normalizer(config, image_shape[-1]),
  )
