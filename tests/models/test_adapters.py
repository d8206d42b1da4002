"""Adapters: each apply_fn equals calling the model directly, eager and jitted."""

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxsal.models import SmallCNN, from_equinox, from_function, from_linen, from_nnx, init_model

X = jax.random.normal(jax.random.key(42), (2, 16, 16, 3), jnp.float32)
NCHW = jnp.transpose(X, (0, 3, 1, 2))  # (2, 3, 16, 16)


def _assert_matches(apply_fn, params, expected):
  np.testing.assert_allclose(apply_fn(params, X), expected, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(jax.jit(apply_fn)(params, X), expected, rtol=1e-6, atol=1e-6)


def _assert_rejects_nchw(apply_fn, params):
  with pytest.raises(ValueError, match="NHWC"):
    apply_fn(params, NCHW)
  with pytest.raises(ValueError, match="NHWC"):
    jax.jit(apply_fn)(params, NCHW)


# Linen ----------------------------------------------------------------------


class _LinenBN(nn.Module):
  """BatchNorm and a train flag: the adapter must run it in eval mode."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(4, (3, 3), name="conv")(x)
    x = nn.BatchNorm(use_running_average=not train, name="bn")(x)
    return nn.Dense(5, name="fc")(jax.nn.relu(x).mean(axis=(1, 2)))


class _LinenTwoHeads(nn.Module):
  def setup(self):
    self.fc = nn.Dense(5)

  def __call__(self, x):
    return self.fc(x.mean(axis=(1, 2)))

  def max_head(self, x, train: bool = True):
    return self.fc(x.max(axis=(1, 2))) * (10.0 if train else 1.0)


class _LinenNoTrain(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(3)(x.reshape(x.shape[0], -1))


def test_from_linen_small_cnn():
  model = SmallCNN(num_classes=10, widths=(4, 4, 8, 8, 8))
  variables = init_model(model, jax.random.key(0), (2, 16, 16, 3))
  apply_fn, params = from_linen(model, variables)
  assert params is not variables and sorted(params) == ["params"]
  _assert_matches(apply_fn, params, model.apply(variables, X))
  _assert_rejects_nchw(apply_fn, params)


def test_from_linen_batchnorm_runs_in_eval_mode():
  model = _LinenBN()
  variables = model.init(jax.random.key(0), X)
  # Move the running averages away from (0, 1) so eval and train differ.
  _, stats = model.apply(variables, 2 * X + 1, train=True, mutable=["batch_stats"])
  variables = {"params": variables["params"], **stats}
  apply_fn, params = from_linen(model, variables)
  assert sorted(params) == ["batch_stats", "params"]
  expected = model.apply(variables, X, train=False)
  _assert_matches(apply_fn, params, expected)
  train_logits, _ = model.apply(variables, X, train=True, mutable=["batch_stats"])
  assert not np.allclose(train_logits, expected, atol=1e-3)


def test_from_linen_without_train_argument_and_with_method():
  model = _LinenNoTrain()
  variables = model.init(jax.random.key(0), X)
  apply_fn, params = from_linen(model, variables)
  _assert_matches(apply_fn, params, model.apply(variables, X))

  heads = _LinenTwoHeads()
  v = heads.init(jax.random.key(1), X)
  # The method's train argument defaults to True; the adapter passes False.
  apply_fn, params = from_linen(heads, v, method="max_head")
  _assert_matches(apply_fn, params, heads.apply(v, X, train=False, method="max_head"))


# NNX ------------------------------------------------------------------------


class _NnxCNN(nnx.Module):
  def __init__(self, rngs):
    self.conv = nnx.Conv(3, 4, (3, 3), rngs=rngs)
    self.bn = nnx.BatchNorm(4, rngs=rngs)
    self.fc = nnx.Linear(4, 5, rngs=rngs)

  def __call__(self, x):
    return self.fc(jax.nn.relu(self.bn(self.conv(x))).mean(axis=(1, 2)))


def test_from_nnx():
  model = _NnxCNN(nnx.Rngs(0))
  model(2 * X + 1)  # train mode: moves the BatchNorm running averages
  model.eval()
  apply_fn, state = from_nnx(model)
  expected = model(X)
  _assert_matches(apply_fn, state, expected)
  # The call did not change the state (eval mode, and merge works on a copy).
  np.testing.assert_array_equal(apply_fn(state, X), model(X))
  _assert_rejects_nchw(apply_fn, state)
  # The state is an ordinary pytree: gradients flow to the parameters.
  grads = jax.grad(lambda s: apply_fn(s, X)[:, 0].sum())(state)
  assert np.abs(np.asarray(grads["fc"]["kernel"][...])).sum() > 0


def test_from_nnx_requires_eval_mode():
  model = _NnxCNN(nnx.Rngs(0))
  with pytest.raises(
    ValueError,
    match=r"bn \(BatchNorm\) has use_running_average=False; "
    r"call model.eval\(\) first",
  ):
    from_nnx(model)


# Equinox --------------------------------------------------------------------


class _EqxCNN(eqx.Module):
  """Per-example and channels-first, as Equinox layers are."""

  conv: eqx.nn.Conv2d
  fc: eqx.nn.Linear

  def __init__(self, key):
    k1, k2 = jax.random.split(key)
    self.conv = eqx.nn.Conv2d(3, 4, 3, padding=1, key=k1)
    self.fc = eqx.nn.Linear(4, 5, key=k2)

  def __call__(self, x):  # [C, H, W] -> [5]
    return self.fc(jax.nn.relu(self.conv(x)).mean(axis=(1, 2)))


class _EqxBatchedNHWC(eqx.Module):
  w: jax.Array
  scale: float = eqx.field(static=True, default=2.0)

  def __call__(self, x):  # [B, H, W, C] -> [B, 5]
    return self.scale * x.mean(axis=(1, 2)) @ self.w


def test_from_equinox_per_example_channels_first():
  model = _EqxCNN(jax.random.key(0))
  apply_fn, params = from_equinox(model, channels_first=True)
  _assert_matches(apply_fn, params, jax.vmap(model)(NCHW))
  _assert_rejects_nchw(apply_fn, params)


def test_from_equinox_batched():
  model = _EqxBatchedNHWC(jax.random.normal(jax.random.key(0), (3, 5)))
  apply_fn, params = from_equinox(model, batched=True)
  _assert_matches(apply_fn, params, model(X))
  assert jax.tree.leaves(params) == [model.w]


def test_from_equinox_rejects_other_objects():
  with pytest.raises(TypeError, match="equinox.Module"):
    from_equinox(lambda x: x)


# Plain functions ------------------------------------------------------------


def test_from_function_with_params():
  w = jax.random.normal(jax.random.key(0), (3, 4))

  def fn(params, x):
    return x.mean(axis=(1, 2)) @ params["w"]

  apply_fn, params = from_function(fn, {"w": w})
  assert params == {"w": w}
  _assert_matches(apply_fn, params, fn({"w": w}, X))
  _assert_rejects_nchw(apply_fn, params)


def test_from_function_without_params():
  def fn(x):
    return x.max(axis=(1, 2))

  apply_fn, params = from_function(fn)
  assert params == {}
  _assert_matches(apply_fn, params, fn(X))


# Contract errors ------------------------------------------------------------


def test_output_must_be_batch_by_classes():
  apply_fn, params = from_function(lambda x: x.mean(axis=(1, 2, 3)))
  with pytest.raises(
    ValueError,
    match=r"must return logits of shape \[B, num_classes\] = "
    r"\[2, num_classes\] for x of shape \(2, 16, 16, 3\); got shape \(2,\)",
  ):
    apply_fn(params, X)
  apply_fn, params = from_function(lambda x: x.reshape(-1, 3)[:5])
  with pytest.raises(ValueError, match=r"got shape \(5, 3\)"):
    jax.jit(apply_fn)(params, X)


def test_input_rank_and_dtype():
  apply_fn, params = from_function(lambda x: x.mean(axis=(1, 2)))
  with pytest.raises(ValueError, match="got rank 3"):
    apply_fn(params, X[0])
  with pytest.raises(TypeError, match="floating-point"):
    apply_fn(params, jnp.zeros((2, 8, 8, 3), jnp.uint8))
