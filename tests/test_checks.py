import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsal._checks import check_choice, check_images, check_positive_int


def test_accepts_float_nhwc_also_under_jit():
  check_images(np.zeros((2, 8, 8, 3), np.float32))
  out = jax.jit(lambda x: (check_images(x, "x", channels=3), x)[1] * 2)(jnp.ones((1, 8, 8, 3)))
  assert float(out.sum()) == 2 * 8 * 8 * 3


@pytest.mark.parametrize(
  "shape,kwargs,match",
  [
    ((2, 3, 32, 32), {}, r"looks like NCHW \(shape \(2, 3, 32, 32\).*NHWC"),
    ((2, 3, 32, 32), {"channels": 3}, r"looks like NCHW.*jnp.transpose\(x, \(0, 2, 3, 1\)\)"),
    ((32, 32, 3), {}, r"rank 3 with shape \(32, 32, 3\).*x\[None\]"),
    ((2, 32, 32, 1), {"channels": 3}, r"must have 3 channels.*\(2, 32, 32, 1\)"),
  ],
)
def test_wrong_rank_or_layout(shape, kwargs, match):
  with pytest.raises(ValueError, match=match):
    check_images(np.zeros(shape, np.float32), **kwargs)


def test_integer_images_are_refused_with_the_fix():
  with pytest.raises(TypeError, match=r"images must be a floating-point.*uint8.*/ 255"):
    check_images(np.zeros((1, 4, 4, 1), np.uint8), "images")


def test_choice_and_positive_int():
  with pytest.raises(ValueError, match="unknown method 'x'; known: a, b"):
    check_choice("x", "method", ["b", "a"])
  for bad in (0, -1, 2.5, True):
    with pytest.raises(ValueError, match="steps must be a positive integer"):
      check_positive_int(bad, "steps")
  check_positive_int(3, "steps")
