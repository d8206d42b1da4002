"""Training on randomised labels, for the data-randomisation sanity check.

``permute`` shuffles the training labels once (the label histogram is kept,
as in Adebayo et al. 2018); ``uniform`` draws each example's label uniformly
at random (as the masking-model paper's code does). Both are fixed for a seed,
so the model can memorise them.
"""

from __future__ import annotations

import numpy as np

from jaxsal._checks import check_choice

MODES = ("none", "permute", "uniform")


class RandomLabelSource:
  """Wraps a random-access source and replaces its ``'label'`` entries.

  Args:
    source: a random-access source (``len`` and ``__getitem__`` returning dicts).
    mode: ``'permute'`` or ``'uniform'``.
    num_classes: the number of classes.
    seed: fixes the new labels.
  """

  def __init__(self, source, mode: str, *, num_classes: int, seed: int):
    check_choice(mode, "dataset.label_randomization", MODES)
    if mode == "none":
      raise ValueError("RandomLabelSource needs mode 'permute' or 'uniform'")
    self._source = source
    self.mode = mode
    rng = np.random.default_rng([seed, 0x5A17])
    n = len(source)
    if mode == "permute":
      labels = np.asarray([int(source[i]["label"]) for i in range(n)], np.int64)
      self.labels = labels[rng.permutation(n)]
    else:
      self.labels = rng.integers(0, num_classes, size=n)

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index):
    record = dict(self._source[index])
    record["label"] = np.asarray(self.labels[int(index)], dtype=np.asarray(record["label"]).dtype)
    return record
