"""A drop-in ``lax.conv_general_dilated`` that is fast on feature maps smaller than the kernel.

XLA:CPU (jax 0.10) runs a convolution whose input is smaller than its kernel
in a spatial dimension (a 3x3 kernel on a 2x2 or 1x1 map, as in ResNet's last
stage at 64x64 input) far off its usual speed: a 3x3, 512-channel convolution
on a 2x2 map, batch 16, took 189 ms, against 9 ms for the same convolution on
a 4x4 map with four times the FLOPs (``benchmarks/README.md``). On such maps
this function computes the convolution as what it is, a matrix product of
the padded input's ``kh * kw`` shifted windows with the reshaped kernel
("im2col"); every other convolution goes to ``lax.conv_general_dilated``
unchanged. Both give the same function and the same gradients, up to the
order of floating-point summation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

_NHWC = ("NHWC", "HWIO", "NHWC")


def _uses_windows(
  lhs_shape,
  rhs_shape,
  padding,
  lhs_dilation,
  rhs_dilation,
  dimension_numbers,
  feature_group_count,
  batch_group_count,
) -> bool:
  """Whether this call is a plain 2-D NHWC/HWIO convolution on a map smaller than its kernel."""
  if len(lhs_shape) != 4 or len(rhs_shape) != 4 or isinstance(padding, str):
    return False
  if feature_group_count != 1 or batch_group_count != 1:
    return False
  if any(d != 1 for d in (lhs_dilation or (1, 1))) or any(d != 1 for d in (rhs_dilation or (1, 1))):
    return False
  expected = lax.conv_dimension_numbers(lhs_shape, rhs_shape, _NHWC)
  if dimension_numbers is None:
    return False
  if not isinstance(dimension_numbers, lax.ConvDimensionNumbers):
    dimension_numbers = lax.conv_dimension_numbers(lhs_shape, rhs_shape, dimension_numbers)
  if dimension_numbers != expected:
    return False
  return lhs_shape[1] < rhs_shape[0] or lhs_shape[2] < rhs_shape[1]


def conv_general_dilated(
  lhs: jax.Array,
  rhs: jax.Array,
  window_strides: Sequence[int],
  padding: Any,
  lhs_dilation: Sequence[int] | None = None,
  rhs_dilation: Sequence[int] | None = None,
  dimension_numbers: Any = None,
  feature_group_count: int = 1,
  batch_group_count: int = 1,
  precision: Any = None,
  preferred_element_type: Any = None,
) -> jax.Array:
  """``lax.conv_general_dilated``, by im2col where the map is smaller than the kernel.

  Takes the arguments of ``lax.conv_general_dilated`` (Flax's ``nn.Conv``
  accepts it as ``conv_general_dilated=``). A 2-D convolution with NHWC input,
  HWIO kernel, explicit padding, no dilation and no groups whose input height
  or width is smaller than the kernel's is computed as a matrix product of
  the padded input's shifted windows; anything else is passed through.

  Example:
    >>> import jax.numpy as jnp
    >>> from jax import lax
    >>> x, k = jnp.ones((1, 2, 2, 4)), jnp.ones((3, 3, 4, 5))
    >>> dn = lax.conv_dimension_numbers(x.shape, k.shape, ('NHWC', 'HWIO', 'NHWC'))
    >>> conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=dn)[0, :, :, 0]
    Array([[16., 16.],
           [16., 16.]], dtype=float32)
  """
  if not _uses_windows(
    lhs.shape,
    rhs.shape,
    padding,
    lhs_dilation,
    rhs_dilation,
    dimension_numbers,
    feature_group_count,
    batch_group_count,
  ):
    return lax.conv_general_dilated(
      lhs,
      rhs,
      window_strides,
      padding,
      lhs_dilation=lhs_dilation,
      rhs_dilation=rhs_dilation,
      dimension_numbers=dimension_numbers,
      feature_group_count=feature_group_count,
      batch_group_count=batch_group_count,
      precision=precision,
      preferred_element_type=preferred_element_type,
    )
  kh, kw, cin, cout = rhs.shape
  sh, sw = window_strides
  (pt, pb), (pl, pr) = padding
  x = jnp.pad(lhs, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  out_h = (x.shape[1] - kh) // sh + 1
  out_w = (x.shape[2] - kw) // sw + 1
  windows = [
    x[:, i : i + sh * (out_h - 1) + 1 : sh, j : j + sw * (out_w - 1) + 1 : sw, :]
    for i in range(kh)
    for j in range(kw)
  ]
  cols = jnp.concatenate(windows, axis=-1)  # [B, out_h, out_w, kh * kw * cin], (i, j, c) order
  return jnp.einsum(
    "bhwk,ko->bhwo",
    cols,
    rhs.reshape(kh * kw * cin, cout),
    precision=precision,
    preferred_element_type=preferred_element_type,
  )
