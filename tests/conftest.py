"""Test configuration: 8 simulated CPU devices, cheap compilation."""

import os

# Must happen before JAX initialises its backends.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
# Compile time dominates the tiny models used in tests.
jax.config.update("jax_disable_most_optimizations", True)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  """A session-wide directory for prepared tfds datasets."""
  return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="session")
def test_classifier_workdir(data_dir, tmp_path_factory):
  """A workdir holding the ``small_cnn_digits:test`` classifier, trained once per session."""
  from jaxsal import configs, train
  workdir = str(tmp_path_factory.mktemp("test_classifier"))
  c = configs.apply_overrides(configs.get_config("small_cnn_digits:test"),
                              [f"dataset.data_dir={data_dir}", "checkpoint.use_async=False"])
  train.train_and_evaluate(c, workdir, progress=False)
  return workdir
