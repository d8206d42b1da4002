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
