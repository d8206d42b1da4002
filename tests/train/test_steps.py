"""The pure steps, the optimizer factory and ResNet-50 sharded over 8 devices."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxsal import models, parallel, train


def _opt(**kw):
  base = dict(
    name="sgd",
    learning_rate=0.1,
    momentum=0.0,
    nesterov=False,
    weight_decay=0.0,
    schedule="constant",
    warmup_steps=0,
    decay_every_steps=0,
    decay_factor=0.1,
    grad_clip_norm=0.0,
  )
  base.update(kw)
  return ml_collections.ConfigDict(base)


def test_schedules_known_values():
  s = train.make_schedule(_opt(schedule="step", decay_every_steps=10, warmup_steps=0), 100)
  assert [float(s(i)) for i in (0, 9, 10, 25)] == pytest.approx([0.1, 0.1, 0.01, 0.001])
  s = train.make_schedule(_opt(schedule="cosine", warmup_steps=10), 110)
  assert float(s(5)) == pytest.approx(0.05)
  assert float(s(10)) == pytest.approx(0.1)
  assert float(s(60)) == pytest.approx(0.05, abs=1e-6)  # half way through the cosine
  assert float(s(110)) == pytest.approx(0.0, abs=1e-7)


def test_sgd_weight_decay_is_added_to_the_gradient_like_pytorch():
  tx = train.make_optimizer(_opt(momentum=0.9, weight_decay=0.1), 10)
  p = {"w": jnp.array([1.0, -2.0])}
  g = {"w": jnp.array([0.5, 0.5])}
  st = tx.init(p)
  u, st = tx.update(g, st, p)
  # PyTorch SGD: d = g + wd * p; buf = d; update = -lr * d
  np.testing.assert_allclose(
    u["w"], -0.1 * (np.array([0.5, 0.5]) + 0.1 * np.array([1.0, -2.0])), rtol=1e-6
  )
  u2, _ = tx.update(g, st, p)
  d = np.array([0.5, 0.5]) + 0.1 * np.array([1.0, -2.0])
  np.testing.assert_allclose(u2["w"], -0.1 * (0.9 * d + d), rtol=1e-6)


def test_train_step_matches_a_hand_computed_sgd_step():
  model = models.get_model("small_cnn", num_classes=10)
  tx = optax.sgd(0.5)
  state = train.create_train_state(model, tx, jax.random.key(0), (1, 16, 16, 1))
  rng = np.random.default_rng(0)
  batch = {"image": rng.random((4, 16, 16, 1), dtype=np.float32), "label": np.array([0, 1, 2, 3])}

  def loss(params):
    logits = model.apply({"params": params}, batch["image"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()

  grads = jax.grad(loss)(state.params)
  new, metrics = train.make_train_step(model, tx)(state, batch)
  assert int(new.step) == 1
  assert float(metrics["loss"]) == pytest.approx(float(loss(state.params)), rel=1e-6)
  jax.tree.map(
    lambda p, g, q: np.testing.assert_allclose(q, p - 0.5 * g, rtol=1e-5, atol=1e-7),
    state.params,
    grads,
    new.params,
  )


def test_eval_step_ignores_padding():
  model = models.get_model("small_cnn", num_classes=10)
  state = train.create_train_state(model, optax.sgd(0.1), jax.random.key(1), (1, 16, 16, 1))
  rng = np.random.default_rng(1)
  x = rng.random((6, 16, 16, 1), dtype=np.float32)
  y = np.arange(6) % 10
  ev = train.make_eval_step(model)
  full = ev(state, {"image": x[:4], "label": y[:4], "valid": np.ones(4)})
  padded = ev(state, {"image": x, "label": y, "valid": np.array([1, 1, 1, 1, 0, 0])})
  assert float(padded["count"]) == 4
  np.testing.assert_allclose(float(padded["loss"]), float(full["loss"]), rtol=1e-6)


def test_resnet50_train_step_sharded_over_two_devices():
  # Two of the 8 devices: the program is sharded all the same, and each
  # replicated ResNet-50 update (25M parameters, unfused at this optimisation
  # level) runs on 2 simulated devices instead of 8 sharing two cores.
  mesh = parallel.make_mesh(devices=jax.devices()[:2])
  model = models.get_model("resnet50", num_classes=10)
  tx = optax.sgd(0.1, momentum=0.9)
  repl, data = parallel.replicated(mesh), parallel.batch_sharding(mesh)
  state = jax.jit(
    lambda k: train.create_train_state(model, tx, k, (1, 32, 32, 3)), out_shardings=repl
  )(jax.random.key(0))
  rng = np.random.default_rng(0)
  batch = parallel.shard_batch(
    {
      "image": rng.standard_normal((8, 32, 32, 3), dtype=np.float32),
      "label": rng.integers(0, 10, 8).astype(np.int32),
    },
    mesh,
  )
  before = jax.device_get(state.params["conv1"]["kernel"]) if "conv1" in state.params else None
  old_stats = jax.device_get(state.model_state["batch_stats"])
  step = jax.jit(
    train.make_train_step(model, tx),
    in_shardings=(repl, data),
    out_shardings=(repl, repl),
    donate_argnums=(0,),
  )
  new, metrics = step(state, batch)
  assert np.isfinite(float(metrics["loss"]))
  assert int(new.step) == 1
  leaves = jax.tree.leaves(new.params)
  assert all(l.sharding.is_fully_replicated and len(l.sharding.device_set) == 2 for l in leaves)
  changed = jax.tree.map(
    lambda a, b: not np.allclose(a, b), old_stats, jax.device_get(new.model_state["batch_stats"])
  )
  assert all(jax.tree.leaves(changed))  # every BatchNorm saw the (global) batch
  if before is not None:
    assert not np.allclose(before, jax.device_get(new.params["conv1"]["kernel"]))
