import jax.numpy as jnp
import numpy as np
import pytest

from jaxsal import attribution as A


def test_reduce_channels_known_values():
  m = jnp.array([[[[1.0, -3.0], [2.0, 0.5]]]])  # [1, 1, 2, 2]
  np.testing.assert_allclose(A.reduce_channels(m, "sum"), [[[-2.0, 2.5]]])
  np.testing.assert_allclose(A.reduce_channels(m, "abs_sum"), [[[4.0, 2.5]]])
  np.testing.assert_allclose(A.reduce_channels(m, "max"), [[[1.0, 2.0]]])
  np.testing.assert_allclose(A.reduce_channels(m, "max_abs"), [[[3.0, 2.0]]])
  with pytest.raises(ValueError, match="unknown how 'mean'"):
    A.reduce_channels(m, "mean")


def test_abs_and_diverging_normalisations_match_numpy():
  rng = np.random.default_rng(0)
  m = rng.standard_normal((3, 8, 8, 2)).astype(np.float32)
  a = np.abs(m).sum(-1)
  lo = a.reshape(3, -1).min(1)[:, None, None]
  hi = np.percentile(a.reshape(3, -1), 99, axis=1)[:, None, None]
  np.testing.assert_allclose(
    A.normalize_abs(jnp.asarray(m)), np.clip((a - lo) / (hi - lo), 0, 1), rtol=1e-5, atol=1e-6
  )
  s = m.sum(-1)
  p = np.percentile(np.abs(s).reshape(3, -1), 99, axis=1)[:, None, None]
  np.testing.assert_allclose(
    A.normalize_diverging(jnp.asarray(m)), np.clip(s / p, -1, 1), rtol=1e-5, atol=1e-6
  )
  out = A.normalize_percentile(jnp.asarray(s))
  assert float(jnp.abs(out).max()) == 1.0
