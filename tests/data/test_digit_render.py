"""Tests for the cluttered-digit renderer."""

import numpy as np
import pytest

from jaxsal.data import _render
from jaxsal.data.cluttered_digits import source_digits


def _numpy_box(mask):
  ys, xs = np.nonzero(mask)
  return [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]


def _render_batch(seed, b=32, canvas_size=32, k=4):
  images, _ = source_digits()
  rng = np.random.default_rng(seed)
  pick = np.random.default_rng(1000 + seed).integers(0, len(images), size=(b, 1 + k))
  num = np.random.default_rng(2000 + seed).integers(2, k + 1, size=b)
  return _render.render_cluttered_digits(
    rng, images[pick[:, 0]], images[pick[:, 1:]], num_clutter=num, canvas_size=canvas_size
  )


@pytest.mark.parametrize("canvas_size", [16, 32, 64, 80])
def test_shapes_dtypes_and_tight_boxes(canvas_size):
  out = _render_batch(0, canvas_size=canvas_size)
  s = canvas_size
  assert out.image.shape == (32, s, s, 1) and out.image.dtype == np.uint8
  assert out.mask.shape == (32, s, s) and out.mask.dtype == np.uint8
  assert out.box.shape == (32, 4) and out.box.dtype == np.int32
  assert set(np.unique(out.mask)) <= {0, 1}
  for mask, box in zip(out.mask, out.box):
    assert box.tolist() == _numpy_box(mask)
    y0, x0, y1, x1 = box
    assert 0 <= y0 < y1 <= s and 0 <= x0 < x1 <= s
    # The digit's side is at most the upper end of its size range.
    assert max(y1 - y0, x1 - x0) <= _render.digit_size_range(s)[1]


def test_digit_size_range_scales_with_canvas():
  assert _render.digit_size_range(64) == (20, 36)
  assert _render.digit_size_range(32) == (10, 18)
  assert _render.digit_size_range(8) == (8, 8)


def test_deterministic_for_a_generator_state():
  a, b, c = _render_batch(3), _render_batch(3), _render_batch(4)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert not np.array_equal(a.image, c.image)


def test_digit_dominates_the_clutter():
  out = _render_batch(5, b=64, canvas_size=64)
  img = out.image[..., 0].astype(np.float32)
  on = np.array([im[m == 1].mean() for im, m in zip(img, out.mask)])
  off = np.array([im[m == 0].mean() for im, m in zip(img, out.mask)])
  assert (on > 2.5 * off).all(), (on.min(), off.max())
  # Clutter stays off the digit: outside its box, nothing is as bright as the
  # digit's typical stroke.
  for im, m, (y0, x0, y1, x1) in zip(img, out.mask, out.box):
    outside = im.copy()
    outside[y0:y1, x0:x1] = 0
    assert outside.max() < np.median(im[m == 1])


def test_without_clutter_only_background_surrounds_the_digit():
  images, _ = source_digits()
  out = _render.render_cluttered_digits(
    np.random.default_rng(0), images[:16], np.zeros((16, 0, 8, 8)), canvas_size=48
  )
  for im, (y0, x0, y1, x1) in zip(out.image[..., 0], out.box):
    outside = im.astype(np.float32)
    outside[max(y0 - 2, 0) : y1 + 2, max(x0 - 2, 0) : x1 + 2] = 0
    assert outside.max() <= 50 + 6 * np.sqrt(6) + 1  # background amplitude + noise bound


def test_single_example_matches_batch_of_one():
  images, _ = source_digits()
  one = _render.render_cluttered_digit(
    np.random.default_rng(7), images[0], images[1:4], canvas_size=32
  )
  batch = _render.render_cluttered_digits(
    np.random.default_rng(7), images[:1], images[None, 1:4], canvas_size=32
  )
  for x, y in zip(one, batch):
    np.testing.assert_array_equal(x, y[0])


def test_cubic_matrix_interpolates():
  for n_in, n_out in [(8, 8), (8, 27), (5, 64), (4, 13)]:
    m = _render._cubic_matrix(n_in, n_out)
    np.testing.assert_allclose(m.sum(1), 1.0, atol=1e-6)  # Constants are kept.
  np.testing.assert_allclose(_render._cubic_matrix(8, 8), np.eye(8), atol=1e-7)
  # Keys' cubic reproduces straight lines away from the clamped borders.
  m = _render._cubic_matrix(8, 32)
  ramp = np.arange(8, dtype=np.float32)
  centres = (np.arange(32) + 0.5) * 8 / 32 - 0.5
  inner = (centres >= 1) & (centres <= 6)
  np.testing.assert_allclose((m @ ramp)[inner], centres[inner], atol=1e-5)


def test_tight_boxes():
  m = np.zeros((2, 6, 7), np.uint8)
  m[0, 1:3, 2:5] = 1
  m[1, 5, 0] = 1
  assert _render.tight_boxes(m).tolist() == [[1, 2, 3, 5], [5, 0, 6, 1]]
  with pytest.raises(ValueError, match="no nonzero"):
    _render.tight_boxes(np.zeros((4, 4)))


def test_bad_inputs():
  images, _ = source_digits()
  rng = np.random.default_rng(0)
  with pytest.raises(ValueError, match=r"digits must have shape \[B, 8, 8\]"):
    _render.render_cluttered_digits(rng, images[:2, :4], images[None, :2].repeat(2, 0))
  with pytest.raises(ValueError, match="clutter_digits must have shape"):
    _render.render_cluttered_digits(rng, images[:2], images[:2])
  with pytest.raises(ValueError, match="num_clutter"):
    _render.render_cluttered_digits(
      rng, images[:2], images[None, :2].repeat(2, 0), num_clutter=np.array([3, 1])
    )
  with pytest.raises(ValueError, match="blank"):
    _render.render_cluttered_digits(rng, np.zeros((1, 8, 8)), images[None, :2])
  with pytest.raises(ValueError, match="canvas_size"):
    _render.render_cluttered_digit(rng, images[0], images[1:3], canvas_size=4)
