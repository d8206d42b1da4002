"""Test configuration: 8 simulated CPU devices, cheap compilation."""

import os

# Must happen before JAX initialises its backends.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent compilation cache for the whole run: both pytest-xdist workers,
# the notebooks' kernels and the CLI subprocesses of the tests compile many of the
# same programs (the test classifier's and masker's steps, their evaluations).
# Programs are keyed by their HLO, jax version and flags, so a hit is the same program.
import tempfile

os.environ.setdefault(
  "JAX_COMPILATION_CACHE_DIR",
  os.path.join(tempfile.gettempdir(), f"jaxsal-tests-xla-cache-{os.getuid()}"),
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

import jax

jax.config.update("jax_num_cpu_devices", 8)
# Compile time dominates the tiny models used in tests.
jax.config.update("jax_disable_most_optimizations", True)

import pytest


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  """A session-wide directory for prepared tfds datasets."""
  return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="session")
def test_classifier_workdir(data_dir, tmp_path_factory):
  """A workdir holding the ``small_cnn_digits:test`` classifier, trained once per session."""
  from jaxsal import configs, train

  workdir = str(tmp_path_factory.mktemp("test_classifier"))
  c = configs.apply_overrides(
    configs.get_config("small_cnn_digits:test"),
    [f"dataset.data_dir={data_dir}", "checkpoint.use_async=False"],
  )
  train.train_and_evaluate(c, workdir, progress=False)
  return workdir


@pytest.fixture(scope="session")
def test_masker_workdir(test_classifier_workdir, data_dir):
  """``test_classifier_workdir`` with the ``masker_digits:test`` masker trained in ``maskers/test``.

  It is where ``localization_digits:test`` (and the demo's test config) train
  that masker, so they reuse it instead of training it again.
  """
  from jaxsal import configs
  from jaxsal.experiments import localization

  config = configs.apply_overrides(
    configs.get_config("localization_digits:test"), [f"classifier.dataset.data_dir={data_dir}"]
  )
  masker = localization.masker_config(config, "test", test_classifier_workdir)
  localization.trained_masker(masker, test_classifier_workdir, "test", progress=False)
  return test_classifier_workdir
