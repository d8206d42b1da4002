"""Fixtures for the data tests: the `small` cluttered_digits, prepared once."""

import numpy as np
import pytest

from jaxsal import data as jdata


def _read_all(source):
  """Stacks every example of a random-access source into arrays."""
  examples = [source[i] for i in range(len(source))]
  return {k: np.stack([np.asarray(e[k]) for e in examples]) for k in examples[0]}


@pytest.fixture(scope="session")
def read_all():
  """The function that stacks a whole random-access source into arrays."""
  return _read_all


@pytest.fixture(scope="session")
def small_builder(data_dir):
  return jdata.cluttered_digits_builder("small", data_dir=data_dir)


@pytest.fixture(scope="session")
def small_data(small_builder):
  """{'train': arrays, 'test': arrays} of the whole `small` config."""
  sources = small_builder.as_data_source()
  return {split: _read_all(sources[split]) for split in ("train", "test")}
