"""Taps: named intermediate feature maps of a Linen classifier.

A classifier exposes a feature map by calling :func:`tap` in its top-level
``__call__``. A tap does two things at once:

* it sows the value into the ``'taps'`` collection, so that
  :func:`apply_with_taps` can return it (CAM-style methods read it);
* it passes the value through ``module.perturb``, so that adding a
  ``'perturbations'`` collection to the variables gives the gradient of any
  function of the logits with respect to the feature map (Grad-CAM).

Without a ``'perturbations'`` collection and with ``'taps'`` immutable (a plain
``model.apply(variables, x)``), a tap is the identity and costs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxsal._checks import check_images

TAPS_COLLECTION = "taps"
PERTURBATIONS_COLLECTION = "perturbations"
# Collections that only exist to expose intermediates; never part of the
# variables a user trains, saves or randomises.
_TAP_COLLECTIONS = (TAPS_COLLECTION, PERTURBATIONS_COLLECTION)


def _keep_last(previous: Any, value: Any) -> Any:
  del previous
  return value


def tap(module: Any, name: str, x: jax.Array) -> jax.Array:
  """Exposes the feature map ``x`` of a Linen module under ``name``.

  Call it from the top-level module's ``__call__`` and list ``name`` in the
  module's ``TAPS`` class attribute.

  Args:
    module: the bound Linen module whose ``__call__`` is running.
    name: the tap's name, e.g. ``'l4'``; unique within the module.
    x: the feature map, ``[B, h, w, c]``.

  Returns:
    ``x`` plus the ``'perturbations'`` variable ``name`` when that collection is
    given to ``apply`` (zeros at ``init``), else ``x`` itself.

  Example:
    >>> import flax.linen as nn
    >>> class Net(nn.Module):
    ...   TAPS = ('feat',)
    ...   @nn.compact
    ...   def __call__(self, x, train: bool = False):
    ...     x = tap(self, 'feat', nn.Conv(4, (3, 3))(x))
    ...     return nn.Dense(2)(x.mean(axis=(1, 2)))
  """
  # Overwrite rather than append: one array per tap, not a tuple.
  module.sow(TAPS_COLLECTION, name, x, init_fn=lambda: None, reduce_fn=_keep_last)
  return module.perturb(name, x, collection=PERTURBATIONS_COLLECTION)


def tap_names(model: Any) -> list[str]:
  """Returns the names of the taps a model exposes, in network order.

  Args:
    model: a Linen module (or its class) with a ``TAPS`` class attribute.

  Returns:
    A list of tap names, e.g. ``['l0', 'l1', 'l2', 'l3', 'l4']``.

  Raises:
    ValueError: the model declares no taps.

  Example:
    >>> from jaxsal.models import SmallCNN
    >>> tap_names(SmallCNN())
    ['l0', 'l1', 'l2', 'l3', 'l4']
  """
  names = getattr(model, "TAPS", None)
  if not names:
    raise ValueError(
        f"{type(model).__name__} declares no taps; add a TAPS class attribute "
        "listing the names passed to jaxsal.models.tap in its __call__.")
  return list(names)


def strip_tap_collections(variables: Mapping[str, Any]) -> dict[str, Any]:
  """Returns ``variables`` without the ``'taps'`` and ``'perturbations'`` collections."""
  return {k: v for k, v in variables.items() if k not in _TAP_COLLECTIONS}


def _check_tap_request(requested: Sequence[str], available: Sequence[str], what: str) -> None:
  for name in requested:
    if name not in available:
      raise ValueError(
          f"unknown {what} {name!r}; available taps: {', '.join(available)}")


def apply_with_taps(
    model: Any,
    variables: Mapping[str, Any],
    x: jax.Array,
    *,
    taps: Sequence[str] | None = None,
    train: bool = False,
    perturbations: Mapping[str, jax.Array] | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Runs a tapped Linen classifier and returns its logits and feature maps.

  Args:
    model: a Linen module with a ``TAPS`` class attribute and a
      ``__call__(x, train=...)`` that calls :func:`tap`.
    variables: its variables (``{'params': ...}``, plus ``'batch_stats'`` for
      BatchNorm models); any ``'taps'``/``'perturbations'`` in it are ignored.
    x: images ``[B, H, W, C]`` float, NHWC.
    taps: names of the taps to return; all of them if None.
    train: run in training mode. Updated batch statistics are discarded: this
      function never changes ``variables``.
    perturbations: optional ``{tap name: array}`` added to those feature maps;
      each array must have the tap's shape. Differentiating with respect to
      it gives the gradient with respect to the feature map (Grad-CAM). Taps
      not named get zeros.

  Returns:
    ``(logits, feature_maps)``: logits ``[B, num_classes]`` and a dict from
    each requested tap name to its feature map ``[B, h, w, c]`` (before the
    perturbation is added).

  Raises:
    ValueError: an unknown tap name (the message lists the available taps),
      a perturbation whose shape differs from its tap's, or non-NHWC ``x``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxsal.models import SmallCNN, init_model
    >>> model = SmallCNN(num_classes=10)
    >>> variables = init_model(model, jax.random.key(0), (1, 64, 64, 1))
    >>> x = jnp.zeros((2, 64, 64, 1))
    >>> logits, maps = apply_with_taps(model, variables, x, taps=['l4'])
    >>> maps['l4'].shape
    (2, 4, 4, 128)
    >>> def logit0(p):  # d logit_0 / d l4, for Grad-CAM
    ...   return apply_with_taps(model, variables, x, taps=[],
    ...                          perturbations={'l4': p})[0][:, 0].sum()
    >>> jax.grad(logit0)(jnp.zeros_like(maps['l4'])).shape
    (2, 4, 4, 128)
  """
  available = tap_names(model)
  requested = available if taps is None else list(taps)
  _check_tap_request(requested, available, "tap")
  check_images(x, "x")
  variables = strip_tap_collections(variables)
  mutable = [TAPS_COLLECTION] + (["batch_stats"] if train and "batch_stats" in variables else [])

  def run(variables):
    return model.apply(variables, x, train=train, mutable=mutable)

  if perturbations is not None:
    _check_tap_request(list(perturbations), available, "perturbation")
    # perturb() insists on every tap's variable once the collection is present,
    # so the ones not given are zeros of the tap's shape (found without running).
    shapes = jax.eval_shape(run, variables)[1][TAPS_COLLECTION]
    full = {}
    for name in available:
      shape = shapes[name]
      if name in perturbations:
        given = jnp.shape(perturbations[name])
        if tuple(given) != tuple(shape.shape):
          raise ValueError(
              f"perturbations[{name!r}] must have the tap's shape {tuple(shape.shape)}; "
              f"got {tuple(given)}")
        full[name] = perturbations[name]
      else:
        full[name] = jnp.zeros(shape.shape, shape.dtype)
    variables = {**variables, PERTURBATIONS_COLLECTION: full}

  logits, state = run(variables)
  sown = state[TAPS_COLLECTION]
  return logits, {name: sown[name] for name in requested}
