"""Test fixtures: the prepared datasets and the trained test models, shared by the session."""

import pytest

# The JAX setup (CPU, 8 simulated devices, the shared compilation cache, cheap
# compilation) is made by the repository's root conftest.py, which pytest loads
# first: it serves the doctests of jaxsal/ as well as these tests.


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
