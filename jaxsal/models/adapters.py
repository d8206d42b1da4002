"""Adapters from module systems to the ``apply_fn(params, x) -> logits`` contract.

Each adapter returns ``(apply_fn, params)``: ``params`` is a pytree that can be
transformed (randomised, stacked, sharded) and ``apply_fn`` is a pure function
that works under ``jit``, ``vmap`` and ``grad``. Every ``apply_fn`` checks that
``x`` is a float NHWC batch ``[B, H, W, C]`` and that the model returned logits
``[B, num_classes]``; both checks use static shapes, so they also run (once,
at trace time) under ``jit``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
from flax import nnx

from jaxsal._checks import check_images
from jaxsal.models._taps import TappedApplyFn, apply_with_taps, strip_tap_collections

ApplyFn = Callable[[Any, jax.Array], jax.Array]


def _check_logits(logits: Any, x: jax.Array, source: str) -> None:
  shape = tuple(getattr(logits, "shape", ()))
  if len(shape) != 2 or shape[0] != x.shape[0]:
    raise ValueError(
      f"{source} must return logits of shape [B, num_classes] = [{x.shape[0]}, num_classes] "
      f"for x of shape {tuple(x.shape)}; got shape {shape}. Classifiers must output "
      "one row of logits per image (no softmax needed, no extra axes)."
    )


def _checked(fn: ApplyFn, source: str) -> ApplyFn:
  """Wraps ``fn(params, x)`` with the input and output checks of the contract."""

  def apply_fn(params: Any, x: jax.Array) -> jax.Array:
    check_images(x, "x")
    logits = fn(params, x)
    _check_logits(logits, x, source)
    return logits

  return apply_fn


def _accepts_train(fn: Callable[..., Any]) -> bool:
  try:
    parameters = inspect.signature(fn).parameters
  except (TypeError, ValueError):
    return False
  return "train" in parameters


def from_linen(
  module: Any,
  variables: Mapping[str, Any],
  *,
  method: str | Callable[..., Any] | None = None,
  **apply_kwargs: Any,
) -> tuple[ApplyFn, dict[str, Any]]:
  """Brings a Flax Linen module to the ``apply_fn(params, x)`` contract, in eval mode.

  Args:
    module: an unbound ``flax.linen.Module``.
    variables: its variables, e.g. ``{'params': ..., 'batch_stats': ...}``;
      these become ``params``. ``'taps'`` and ``'perturbations'`` are dropped.
    method: the method to call (name or function), ``__call__`` if None.
    **apply_kwargs: extra keyword arguments for the method. ``train=False`` is
      passed when the method has a ``train`` argument and none is given here.

  Returns:
    ``(apply_fn, params)``: ``apply_fn(params, x)`` runs
    ``module.apply(params, x, ...)`` on NHWC ``x`` and returns logits
    ``[B, num_classes]``; ``params`` is the full variables dict. When the
    module declares taps (a ``TAPS`` class attribute naming the
    :func:`jaxsal.models.tap` calls in its ``__call__``) and ``method`` is
    None, ``apply_fn`` is a :class:`TappedApplyFn`, whose ``with_taps``
    gives CAM methods the feature maps.

  Raises:
    TypeError: ``module`` is not a Linen module.
    ValueError (from ``apply_fn``): ``x`` is not NHWC float (e.g. NCHW), or
      the output is not ``[B, num_classes]``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxsal.models import SmallCNN, init_model
    >>> model = SmallCNN(num_classes=10)
    >>> apply_fn, params = from_linen(
    ...     model, init_model(model, jax.random.key(0), (1, 32, 32, 1)))
    >>> apply_fn(params, jnp.zeros((2, 32, 32, 1))).shape
    (2, 10)
  """
  if not isinstance(module, nn.Module):
    raise TypeError(f"module must be a flax.linen.Module; got {type(module).__name__}")
  target = (
    type(module).__call__
    if method is None
    else (getattr(type(module), method) if isinstance(method, str) else method)
  )
  kwargs = dict(apply_kwargs)
  if "train" not in kwargs and _accepts_train(target):
    kwargs["train"] = False
  if method is not None:
    kwargs["method"] = method
  params = strip_tap_collections(variables)

  def apply_fn(params: Any, x: jax.Array) -> jax.Array:
    return module.apply(params, x, **kwargs)

  checked = _checked(apply_fn, f"{type(module).__name__} (Linen)")
  taps = getattr(module, "TAPS", None)
  if method is None and taps and set(kwargs) <= {"train"}:
    train = bool(kwargs.get("train", False))

    def with_taps(params: Any, x: jax.Array, perturbations: Mapping[str, jax.Array]):
      return apply_with_taps(module, params, x, train=train, perturbations=perturbations or None)

    return TappedApplyFn(checked, with_taps, taps), params
  return checked, params


def from_nnx(model: Any) -> tuple[ApplyFn, Any]:
  """Brings a Flax NNX module to the ``apply_fn(params, x)`` contract.

  The model is split with ``nnx.split`` into a static graph and a state
  (``params``); ``apply_fn`` merges them back with ``nnx.merge`` and calls
  the model, so changes the call makes to the state are discarded. Put the
  model in eval mode first with ``model.eval()`` (BatchNorm uses its running
  averages, Dropout is off).

  Args:
    model: an ``nnx.Module`` in eval mode, called as ``model(x)`` with NHWC ``x``.

  Returns:
    ``(apply_fn, state)``: ``apply_fn(state, x)`` returns logits
    ``[B, num_classes]``; ``state`` is the ``nnx.State`` of all its variables.

  Raises:
    TypeError: ``model`` is not an ``nnx.Module``.
    ValueError: a submodule is in training mode (``use_running_average`` or
      ``deterministic`` is False): call ``model.eval()``.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> class Net(nnx.Module):
    ...   def __init__(self, rngs):
    ...     self.conv = nnx.Conv(1, 4, (3, 3), rngs=rngs)
    ...     self.fc = nnx.Linear(4, 3, rngs=rngs)
    ...   def __call__(self, x):
    ...     return self.fc(self.conv(x).mean(axis=(1, 2)))
    >>> net = Net(nnx.Rngs(0))
    >>> net.eval()
    >>> apply_fn, state = from_nnx(net)
    >>> apply_fn(state, jnp.zeros((2, 8, 8, 1))).shape
    (2, 3)
  """
  if not isinstance(model, nnx.Module):
    raise TypeError(f"model must be a flax.nnx.Module; got {type(model).__name__}")
  for path, sub in nnx.iter_modules(model):
    for attribute in ("use_running_average", "deterministic"):
      if getattr(sub, attribute, None) is False:
        where = "/".join(map(str, path)) or type(model).__name__
        raise ValueError(
          f"from_nnx needs the model in eval mode, but {where} "
          f"({type(sub).__name__}) has {attribute}=False; call model.eval() first."
        )
  graphdef, state = nnx.split(model)

  def apply_fn(state: Any, x: jax.Array) -> jax.Array:
    return nnx.merge(graphdef, state)(x)

  return _checked(apply_fn, f"{type(model).__name__} (NNX)"), state


def from_equinox(
  model: Any,
  *,
  batched: bool = False,
  channels_first: bool = False,
) -> tuple[ApplyFn, Any]:
  """Brings an Equinox module to the ``apply_fn(params, x)`` contract.

  The model is split with ``eqx.partition(model, eqx.is_array)`` into its
  arrays (``params``) and the static rest; ``apply_fn`` recombines them with
  ``eqx.combine``. Stateful models (``eqx.nn.State``, e.g. BatchNorm) are not
  supported; switch Dropout off first with ``eqx.nn.inference_mode(model)``.

  Args:
    model: an ``eqx.Module`` mapping images to logits.
    batched: whether the model takes a batch. Equinox modules are usually
      per-example (``[H, W, C] -> [num_classes]``), so by default ``apply_fn``
      vmaps the model over the batch axis.
    channels_first: transpose the NHWC input to NCHW (``CHW`` per example)
      before calling the model, for models built from ``eqx.nn.Conv2d``, which
      is channels-first. ``apply_fn`` itself still takes NHWC.

  Returns:
    ``(apply_fn, params)``: ``apply_fn(params, x)`` returns logits
    ``[B, num_classes]`` for NHWC ``x``; ``params`` is the model with every
    non-array leaf replaced by None.

  Raises:
    ImportError: equinox is not installed.
    TypeError: ``model`` is not an ``eqx.Module``.

  Example:
    >>> import equinox as eqx, jax, jax.numpy as jnp
    >>> k1, k2 = jax.random.split(jax.random.key(0))
    >>> conv = eqx.nn.Conv2d(1, 4, 3, key=k1)
    >>> fc = eqx.nn.Linear(4, 3, key=k2)
    >>> net = eqx.nn.Sequential([conv, eqx.nn.Lambda(lambda h: h.mean(axis=(1, 2))), fc])
    >>> apply_fn, params = from_equinox(net, channels_first=True)
    >>> apply_fn(params, jnp.zeros((2, 8, 8, 1))).shape
    (2, 3)
  """
  try:
    import equinox as eqx
  except ImportError as e:
    raise ImportError(
      "from_equinox needs equinox, an optional dependency of jaxsal: "
      "pip install equinox (or pip install 'jaxsal[test]')."
    ) from e
  if not isinstance(model, eqx.Module):
    raise TypeError(f"model must be an equinox.Module; got {type(model).__name__}")
  params, static = eqx.partition(model, eqx.is_array)

  def apply_fn(params: Any, x: jax.Array) -> jax.Array:
    net = eqx.combine(params, static)
    if channels_first:
      x = x.transpose(0, 3, 1, 2)
    return net(x) if batched else jax.vmap(net)(x)

  return _checked(apply_fn, f"{type(model).__name__} (Equinox)"), params


def from_function(
  fn: Callable[..., jax.Array],
  params: Any = None,
) -> tuple[ApplyFn, Any]:
  """Brings a plain function to the ``apply_fn(params, x)`` contract.

  Args:
    fn: ``fn(params, x) -> logits`` when ``params`` is given, else
      ``fn(x) -> logits``; ``x`` is NHWC ``[B, H, W, C]``.
    params: the parameter pytree ``fn`` takes, or None for a parameter-free
      ``fn(x)``.

  Returns:
    ``(apply_fn, params)``: ``apply_fn(params, x)`` returns logits
    ``[B, num_classes]``; ``params`` is the given pytree, or ``{}`` when None
    (then ``apply_fn`` ignores its ``params``).

  Raises:
    TypeError: ``fn`` is not callable.

  Example:
    >>> import jax.numpy as jnp
    >>> w = jnp.ones((3, 2))
    >>> apply_fn, params = from_function(lambda w, x: x.mean(axis=(1, 2)) @ w, w)
    >>> apply_fn(params, jnp.ones((4, 8, 8, 3))).shape
    (4, 2)
  """
  if not callable(fn):
    raise TypeError(f"fn must be callable; got {type(fn).__name__}")
  name = getattr(fn, "__name__", type(fn).__name__)
  if params is None:

    def apply_fn(params: Any, x: jax.Array) -> jax.Array:
      del params
      return fn(x)

    return _checked(apply_fn, f"function {name}"), {}
  return _checked(fn, f"function {name}"), params
