"""Each masking-objective term against a hand computation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from jaxsal import objectives as O

# Three classes. Image 0: logits favour class 0 (its label); image 1 favours
# class 2 while its label is 1.
CLEAN = jnp.array([[2.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
Y = jnp.array([0, 1])


def test_mask_in_loss_is_the_cross_entropy():
  loss, aux = O.mask_in_loss(CLEAN, Y)
  ce0 = -2.0 + np.log(np.exp(2.0) + 2.0)
  ce1 = np.log(2.0 + np.e)
  np.testing.assert_allclose(loss, (ce0 + ce1) / 2, rtol=1e-6)
  assert aux["correct_on_masked_in"] == 0.5


def test_mask_out_loss_is_minus_the_gated_entropy():
  out = jnp.array([[0.0, 0.0, 0.0], [5.0, 0.0, 0.0]])  # image 0 masked out: uniform
  loss, aux = O.mask_out_loss(out, CLEAN, Y)
  # Only image 0 is right on the clean input; its entropy is log 3.
  np.testing.assert_allclose(loss, -np.log(3.0) / 2, rtol=1e-6)
  assert aux["correct_on_clean"] == 0.5


def test_area_terms_switch_on_only_when_their_side_succeeds():
  mask = jnp.stack([jnp.full((4, 4), 0.25), jnp.full((4, 4), 0.5)])
  # Masked-in: image 0 right, image 1 wrong -> -w * (relu(1 - .25) + relu(0 - .5)) / 2.
  loss, aux = O.mask_in_area(mask, CLEAN, Y, weight=2.0)
  np.testing.assert_allclose(loss, -2.0 * 0.75 / 2)
  np.testing.assert_allclose(aux["mask_area"], 0.375)
  # Masked-out: image 0 right on clean and wrong when masked out -> confused.
  out = jnp.array([[0.0, 3.0, 0.0], [0.0, 3.0, 0.0]])
  loss, aux = O.mask_out_area(mask[..., None], out, CLEAN, Y, weight=10.0)
  np.testing.assert_allclose(loss, -10.0 * 0.75 / 2)
  assert aux["confused_out"] == 0.5


def test_total_variation_by_hand():
  m = np.zeros((1, 3, 3), np.float32)
  m[0, 1, 1] = 1.0  # a centre pixel: 4 unit differences, no edges
  np.testing.assert_allclose(O.total_variation(jnp.asarray(m), weight=1.0)[0], 4 / 2)
  m = np.zeros((2, 3, 3), np.float32)
  m[0, 0, 0] = 1.0  # a corner: 2 differences, counted on 2 edges
  tv, _ = O.total_variation(jnp.asarray(m), weight=0.5)
  np.testing.assert_allclose(tv, 0.5 * (2 + 0.3 * 2) / (2 * 2))


def test_the_objective_sums_the_terms_and_tv_twice_as_the_official_code():
  rng = np.random.default_rng(0)
  mask = jnp.asarray(rng.random((2, 6, 6)), jnp.float32)
  logits_in = jnp.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
  logits_out = jnp.array([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
  kw = dict(lam_in=1.0, lam_out=15.0, lam_tv=1e-2)
  tv = O.total_variation(mask, weight=1e-2)[0]
  l_in = O.mask_in_loss(logits_in, Y)[0] + O.mask_in_area(mask, logits_in, Y, weight=1.0)[0]
  l_out = (
    O.mask_out_loss(logits_out, CLEAN, Y)[0]
    + O.mask_out_area(mask, logits_out, CLEAN, Y, weight=15.0)[0]
  )
  both, aux = O.masking_objective(mask, CLEAN, logits_in, logits_out, Y, **kw)
  np.testing.assert_allclose(both, l_in + l_out + 2 * tv, rtol=1e-6)
  once, _ = O.masking_objective(mask, CLEAN, logits_in, logits_out, Y, tv_counted_twice=False, **kw)
  np.testing.assert_allclose(once, l_in + l_out + tv, rtol=1e-6)
  np.testing.assert_allclose(
    O.masking_objective(mask, CLEAN, logits_in, logits_out, Y, objective="in", **kw)[0],
    l_in + tv,
    rtol=1e-6,
  )
  np.testing.assert_allclose(
    O.masking_objective(mask, CLEAN, logits_in, logits_out, Y, objective="out", **kw)[0],
    l_out + tv,
    rtol=1e-6,
  )
  assert set(aux) >= {"loss_in", "loss_out", "area_in", "area_out", "tv", "mask_area"}
  # Differentiable in the mask, under jit.
  g = jax.jit(jax.grad(lambda m: O.masking_objective(m, CLEAN, logits_in, logits_out, Y, **kw)[0]))(
    mask
  )
  assert g.shape == mask.shape and np.isfinite(np.asarray(g)).all()


def test_masking_and_infills():
  x = jnp.arange(2 * 4 * 4 * 1, dtype=jnp.float32).reshape(2, 4, 4, 1)
  m = jnp.zeros((2, 4, 4)).at[:, :2].set(1.0)
  np.testing.assert_array_equal(O.apply_mask(x, m), x * m[..., None])
  np.testing.assert_array_equal(
    O.apply_mask(x, m, side="out", infill=O.infill_constant(x, 7.0)),
    jnp.where(m[..., None] > 0, 7.0, x),
  )
  # The blur equals scipy's mirrored Gaussian filter truncated at 3 sigma.
  img = np.random.default_rng(1).random((1, 9, 11, 2)).astype(np.float32)
  want = ndimage.gaussian_filter(img, sigma=(0, 1.5, 1.5, 0), mode="reflect", truncate=3.0)
  np.testing.assert_allclose(O.infill_blur(jnp.asarray(img), 1.5), want, rtol=1e-5, atol=1e-6)
  # A kernel wider than the image (sigma 20 on 9x11) still keeps a constant image constant.
  np.testing.assert_allclose(O.infill_blur(jnp.full((1, 9, 11, 1), 3.0)), 3.0, rtol=1e-6)


def test_bad_input_is_named():
  m = jnp.zeros((2, 4, 4))
  with pytest.raises(ValueError, match="unknown objective 'sides'"):
    O.masking_objective(m, CLEAN, CLEAN, CLEAN, Y, objective="sides")
  with pytest.raises(ValueError, match="lam_in must be a number >= 0; got -1"):
    O.masking_objective(m, CLEAN, CLEAN, CLEAN, Y, lam_in=-1)
  with pytest.raises(ValueError, match=r"mask must be \[B, H, W\] or \[B, H, W, 1\]"):
    O.mask_in_area(jnp.zeros((2, 4, 4, 3)), CLEAN, Y, weight=1.0)
