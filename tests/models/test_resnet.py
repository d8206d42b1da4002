"""ResNet v1.5: torchvision parameter counts, layout, taps and BatchNorm."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsal.models import ResNet18, ResNet34, ResNet50, apply_with_taps, init_model, tap_names


def _abstract_variables(model, shape=(1, 32, 32, 3)):
  """Variables as ShapeDtypeStructs: tracing only, no compute."""
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape), train=False))


def _count(tree):
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


@pytest.mark.parametrize(
  "ctor,expected",
  [
    (ResNet18, 11_689_512),  # torchvision.models.resnet18().parameters()
    (ResNet34, 21_797_672),
    (ResNet50, 25_557_032),
  ],
)
def test_parameter_count_equals_torchvision(ctor, expected):
  variables = _abstract_variables(ctor(num_classes=1000))
  assert _count(variables["params"]) == expected


def test_names_follow_torchvision_keys():
  r18 = _abstract_variables(ResNet18())["params"]
  r50 = _abstract_variables(ResNet50())["params"]
  assert sorted(k for k in r18 if not k.startswith("layer")) == ["bn1", "conv1", "fc"]
  assert sorted(k for k in r18 if k.startswith("layer")) == [
    f"layer{s}_{i}" for s in range(1, 5) for i in range(2)
  ]
  assert r18["conv1"]["kernel"].shape == (7, 7, 3, 64)  # torch [64, 3, 7, 7]
  assert "downsample_conv" not in r18["layer1_0"]  # 64 -> 64, stride 1
  assert r18["layer2_0"]["downsample_conv"]["kernel"].shape == (1, 1, 64, 128)
  assert sorted(r18["layer2_0"]) == [
    "bn1",
    "bn2",
    "conv1",
    "conv2",
    "downsample_bn",
    "downsample_conv",
  ]
  # v1.5: the stride-2 bottleneck's 3x3 conv2 strides; 1x1 conv1 reduces to 128.
  assert r50["layer2_0"]["conv1"]["kernel"].shape == (1, 1, 256, 128)
  assert r50["layer2_0"]["conv2"]["kernel"].shape == (3, 3, 128, 128)
  assert r50["layer1_0"]["downsample_conv"]["kernel"].shape == (1, 1, 64, 256)
  assert r50["fc"]["kernel"].shape == (2048, 1000)
  assert len([k for k in r50 if k.startswith("layer")]) == 3 + 4 + 6 + 3


def test_resnet50_tap_shapes_at_32():
  model = ResNet50(num_classes=10)
  x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
  variables = {
    k: v for k, v in _abstract_variables(model).items() if k in ("params", "batch_stats")
  }
  logits, taps = jax.eval_shape(lambda v, x: apply_with_taps(model, v, x), variables, x)
  assert logits.shape == (2, 10)
  assert {k: v.shape for k, v in taps.items()} == {
    "l0": (2, 8, 8, 64),
    "l1": (2, 8, 8, 256),
    "l2": (2, 4, 4, 512),
    "l3": (2, 2, 2, 1024),
    "l4": (2, 1, 1, 2048),
  }


def test_bfloat16_compute_keeps_float32_params_and_logits():
  model = ResNet18(num_classes=10, dtype=jnp.bfloat16)
  variables = _abstract_variables(model)
  assert {leaf.dtype for leaf in jax.tree.leaves(variables["params"])} == {jnp.dtype("float32")}
  v = {k: variables[k] for k in ("params", "batch_stats")}
  logits, taps = jax.eval_shape(lambda v: apply_with_taps(model, v, jnp.zeros((2, 32, 32, 3))), v)
  assert logits.dtype == jnp.float32
  assert taps["l4"].dtype == jnp.bfloat16


@pytest.fixture(scope="module")
def r18():
  model = ResNet18(num_classes=10)
  # Jitted: eager init compiles every initializer op by op (slow in tests).
  variables = jax.jit(lambda key: init_model(model, key, (2, 64, 64, 3)))(jax.random.key(0))
  x = jax.random.normal(jax.random.key(1), (2, 64, 64, 3), jnp.float32)
  return model, variables, x


def test_resnet18_tap_shapes_at_64(r18):
  model, variables, x = r18
  assert sorted(variables) == ["batch_stats", "params"]
  logits, taps = apply_with_taps(model, variables, x)
  assert tap_names(model) == ["l0", "l1", "l2", "l3", "l4"]
  assert logits.shape == (2, 10) and logits.dtype == jnp.float32
  assert {k: v.shape for k, v in taps.items()} == {
    "l0": (2, 16, 16, 64),
    "l1": (2, 16, 16, 64),
    "l2": (2, 8, 8, 128),
    "l3": (2, 4, 4, 256),
    "l4": (2, 2, 2, 512),
  }
  # Every tap follows a relu (or a max-pool of one).
  assert all(float(v.min()) >= 0 for v in taps.values())


def test_train_mode_updates_batch_stats_with_momentum(r18):
  model, variables, x = r18
  _, updated = model.apply(variables, x, train=True, mutable=["batch_stats"])
  # bn1 sees conv1(x): stride 2, symmetric padding 3 (torch's), no bias.
  conv1 = jax.lax.conv_general_dilated(
    x,
    variables["params"]["conv1"]["kernel"],
    (2, 2),
    ((3, 3), (3, 3)),
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
    precision=jax.lax.Precision.HIGHEST,
  )
  mean = np.asarray(conv1).mean(axis=(0, 1, 2))
  var = np.asarray(conv1).var(axis=(0, 1, 2))  # Flax uses the biased variance.
  stats = updated["batch_stats"]["bn1"]
  # momentum 0.9 from the init values mean = 0, var = 1.
  np.testing.assert_allclose(stats["mean"], 0.1 * mean, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(stats["var"], 0.9 + 0.1 * var, rtol=1e-4, atol=1e-6)
  changed = jax.tree.map(
    lambda a, b: bool(np.any(a != b)), variables["batch_stats"], updated["batch_stats"]
  )
  assert all(jax.tree.leaves(changed))


def test_eval_mode_is_batch_independent(r18):
  model, variables, x = r18
  # Non-trivial running statistics first, so eval mode is really exercised.
  _, updated = model.apply(variables, 3.0 * x + 1.0, train=True, mutable=["batch_stats"])
  v = {"params": variables["params"], **updated}
  together = model.apply(v, x)
  alone = np.concatenate([model.apply(v, x[i : i + 1]) for i in range(2)])
  np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-5)
  # Train mode, by contrast, depends on the batch.
  train_together, _ = model.apply(v, x, train=True, mutable=["batch_stats"])
  train_first, _ = model.apply(v, x[:1], train=True, mutable=["batch_stats"])
  assert not np.allclose(train_together[:1], train_first, atol=1e-3)


def test_apply_with_taps_in_train_mode_leaves_variables_alone(r18):
  model, variables, x = r18
  before = jax.tree.map(np.asarray, variables["batch_stats"])
  logits, _ = apply_with_taps(model, variables, x, taps=["l4"], train=True)
  expected, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
  np.testing.assert_allclose(logits, expected, rtol=1e-6, atol=1e-6)
  jax.tree.map(np.testing.assert_array_equal, before, variables["batch_stats"])
