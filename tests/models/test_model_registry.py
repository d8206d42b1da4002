"""The model registry and init_model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsal.models import ResNet, SmallCNN, get_model, init_model, list_models


def test_list_models():
  assert list_models() == ["resnet18", "resnet34", "resnet50", "small_cnn"]


def test_unknown_model():
  with pytest.raises(ValueError) as e:
    get_model("x", num_classes=10)
  assert str(e.value) == "unknown model 'x'; known models: resnet18, resnet34, resnet50, small_cnn"


def test_bad_num_classes():
  with pytest.raises(ValueError, match="num_classes must be a positive integer; got 0"):
    get_model("small_cnn", num_classes=0)


def test_get_model_builds_the_named_architecture():
  small = get_model("small_cnn", num_classes=7, widths=(8, 8, 8, 8, 8))
  assert isinstance(small, SmallCNN) and small.num_classes == 7 and small.widths == (8,) * 5
  expected = {
    "resnet18": ((2, 2, 2, 2), "BasicBlock"),
    "resnet34": ((3, 4, 6, 3), "BasicBlock"),
    "resnet50": ((3, 4, 6, 3), "Bottleneck"),
  }
  for name, (stages, block) in expected.items():
    model = get_model(name, num_classes=3, dtype=jnp.bfloat16)
    assert isinstance(model, ResNet)
    assert (tuple(model.stage_sizes), model.block_cls.__name__) == (stages, block)
    assert model.num_classes == 3 and model.dtype == jnp.bfloat16


def test_init_model_collections_and_batch_independence():
  model = get_model("small_cnn", num_classes=4, widths=(2, 2, 2, 2, 2))
  one = init_model(model, jax.random.key(3), (1, 16, 16, 1))
  three = init_model(model, jax.random.key(3), (3, 16, 16, 1))
  assert sorted(one) == ["params"]
  jax.tree.map(np.testing.assert_array_equal, one, three)
  resnet = jax.eval_shape(
    lambda: init_model(get_model("resnet18", num_classes=4), jax.random.key(0), (1, 32, 32, 3))
  )
  assert sorted(resnet) == ["batch_stats", "params"]
  assert resnet["batch_stats"]["bn1"]["mean"].shape == (64,)


def test_init_model_rejects_non_nhwc_shape():
  model = get_model("small_cnn", num_classes=4)
  with pytest.raises(ValueError, match="input_shape must be a batch of images"):
    init_model(model, jax.random.key(0), (16, 16, 1))
