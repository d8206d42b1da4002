"""Taps: selection, errors, perturbations and the variables users see."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsal.models import SmallCNN, apply_with_taps, init_model, tap, tap_names

WIDTHS = (4, 4, 8, 8, 16)


@pytest.fixture(scope="module")
def setup():
  model = SmallCNN(num_classes=5, widths=WIDTHS)
  variables = init_model(model, jax.random.key(0), (2, 32, 32, 3))
  x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3), jnp.float32)
  return model, variables, x


def test_unknown_tap_lists_available(setup):
  model, variables, x = setup
  with pytest.raises(ValueError) as e:
    apply_with_taps(model, variables, x, taps=["l9"])
  assert str(e.value) == "unknown tap 'l9'; available taps: l0, l1, l2, l3, l4"


def test_unknown_perturbation_and_wrong_shape(setup):
  model, variables, x = setup
  with pytest.raises(ValueError, match="unknown perturbation 'l7'; available taps: l0, l1"):
    apply_with_taps(model, variables, x, perturbations={"l7": jnp.zeros(3)})
  # Batch 1 against batch 2 would otherwise broadcast silently.
  with pytest.raises(
    ValueError,
    match=r"perturbations\['l4'\] must have the tap's shape "
    r"\(2, 2, 2, 16\); got \(1, 2, 2, 16\)",
  ):
    apply_with_taps(model, variables, x, perturbations={"l4": jnp.zeros((1, 2, 2, 16))})


def test_tap_selection_and_order(setup):
  model, variables, x = setup
  _, taps = apply_with_taps(model, variables, x, taps=["l3", "l1"])
  assert list(taps) == ["l3", "l1"]
  _, none = apply_with_taps(model, variables, x, taps=[])
  assert none == {}


def test_init_model_drops_tap_collections(setup):
  model, variables, _ = setup
  raw = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  assert sorted(raw) == ["params", "perturbations", "taps"]  # what Flax makes
  assert sorted(variables) == ["params"]  # what users get
  jax.tree.map(np.testing.assert_array_equal, raw["params"], variables["params"])


def test_plain_apply_without_perturbations_matches(setup):
  model, variables, x = setup
  logits, _ = apply_with_taps(model, variables, x)
  np.testing.assert_array_equal(model.apply(variables, x), logits)
  # Stale batch-1 perturbations from a raw init are ignored, not broadcast.
  raw = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  stale_logits, _ = apply_with_taps(model, raw, x)
  np.testing.assert_array_equal(stale_logits, logits)


def test_perturbation_shifts_logits_by_known_amount(setup):
  model, variables, x = setup
  logits, taps = apply_with_taps(model, variables, x, taps=["l4"])
  delta = jax.random.normal(jax.random.key(2), taps["l4"].shape)
  shifted, shifted_taps = apply_with_taps(
    model, variables, x, taps=["l4"], perturbations={"l4": delta}
  )
  # The returned tap is the unperturbed feature map.
  np.testing.assert_array_equal(shifted_taps["l4"], taps["l4"])
  kernel = np.asarray(variables["params"]["head"]["kernel"])
  expected = np.asarray(logits) + np.asarray(delta).mean(axis=(1, 2)) @ kernel
  np.testing.assert_allclose(shifted, expected, rtol=1e-5, atol=1e-5)


def test_jit_equals_eager(setup):
  model, variables, x = setup
  eager = apply_with_taps(model, variables, x, taps=["l2"])
  jitted = jax.jit(lambda v, x: apply_with_taps(model, v, x, taps=["l2"]))(variables, x)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6), eager, jitted)


class _Tapped(nn.Module):
  TAPS = ("feat",)

  @nn.compact
  def __call__(self, x, train: bool = False):
    feat = tap(self, "feat", nn.Conv(3, (1, 1), name="conv")(x))
    return nn.Dense(2, name="fc")(feat.mean(axis=(1, 2)))


def test_user_model_with_tap():
  model = _Tapped()
  variables = init_model(model, jax.random.key(0), (1, 4, 4, 2))
  x = jnp.arange(2 * 4 * 4 * 2, dtype=jnp.float32).reshape(2, 4, 4, 2) / 10
  _, taps = apply_with_taps(model, variables, x)
  p = variables["params"]["conv"]
  expected = np.asarray(x) @ np.asarray(p["kernel"][0, 0]) + np.asarray(p["bias"])
  np.testing.assert_allclose(taps["feat"], expected, rtol=1e-5, atol=1e-6)
  assert tap_names(model) == ["feat"]


def test_tap_names_without_taps():
  with pytest.raises(ValueError, match="Dense declares no taps"):
    tap_names(nn.Dense(3))
