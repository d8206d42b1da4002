"""Few-shot subsets: ``k`` examples of every class, for few-shot masker training."""

from __future__ import annotations

import numpy as np


class FewShotSource:
  """A random-access source holding ``k`` examples of each class of another source.

  The examples of each class are drawn without replacement by a seeded
  permutation, so the subset is fixed by ``(k, seed)``; they are stored in
  the order of the underlying source.

  Args:
    source: a random-access source of dicts with a ``'label'``.
    k: examples per class (the paper's smallest setting is 10).
    seed: fixes the choice.
    labels: the labels of ``source``, if already known (read otherwise).

  Raises:
    ValueError: ``k`` is not a positive integer, or some class has fewer than
      ``k`` examples (the message names the class and its count).

  Example:
    >>> from jaxsal.data import FewShotSource
    >>> source = [{"label": i % 3} for i in range(30)]  # any source, e.g. load_source(...)
    >>> few = FewShotSource(source, k=2, seed=0)
    >>> len(few), sorted(ex["label"] for ex in few)
    (6, [0, 0, 1, 1, 2, 2])
  """

  def __init__(self, source, k: int, *, seed: int = 0, labels=None):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
      raise ValueError(f"k (examples per class) must be a positive integer; got {k!r}")
    if labels is None:
      labels = [int(source[i]["label"]) for i in range(len(source))]
    labels = np.asarray(labels, np.int64)
    if labels.shape != (len(source),):
      raise ValueError(
        f"labels must have one entry per example ({len(source)}); got shape {labels.shape}"
      )
    classes, counts = np.unique(labels, return_counts=True)
    short = [(int(c), int(n)) for c, n in zip(classes, counts) if n < k]
    if short:
      listed = ", ".join(f"class {c} has {n}" for c, n in short)
      raise ValueError(
        f"few-shot k={k} is larger than the number of examples of some classes "
        f"({listed}); use k <= {int(counts.min())}"
      )
    rng = np.random.default_rng([int(seed), 0xF5])
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:k] for c in classes]
    self.indices = np.sort(np.concatenate(chosen))
    self._source = source
    self.k = int(k)

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, index):
    return self._source[int(self.indices[int(index)])]
