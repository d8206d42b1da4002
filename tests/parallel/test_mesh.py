import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxsal import parallel


def test_eight_simulated_devices():
  assert jax.device_count() == 8


@pytest.mark.parametrize(
  "shape,n,want",
  [
    ({"data": -1}, 8, {"data": 8}),
    ({"data": -1, "model": 2}, 8, {"data": 4, "model": 2}),
    ({"data": 2, "model": -1}, 8, {"data": 2, "model": 4}),
    ({"data": 8}, 8, {"data": 8}),
  ],
)
def test_resolve_mesh_shape(shape, n, want):
  got = parallel.resolve_mesh_shape(shape, n)
  assert got == want and list(got) == list(want)


@pytest.mark.parametrize(
  "shape,match",
  [
    ({"data": -1, "model": -1}, "more than one -1"),
    ({"data": 3, "model": -1}, "does not divide"),
    ({"data": 4}, "spans 4 devices but 8"),
    ({"data": 0}, "positive integers"),
    ({}, "at least one axis"),
  ],
)
def test_resolve_mesh_shape_errors(shape, match):
  with pytest.raises(ValueError, match=match):
    parallel.resolve_mesh_shape(shape, 8)


def test_make_mesh_default_and_subset():
  assert parallel.make_mesh().shape == {"data": 8}
  m1 = parallel.make_mesh(devices=jax.devices()[:1])
  assert m1.shape == {"data": 1} and m1.devices.ravel().tolist() == jax.devices()[:1]


def test_shard_batch_places_rows_on_devices():
  mesh = parallel.make_mesh()
  x = np.arange(16 * 3, dtype=np.float32).reshape(16, 3)
  out = parallel.shard_batch({"x": x, "y": np.arange(16)}, mesh)
  assert out["x"].sharding.spec == P("data")
  np.testing.assert_array_equal(np.asarray(out["x"]), x)
  # Each device holds 2 consecutive rows, in device order.
  for shard in out["x"].addressable_shards:
    rows = shard.index[0]
    np.testing.assert_array_equal(np.asarray(shard.data), x[rows])
    assert shard.data.shape == (2, 3)


def test_shard_batch_rejects_uneven_batch():
  with pytest.raises(ValueError, match="does not split over its 8 devices"):
    parallel.shard_batch({"x": np.zeros((6, 2))}, parallel.make_mesh())


def test_replicate_and_jit_sum_equals_numpy():
  mesh = parallel.make_mesh()
  w = parallel.replicate(jnp.arange(3.0), mesh)
  assert w.sharding.is_fully_replicated
  x = parallel.shard_batch(np.ones((8, 3), np.float32), mesh)
  got = jax.jit(lambda w, x: (x @ w).sum())(w, x)
  assert float(got) == pytest.approx(8 * 3.0)


def test_initialize_is_a_no_op_on_one_host(monkeypatch):
  for k in (
    "JAX_COORDINATOR_ADDRESS",
    "COORDINATOR_ADDRESS",
    "TPU_WORKER_HOSTNAMES",
    "SLURM_NTASKS",
  ):
    monkeypatch.delenv(k, raising=False)
  assert not parallel.is_multihost_environment()
  assert parallel.initialize("auto") is False
  monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "h0,h1,h2,h3")
  assert parallel.is_multihost_environment()
  with pytest.raises(ValueError, match="unknown distributed mode"):
    parallel.initialize("sometimes")
