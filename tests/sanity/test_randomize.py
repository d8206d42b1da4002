"""Parameter randomisation as a tree transform."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxsal import attribution as A
from jaxsal import models, parallel, sanity

SMALL = ["conv0", "conv1", "conv2", "conv3", "conv4", "head"]


@pytest.fixture(scope="module")
def small():
  model = models.SmallCNN(num_classes=16, widths=(8, 8, 8, 8, 16))
  apply_fn, params = models.from_linen(
    model, models.init_model(model, jax.random.key(0), (1, 16, 16, 1))
  )
  return apply_fn, params


def _leaves(tree):
  return {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_model_order_follows_the_program(small):
  apply_fn, params = small
  x = jnp.zeros((1, 16, 16, 1))
  assert sanity.model_order(apply_fn, params, x) == SMALL
  resnet = models.get_model("resnet18", num_classes=10)
  shapes = jax.eval_shape(lambda: models.init_model(resnet, jax.random.key(0), (1, 32, 32, 3)))
  f, _ = models.from_linen(resnet, shapes)
  order = sanity.model_order(f, shapes, jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))
  assert order[:4] == ["conv1", "bn1", "layer1_0/conv1", "layer1_0/bn1"]
  assert order[-1] == "fc" and sorted(order) == sorted(sanity.layer_names(shapes))


def test_cascading_stage_k_is_the_top_k_layers_randomized_together(small):
  _, params = small
  key = jax.random.key(3)
  cascade = sanity.randomize(params, key, layers=SMALL, mode="cascading")
  independent = sanity.randomize(params, key, layers=SMALL, mode="independent")
  assert len(cascade) == len(independent) == len(SMALL)
  base = _leaves(params)
  for k in range(len(SMALL)):
    top = SMALL[len(SMALL) - 1 - k :]
    together = sanity.randomize(params, key, layers=top, mode="single")
    jax.tree.map(np.testing.assert_array_equal, cascade[k], together)
    got = _leaves(cascade[k])
    for path, v in got.items():
      changed = not np.array_equal(v, base[path])
      is_top = any(f"['{name}']" in path for name in top)
      # Kernels are re-drawn; biases are re-drawn to zeros, which they were already.
      assert changed == (is_top and ("kernel" in path or np.any(base[path] != 0)))
    # Independent stage k re-draws exactly the layer cascading adds at stage k.
    only = SMALL[len(SMALL) - 1 - k]
    for path, v in _leaves(independent[k]).items():
      if f"['{only}']" in path:
        np.testing.assert_array_equal(v, got[path])
      else:
        np.testing.assert_array_equal(v, base[path])


def test_new_values_depend_on_key_and_path_only_and_follow_he_normal(small):
  _, params = small
  key = jax.random.key(7)
  one = sanity.randomize(params, key, layers=["conv*", "head"], mode="single")
  # The same leaves in a tree of another order (and another container).
  reordered = {"params": dict(reversed(list(params["params"].items())))}
  two = sanity.randomize(reordered, key, layers=["head", "conv*"], mode="single")
  for path, v in _leaves(one).items():
    np.testing.assert_array_equal(v, _leaves(two)[path])
  other = sanity.randomize(params, jax.random.key(8), layers=["head"], mode="single")
  assert not np.array_equal(other["params"]["head"]["kernel"], one["params"]["head"]["kernel"])
  # He normal: std sqrt(2 / fan_in) (fan_in = 3 * 3 * 8 = 72 for conv1); zero biases.
  big = {"params": {"conv": {"kernel": jnp.zeros((3, 3, 64, 256)), "bias": jnp.ones(256)}}}
  r = sanity.randomize(big, key, layers=["conv"], mode="single")["params"]["conv"]
  np.testing.assert_allclose(np.std(r["kernel"]), np.sqrt(2 / (9 * 64)), rtol=0.02)
  np.testing.assert_array_equal(r["bias"], 0.0)


def test_structure_shapes_dtypes_and_sharding_are_kept_on_eight_devices(small):
  _, params = small
  mesh = parallel.make_mesh({"data": 8})
  placed = parallel.replicate(params, mesh)
  head = params["params"]["head"]["kernel"]  # [16, 16]: split its columns
  split = NamedSharding(mesh, P(None, "data"))
  placed["params"]["head"]["kernel"] = jax.device_put(head.astype(jnp.bfloat16), split)
  for out in sanity.randomize(placed, jax.random.key(0), layers=SMALL, mode="cascading")[:2]:
    assert jax.tree.structure(out) == jax.tree.structure(placed)
    for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(placed)):
      assert a.shape == b.shape and a.dtype == b.dtype and a.sharding == b.sharding
  assert out["params"]["head"]["kernel"].sharding == split


def test_batch_stats_are_kept_by_default_and_reset_on_request():
  variables = {
    "params": {"bn": {"scale": jnp.full(4, 2.0), "bias": jnp.ones(4)}},
    "batch_stats": {"bn": {"mean": jnp.full(4, 3.0), "var": jnp.full(4, 5.0)}},
  }
  kept = sanity.randomize(variables, jax.random.key(0), layers=["bn"], mode="single")
  np.testing.assert_array_equal(kept["params"]["bn"]["scale"], 1.0)
  np.testing.assert_array_equal(kept["params"]["bn"]["bias"], 0.0)
  np.testing.assert_array_equal(kept["batch_stats"]["bn"]["mean"], 3.0)
  reset = sanity.randomize(
    variables, jax.random.key(0), layers=["bn"], mode="single", reset_batch_stats=True
  )
  np.testing.assert_array_equal(reset["batch_stats"]["bn"]["mean"], 0.0)
  np.testing.assert_array_equal(reset["batch_stats"]["bn"]["var"], 1.0)


def test_one_vmapped_call_over_stacked_stages_equals_one_call_per_stage(small):
  apply_fn, params = small
  x = jax.random.uniform(jax.random.key(1), (2, 16, 16, 1))
  t = jnp.array([3, 5])
  stages = sanity.randomize(params, jax.random.key(2), layers=SMALL)
  stacked = sanity.stack(stages)
  every = jax.jit(jax.vmap(lambda p: A.gradient(apply_fn, p, x, t)))(stacked)
  for k in (0, 3, 5):
    np.testing.assert_allclose(
      every[k], A.gradient(apply_fn, stages[k], x, t), rtol=1e-5, atol=1e-7
    )


def test_bad_input_is_named(small):
  _, params = small
  with pytest.raises(ValueError, match=r"'fc' matches no layer; the layers are \['conv0'"):
    sanity.randomize(params, jax.random.key(0), layers=["conv4", "fc"])
  with pytest.raises(ValueError, match="unknown mode 'cascade'; known: cascading"):
    sanity.randomize(params, jax.random.key(0), layers=SMALL, mode="cascade")
  with pytest.raises(TypeError, match="one per stage; got the string 'head'"):
    sanity.randomize(params, jax.random.key(0), layers="head")
  with pytest.raises(ValueError, match="no initialiser for leaf 'params/odd/w'"):
    sanity.randomize({"params": {"odd": {"w": jnp.ones(2)}}}, jax.random.key(0), layers=["odd"])
