"""The masker on a small CNN's taps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsal import models


@pytest.fixture(scope="module")
def tapped():
  model = models.SmallCNN(num_classes=10, widths=(4, 4, 8, 8, 8))
  apply_fn, params = models.from_linen(
    model, models.init_model(model, jax.random.key(0), (1, 32, 32, 1))
  )
  x = jax.random.uniform(jax.random.key(1), (2, 32, 32, 1))
  return apply_fn, params, x


def _features(apply_fn, params, x):
  return apply_fn.with_taps(params, x, taps=["l1", "l3", "l4"])[1]


def test_mask_is_a_quarter_resolution_sigmoid_repeated_to_the_input(tapped):
  apply_fn, params, x = tapped
  feats = _features(apply_fn, params, x)
  masker = models.Masker(layers=("l3", "l4"), hidden=8)
  v = masker.init(jax.random.key(2), feats, (32, 32))
  mask, logits = masker.apply(v, feats, (32, 32), return_logits=True)
  assert mask.shape == (2, 32, 32, 1) and logits.shape == (2, 8, 8, 1)
  np.testing.assert_allclose(mask[:, ::4, ::4], jax.nn.sigmoid(logits), rtol=1e-6)
  blocks = np.asarray(mask).reshape(2, 8, 4, 8, 4)
  assert (blocks == blocks[:, :, :1, :, :1]).all()  # nearest: constant 4x4 blocks
  assert set(v["params"]) == {"l3_conv", "l3_bn", "l4_conv", "l4_bn", "out"}


def test_the_masker_never_trains_the_classifier_through_its_features(tapped):
  apply_fn, params, x = tapped
  masker = models.Masker(layers=("l1", "l4"), hidden=4)
  v = masker.init(jax.random.key(2), _features(apply_fn, params, x), (32, 32))

  def loss(p):
    return masker.apply(v, _features(apply_fn, p, x), (32, 32)).sum()

  grads = jax.grad(loss)(params)
  assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads))


def test_gumbel_is_hard_with_straight_through_gradients(tapped):
  apply_fn, params, x = tapped
  feats = _features(apply_fn, params, x)
  masker = models.Masker(layers=("l4",), hidden=4, gumbel=True)
  v = masker.init(jax.random.key(2), feats, (32, 32))
  ev, logits = masker.apply(v, feats, (32, 32), return_logits=True)
  np.testing.assert_array_equal(ev[:, ::4, ::4], (logits > 0).astype(jnp.float32))
  rngs = {"gumbel": jax.random.key(3)}
  train, _ = masker.apply(v, feats, (32, 32), train=True, rngs=rngs, mutable=["batch_stats"])
  assert set(np.unique(np.asarray(train))) <= {0.0, 1.0}

  def total(p):
    out, _ = masker.apply(
      {**v, "params": p}, feats, (32, 32), train=True, rngs=rngs, mutable=["batch_stats"]
    )
    return out.sum()

  g = jax.grad(total)(v["params"])
  assert float(jnp.abs(g["out"]["kernel"]).max()) > 0  # gradients flow through the threshold


def test_bad_input_is_named(tapped):
  apply_fn, params, x = tapped
  feats = _features(apply_fn, params, x)
  with pytest.raises(ValueError, match=r"uses taps \['l0', 'l4'\] but features lack \['l0'\]"):
    models.Masker(layers=("l0", "l4")).init(jax.random.key(0), feats, (32, 32))
  with pytest.raises(ValueError, match="input_hw 30x32 must be a multiple of mask_scale=4"):
    models.Masker(layers=("l4",)).init(jax.random.key(0), feats, (30, 32))
