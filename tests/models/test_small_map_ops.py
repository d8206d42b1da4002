"""The im2col convolution equals the lax convolution it replaces, in value and gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxsal.models._conv import _uses_windows, conv_general_dilated

DN = ("NHWC", "HWIO", "NHWC")


def _both(x, k, strides, padding):
  dn = lax.conv_dimension_numbers(x.shape, k.shape, DN)
  ours = lambda x, k: conv_general_dilated(x, k, strides, padding, dimension_numbers=dn)
  ref = lambda x, k: lax.conv_general_dilated(
    x, k, strides, padding, dimension_numbers=dn, precision=lax.Precision.HIGHEST
  )
  return ours, ref


@pytest.mark.parametrize(
  "hw,k,stride,pad",
  [
    (2, 3, 1, 1),  # ResNet layer4 at 64x64 input: the slow case on XLA:CPU
    (2, 3, 2, 1),
    (1, 3, 1, 1),  # the whole map is one pixel: only the kernel's centre sees it
    (3, 5, 1, 2),
    (2, 7, 2, 3),
    (3, 4, 1, 1),  # asymmetric: 3 + 2 - 4 + 1 = 2 outputs
  ],
)
def test_small_map_convolution_and_its_gradients_equal_lax(hw, k, stride, pad):
  kx, kk, kc = jax.random.split(jax.random.key(hw * 100 + k * 10 + stride), 3)
  x = jax.random.normal(kx, (3, hw, hw + 1, 5))
  kern = jax.random.normal(kk, (k, k, 5, 4))
  padding = ((pad, pad), (pad, pad))
  assert _uses_windows(
    x.shape,
    kern.shape,
    padding,
    None,
    None,
    lax.conv_dimension_numbers(x.shape, kern.shape, DN),
    1,
    1,
  )
  ours, ref = _both(x, kern, (stride, stride), padding)
  y, y_ref = ours(x, kern), ref(x, kern)
  assert y.shape == y_ref.shape
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
  c = jax.random.normal(kc, y.shape)
  g = jax.grad(lambda x, k: jnp.sum(ours(x, k) * c), argnums=(0, 1))(x, kern)
  g_ref = jax.grad(lambda x, k: jnp.sum(ref(x, k) * c), argnums=(0, 1))(x, kern)
  for a, b in zip(g, g_ref):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_maps_at_least_as_large_as_the_kernel_and_other_layouts_pass_through():
  dn = lax.conv_dimension_numbers((1, 4, 4, 2), (3, 3, 2, 2), DN)
  assert not _uses_windows((1, 4, 4, 2), (3, 3, 2, 2), ((1, 1), (1, 1)), None, None, dn, 1, 1)
  assert not _uses_windows((1, 2, 2, 2), (3, 3, 2, 2), "SAME", None, None, dn, 1, 1)
  assert not _uses_windows((1, 2, 2, 2), (3, 3, 2, 2), ((1, 1), (1, 1)), None, (2, 2), dn, 1, 1)
  assert not _uses_windows((1, 2, 2, 2), (3, 3, 1, 2), ((1, 1), (1, 1)), None, None, dn, 2, 1)
  nchw = lax.conv_dimension_numbers((1, 2, 2, 2), (2, 2, 3, 3), ("NCHW", "OIHW", "NCHW"))
  assert not _uses_windows((1, 2, 2, 2), (2, 2, 3, 3), ((1, 1), (1, 1)), None, None, nchw, 1, 1)
