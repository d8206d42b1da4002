"""Grad-CAM and guided Grad-CAM on a named feature-map tap."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxsal._checks import check_choice
from jaxsal.attribution._common import ApplyFn, check_inputs, nested_calls, poison_invalid
from jaxsal.attribution._guided import guided_backprop

UPSAMPLE = ("bilinear", "nearest")


def _tapped(apply_fn: Any, layer: str | None) -> str:
  taps = getattr(apply_fn, "taps", None)
  if taps is None or not callable(getattr(apply_fn, "with_taps", None)):
    raise TypeError(
      "gradcam needs an apply_fn that exposes feature maps (a jaxsal.models.TappedApplyFn); "
      f"got {type(apply_fn).__name__}. jaxsal.models.from_linen returns one for Linen "
      "models that call jaxsal.models.tap and list their taps in TAPS; other models can "
      "wrap their apply_fn with TappedApplyFn(apply_fn, with_taps, taps)."
    )
  if layer is None:
    return taps[-1]
  if layer not in taps:
    raise ValueError(f"unknown layer {layer!r}; available taps: {', '.join(taps)}")
  return layer


def gradcam_coarse(
  apply_fn: ApplyFn,
  params: Any,
  x: jax.Array,
  target: jax.Array,
  *,
  layer: str | None = None,
  relu: bool = True,
) -> jax.Array:
  """Grad-CAM at the tap's own resolution: ``[B, h, w]`` (inputs unchecked)."""
  layer = _tapped(apply_fn, layer)
  _, shapes = jax.eval_shape(lambda p, v: apply_fn.with_taps(p, v, taps=[layer]), params, x)
  feat_shape = shapes[layer]
  if len(feat_shape.shape) != 4:
    raise ValueError(
      f"layer {layer!r} must be a feature map [B, h, w, c]; got shape {tuple(feat_shape.shape)}"
    )

  def score(perturbation):
    logits, feats = apply_fn.with_taps(params, x, taps=[layer], perturbations={layer: perturbation})
    picked = jnp.take_along_axis(logits, target[:, None].astype(jnp.int32), axis=1)
    return jnp.sum(picked), feats[layer]

  # The gradient with respect to a zero perturbation of the feature map is
  # the gradient with respect to the feature map itself, in one pass.
  grads, feats = jax.grad(score, has_aux=True)(jnp.zeros(feat_shape.shape, feat_shape.dtype))
  weights = grads.mean(axis=(1, 2))  # alpha_k: [B, c]
  cam = jnp.einsum("bhwc,bc->bhw", feats, weights)
  return jax.nn.relu(cam) if relu else cam


def _upsample(cam: jax.Array, x: jax.Array, method: str) -> jax.Array:
  b, h, w, c = x.shape
  up = jax.image.resize(cam, (b, h, w), method=method, antialias=False)
  return jnp.broadcast_to(up[..., None], (b, h, w, c)).astype(x.dtype)


def gradcam(
  apply_fn: ApplyFn,
  params: Any,
  x: jax.Array,
  target: jax.Array,
  *,
  key: jax.Array | None = None,
  layer: str | None = None,
  relu: bool = True,
  upsample: str = "bilinear",
) -> jax.Array:
  """Grad-CAM (Selvaraju et al. 2017) on a named layer tap, upsampled to the input.

  ``cam = relu(sum_k alpha_k A_k)`` with ``A`` the tap's feature map
  ``[B, h, w, c]`` and ``alpha_k`` the spatial mean of ``d z_t / d A_k``.
  The map is coarse (the tap's ``h x w``); it is resized to ``H x W``
  (half-pixel centres, as ``torch.nn.functional.interpolate`` with
  ``align_corners=False``) and repeated over the channels, so every channel
  of the result holds the same map.

  Args:
    apply_fn: a :class:`jaxsal.models.TappedApplyFn` (``from_linen`` returns
      one for models with taps).
    params: the model's parameters.
    x: float images ``[B, H, W, C]``.
    target: int ``[B]``.
    key: unused; accepted for a uniform signature.
    layer: the tap's name; the last tap (deepest) if None.
    relu: apply the final ReLU (the paper does; Captum's ``LayerGradCam``
      does not by default).
    upsample: ``'bilinear'`` or ``'nearest'``.

  Returns:
    ``[B, H, W, C]``.

  Raises:
    TypeError: ``apply_fn`` exposes no taps.
    ValueError: an unknown ``layer`` (the message lists the taps), an unknown
      ``upsample``, or bad ``x``/``target``.

  References:
    Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
    Gradient-based Localization", 2017.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxsal.attribution import gradcam
    >>> from jaxsal.models import SmallCNN, from_linen, init_model
    >>> model = SmallCNN(num_classes=3, widths=(4, 4, 4, 4, 4))
    >>> apply_fn, params = from_linen(model, init_model(model, jax.random.key(0), (1, 8, 8, 1)))
    >>> x = jax.random.uniform(jax.random.key(1), (2, 8, 8, 1))
    >>> explain = jax.jit(lambda x, t: gradcam(apply_fn, params, x, t, layer="l1"))  # l1: 2x2
    >>> maps = explain(x, jnp.array([0, 2]))
    >>> maps.shape, bool((maps >= 0).all())
    ((2, 8, 8, 1), True)
  """
  del key
  check_choice(upsample, "upsample", UPSAMPLE)
  x, target = check_inputs(apply_fn, params, x, target)
  cam = gradcam_coarse(apply_fn, params, x, target, layer=layer, relu=relu)
  return poison_invalid(_upsample(cam, x, upsample), apply_fn, params, x, target)


def guided_gradcam(
  apply_fn: ApplyFn,
  params: Any,
  x: jax.Array,
  target: jax.Array,
  *,
  key: jax.Array | None = None,
  layer: str | None = None,
  upsample: str = "bilinear",
) -> jax.Array:
  """Guided Grad-CAM: guided backpropagation times the upsampled Grad-CAM.

  The Grad-CAM map (with its ReLU) is resized to ``H x W`` and multiplies
  every channel of the guided-backpropagation map. Captum's ``GuidedGradCam``
  resizes with ``'nearest'`` by default; the paper uses bilinear.

  Args:
    apply_fn, params, x, target, layer, upsample: as ``gradcam``.
    key: unused.

  Returns:
    ``[B, H, W, C]``.

  Raises:
    As ``gradcam`` and ``guided_backprop``.

  References:
    Selvaraju et al. 2017 (as ``gradcam``).
  """
  del key
  check_choice(upsample, "upsample", UPSAMPLE)
  x, target = check_inputs(apply_fn, params, x, target)
  cam = gradcam_coarse(apply_fn, params, x, target, layer=layer, relu=True)
  with nested_calls():
    guided = guided_backprop(apply_fn, params, x, target)
  return poison_invalid(guided * _upsample(cam, x, upsample), apply_fn, params, x, target)
