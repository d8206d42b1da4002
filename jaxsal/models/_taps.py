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

from collections.abc import Callable, Mapping, Sequence
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
      "listing the names passed to jaxsal.models.tap in its __call__."
    )
  return list(names)


def strip_tap_collections(variables: Mapping[str, Any]) -> dict[str, Any]:
  """Returns ``variables`` without the ``'taps'`` and ``'perturbations'`` collections."""
  return {k: v for k, v in variables.items() if k not in _TAP_COLLECTIONS}


def _check_tap_request(requested: Sequence[str], available: Sequence[str], what: str) -> None:
  for name in requested:
    if name not in available:
      raise ValueError(f"unknown {what} {name!r}; available taps: {', '.join(available)}")


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
            f"got {tuple(given)}"
          )
        full[name] = perturbations[name]
      else:
        full[name] = jnp.zeros(shape.shape, shape.dtype)
    variables = {**variables, PERTURBATIONS_COLLECTION: full}

  logits, state = run(variables)
  sown = state[TAPS_COLLECTION]
  return logits, {name: sown[name] for name in requested}


WithTapsFn = Callable[..., tuple[jax.Array, dict[str, jax.Array]]]


class TappedApplyFn:
  """An ``apply_fn(params, x) -> logits`` that can also expose named feature maps.

  CAM-style methods (``jaxsal.attribution.gradcam``) need a layer's feature
  map and the gradient of the logits with respect to it. A ``TappedApplyFn``
  is an ordinary ``apply_fn`` (call it as ``apply_fn(params, x)``) with one
  more entry point, ``with_taps``.

  ``from_linen`` returns one for any Linen module that calls :func:`tap` and
  lists its taps in ``TAPS``. For other models (NNX, Equinox, plain
  functions), build one from a function that returns the feature maps and
  adds perturbations to them::

    def with_taps(params, x, perturbations):
      h = jax.nn.relu(conv(params, x))
      h = h + perturbations.get('feat', 0.0)   # after recording h
      return head(params, h), {'feat': h_before_perturbation}

    apply_fn = TappedApplyFn(plain_apply_fn, with_taps, taps=('feat',))

  Attributes:
    taps: the tap names, in network order.

  Args:
    apply_fn: ``apply_fn(params, x) -> logits``.
    with_taps: ``with_taps(params, x, perturbations) -> (logits, features)``:
      ``perturbations`` maps some tap names to arrays of the tap's shape that
      must be added to those feature maps; ``features`` maps every tap name
      to its feature map ``[B, h, w, c]`` before the perturbation.
    taps: the names ``with_taps`` returns.
  """

  def __init__(
    self,
    apply_fn: Callable[[Any, jax.Array], jax.Array],
    with_taps: WithTapsFn,
    taps: Sequence[str],
  ):
    if not callable(apply_fn) or not callable(with_taps):
      raise TypeError("apply_fn and with_taps must be callable")
    if not taps:
      raise ValueError("taps must name at least one feature map")
    self._apply_fn = apply_fn
    self._with_taps = with_taps
    self.taps = tuple(taps)
    self.__name__ = getattr(apply_fn, "__name__", "apply_fn")
    self.__doc__ = getattr(apply_fn, "__doc__", None)

  def __call__(self, params: Any, x: jax.Array) -> jax.Array:
    return self._apply_fn(params, x)

  def with_taps(
    self,
    params: Any,
    x: jax.Array,
    *,
    taps: Sequence[str] | None = None,
    perturbations: Mapping[str, jax.Array] | None = None,
  ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Returns ``(logits, {name: feature map})`` for the requested ``taps``.

    Args:
      params: the model's parameters.
      x: images ``[B, H, W, C]``.
      taps: names to return; all if None.
      perturbations: ``{name: array}`` added to those feature maps (zeros give
        the gradient with respect to the feature map).

    Raises:
      ValueError: an unknown tap name; the message lists the available taps.
    """
    requested = list(self.taps) if taps is None else list(taps)
    _check_tap_request(requested, self.taps, "tap")
    perturbations = dict(perturbations or {})
    _check_tap_request(list(perturbations), self.taps, "perturbation")
    logits, features = self._with_taps(params, x, perturbations)
    missing = [n for n in requested if n not in features]
    if missing:
      raise ValueError(
        f"with_taps returned no feature map for {missing}; it returned {sorted(features)}"
      )
    return logits, {name: features[name] for name in requested}

  def __repr__(self) -> str:
    return f"TappedApplyFn({self.__name__}, taps={self.taps})"
