"""Max pooling as a maximum over shifted windows, whose gradient is cheap on XLA:CPU.

``flax.linen.max_pool`` is ``lax.reduce_window``, and its gradient is XLA's
``select_and_scatter``, which XLA:CPU (jax 0.10) runs slowly: for ResNet's
3x3/2 stem pool on a batch of 16 112x112x64 maps, 15 ms forward and 267 ms
backward (``benchmarks/README.md``), a fifth of a ResNet-18 input gradient at
224x224. Here the pool is the elementwise maximum of the ``kh * kw`` strided
windows of the padded input, and each output takes its value (and sends its
gradient) to the first window position that attains the maximum, in
row-major order within the window; that is what ``select_and_scatter`` and
PyTorch's ``max_pool2d`` do. The backward pass is then ``kh * kw`` masked,
strided pads: elementwise work.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax


def max_pool(x: jax.Array, window: Sequence[int], strides: Sequence[int],
             padding: Sequence[tuple[int, int]]) -> jax.Array:
  """Max pooling of NHWC ``x``, the same values and gradients as ``flax.linen.max_pool``.

  Args:
    x: ``[B, H, W, C]`` floats.
    window: ``(kh, kw)``.
    strides: ``(sh, sw)``.
    padding: ``((top, bottom), (left, right))``; padded positions are
      ``-inf`` and never chosen (every window must hold an input position).

  Returns:
    ``[B, out_h, out_w, C]`` with ``out_h = (H + top + bottom - kh) // sh + 1``
    (and likewise ``out_w``).

  Example:
    >>> import jax.numpy as jnp
    >>> x = jnp.arange(16.).reshape(1, 4, 4, 1)
    >>> max_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1)))[0, :, :, 0]
    Array([[ 5.,  7.],
           [13., 15.]], dtype=float32)
  """
  kh, kw = window
  sh, sw = strides
  (pt, pb), (pl, pr) = padding
  xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=-jnp.inf)
  out_h = (xp.shape[1] - kh) // sh + 1
  out_w = (xp.shape[2] - kw) // sw + 1
  windows = [lax.slice(xp, (0, i, j, 0), (xp.shape[0], i + sh * (out_h - 1) + 1,
                                          j + sw * (out_w - 1) + 1, xp.shape[3]), (1, sh, sw, 1))
             for i in range(kh) for j in range(kw)]
  top = lax.stop_gradient(windows[0])
  for w in windows[1:]:
    top = jnp.maximum(top, lax.stop_gradient(w))
  out = jnp.zeros_like(top)
  taken = jnp.zeros(top.shape, bool)
  for w in windows:
    first = jnp.logical_and(lax.stop_gradient(w) == top, jnp.logical_not(taken))
    out = jnp.where(first, w, out)
    taken = jnp.logical_or(taken, first)
  return out
