"""Label randomisation for the data-randomisation sanity check."""

import numpy as np
import pytest

from jaxsal import train


def _source(n=200):
  labels = np.arange(n) % 10
  return [
    {"label": np.int64(l), "image": np.full((2, 2, 1), i, np.uint8)} for i, l in enumerate(labels)
  ]


def test_permute_keeps_the_label_histogram_and_the_images():
  src = _source()
  perm = train.RandomLabelSource(src, "permute", num_classes=10, seed=0)
  old = np.array([r["label"] for r in src])
  new = np.array([perm[i]["label"] for i in range(len(perm))])
  np.testing.assert_array_equal(np.bincount(new, minlength=10), np.bincount(old, minlength=10))
  assert (new != old).mean() > 0.7  # a real shuffle, not the identity
  assert all(np.array_equal(perm[i]["image"], src[i]["image"]) for i in range(len(src)))
  assert src[5]["label"] == 5  # the wrapped source is not modified


def test_uniform_labels_are_fixed_by_the_seed_and_cover_the_classes():
  src = _source()
  a = train.RandomLabelSource(src, "uniform", num_classes=10, seed=1)
  b = train.RandomLabelSource(src, "uniform", num_classes=10, seed=1)
  c = train.RandomLabelSource(src, "uniform", num_classes=10, seed=2)
  la = [int(a[i]["label"]) for i in range(200)]
  assert la == [int(b[i]["label"]) for i in range(200)]
  assert la != [int(c[i]["label"]) for i in range(200)]
  assert set(la) == set(range(10))


def test_bad_mode():
  with pytest.raises(ValueError, match="unknown dataset.label_randomization 'shuffle'"):
    train.RandomLabelSource(_source(), "shuffle", num_classes=10, seed=0)
  with pytest.raises(ValueError, match="needs mode 'permute' or 'uniform'"):
    train.RandomLabelSource(_source(), "none", num_classes=10, seed=0)
