"""Classifiers by name, and their variables without the tap collections."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxsal import _checks
from jaxsal.models import resnet
from jaxsal.models._taps import strip_tap_collections
from jaxsal.models.small_cnn import SmallCNN

_MODELS: dict[str, Callable[..., nn.Module]] = {
  "small_cnn": SmallCNN,
  "resnet18": resnet.ResNet18,
  "resnet34": resnet.ResNet34,
  "resnet50": resnet.ResNet50,
}


def list_models() -> list[str]:
  """Returns the names :func:`get_model` knows, sorted.

  Returns:
    ``['resnet18', 'resnet34', 'resnet50', 'small_cnn']``.

  Example:
    >>> 'resnet50' in list_models()
    True
  """
  return sorted(_MODELS)


def get_model(name: str, *, num_classes: int, **kwargs: Any) -> nn.Module:
  """Builds a classifier by name.

  Args:
    name: one of :func:`list_models`.
    num_classes: number of logits.
    **kwargs: further attributes of the model (``widths`` for ``small_cnn``,
      ``dtype`` for the ResNets).

  Returns:
    An unbound Linen module whose ``__call__(x, train=False)`` maps NHWC
    images ``[B, H, W, C]`` to logits ``[B, num_classes]``.

  Raises:
    ValueError: an unknown name (the message lists the known ones) or a
      ``num_classes`` that is not a positive int.

  Example:
    >>> get_model('small_cnn', num_classes=10).num_classes
    10
  """
  if name not in _MODELS:
    raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
  _checks.check_positive_int(num_classes, "num_classes")
  return _MODELS[name](num_classes=num_classes, **kwargs)


def init_model(model: nn.Module, key: jax.Array, input_shape: Sequence[int]) -> dict[str, Any]:
  """Initialises a classifier's variables, without tap collections.

  Args:
    model: a Linen classifier with ``__call__(x, train=False)``.
    key: a PRNG key (``jax.random.key``).
    input_shape: ``(B, H, W, C)`` of the float32 zeros it is initialised on;
      the variables do not depend on ``B``.

  Returns:
    ``{'params': ...}``, plus ``'batch_stats'`` for BatchNorm models. The
    ``'perturbations'`` and ``'taps'`` collections that ``init`` creates are
    dropped: their shapes are tied to the init batch, and leaving them in would
    silently broadcast against other batch sizes.

  Raises:
    ValueError: ``input_shape`` is not a rank-4 NHWC shape.

  Example:
    >>> import jax
    >>> variables = init_model(get_model('resnet18', num_classes=10),
    ...                        jax.random.key(0), (1, 32, 32, 3))
    >>> sorted(variables)
    ['batch_stats', 'params']
  """
  input_shape = tuple(int(d) for d in input_shape)
  x = jax.ShapeDtypeStruct(input_shape, jnp.float32)
  _checks.check_images(x, "input_shape")
  variables = model.init(key, jnp.zeros(input_shape, jnp.float32), train=False)
  return strip_tap_collections(variables)
