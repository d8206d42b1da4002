"""``cluttered_digits``: real handwritten digits on cluttered canvases, offline.

A tfds builder whose examples are rendered from the 1797 handwritten digits
that ship with scikit-learn (``sklearn.datasets.load_digits``), so the dataset
is made with no network. Each example has the image, the label, the digit's
pixel mask and tight box, and the index of its source digit. Train and test
are split by *source digit*: a seeded partition of the 1797 digits,
stratified by label, so no handwritten digit (nor a fragment of one) appears
in both splits.

Prepare it through ``jaxsal.data.load_source``, which adds a file lock; the
builder itself is plain tfds and writes array_record files, so it is read
with ``builder.as_data_source()`` and never needs TensorFlow.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import importlib.util
import os
import pathlib
import shlex
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from jaxsal.data import _render

NAME = "cluttered_digits"
SPLITS = ("train", "test")
CLASS_NAMES = tuple(str(i) for i in range(10))
_NUM_SOURCES = 1797
# Fragments of 2..4 other digits per example.
_CLUTTER_COUNT = (2, 4)
# Stream tags so the partition, the per-cycle orders and the examples draw
# from independent generators for the same seed.
_PARTITION, _ORDER, _EXAMPLE = 0, 1, 2
# Examples are rendered in chunks of this many (part of the data's definition:
# changing it changes the examples).
_CHUNK = 256


@dataclasses.dataclass(eq=False)
class ClutteredDigitsConfig(tfds.core.BuilderConfig):
  """Parameters of one ``cluttered_digits`` variant.

  The config's ``name`` names its directory in the data dir: a custom config
  needs a name of its own (``load_source`` refuses to read data prepared with
  the same name but different parameters).

  Attributes:
    canvas_size: side of the square canvas, in pixels (at least 8).
    num_train: number of training examples.
    num_test: number of test examples.
    seed: seeds the source partition, the source order and every example.
    test_fraction: fraction of each class's source digits held out for test,
      in (0, 1).

  Example:
    >>> cfg = ClutteredDigitsConfig(name="tiny", canvas_size=24, num_train=64,
    ...                             num_test=32)
  """

  canvas_size: int = 64
  num_train: int = 20000
  num_test: int = 4000
  seed: int = 0
  test_fraction: float = 0.2

  def __post_init__(self):
    for field in ("canvas_size", "num_train", "num_test"):
      value = getattr(self, field)
      if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"ClutteredDigitsConfig.{field} must be a positive integer; got {value!r}")
    if self.canvas_size < _render.SOURCE_SIZE:
      raise ValueError(
        f"ClutteredDigitsConfig.canvas_size must be at least {_render.SOURCE_SIZE}; "
        f"got {self.canvas_size}"
      )
    if not isinstance(self.seed, (int, np.integer)) or not 0 <= self.seed < 2**32:
      raise ValueError(
        f"ClutteredDigitsConfig.seed must be an int in [0, 2**32); got {self.seed!r}"
      )
    if not 0.0 < self.test_fraction < 1.0:
      raise ValueError(
        f"ClutteredDigitsConfig.test_fraction must be in (0, 1); got {self.test_fraction!r}"
      )

  def parameters(self) -> dict[str, Any]:
    """The parameters that determine the data, as a JSON-able dict."""
    return {
      "canvas_size": int(self.canvas_size),
      "num_train": int(self.num_train),
      "num_test": int(self.num_test),
      "seed": int(self.seed),
      "test_fraction": float(self.test_fraction),
    }


def _read_digits_file() -> np.ndarray | None:
  """The rows of scikit-learn's ``digits.csv.gz`` (64 pixels, then the label).

  This is the file ``load_digits`` parses; reading it directly skips importing
  scikit-learn, which takes seconds. None if the file is not where expected.
  """
  spec = importlib.util.find_spec("sklearn")
  if spec is None or not spec.origin:
    return None
  path = pathlib.Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
  if not path.is_file():
    return None
  with gzip.open(path, "rt") as f:
    return np.loadtxt(f, delimiter=",", dtype=np.float32)


@functools.lru_cache(maxsize=1)
def source_digits() -> tuple[np.ndarray, np.ndarray]:
  """Returns scikit-learn's handwritten digits, as ``load_digits()`` gives them.

  Returns:
    ``(images, labels)``: float32 ``[1797, 8, 8]`` with values 0..16, and
    int64 ``[1797]`` labels 0..9. Read-only arrays, cached.

  Example:
    >>> images, labels = source_digits()
    >>> images.shape, int(labels[0])
    ((1797, 8, 8), 0)
  """
  rows = _read_digits_file()
  if rows is not None and rows.shape == (_NUM_SOURCES, 65):
    images, labels = rows[:, :64].reshape(-1, 8, 8), rows[:, 64].astype(np.int64)
  else:  # Another scikit-learn layout: take the public, slower road.
    from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top

    digits = load_digits()
    images, labels = digits.images.astype(np.float32), digits.target.astype(np.int64)
  images.setflags(write=False)
  labels.setflags(write=False)
  return images, labels


def partition_sources(seed: int, test_fraction: float) -> dict[str, np.ndarray]:
  """Splits the source digits into train and test, stratified by label.

  For each class, ``round(test_fraction * count)`` of its digits, chosen by a
  generator seeded with ``seed``, go to test and the rest to train.

  Args:
    seed: the config's seed.
    test_fraction: fraction of each class held out, in (0, 1).

  Returns:
    ``{'train': idx, 'test': idx}``: sorted, disjoint int64 index arrays into
    ``source_digits()`` whose union is every source digit.

  Example:
    >>> parts = partition_sources(0, 0.2)
    >>> len(parts["train"]) + len(parts["test"])
    1797
  """
  _, labels = source_digits()
  rng = np.random.default_rng([seed, _PARTITION])
  train, test = [], []
  for c in range(len(CLASS_NAMES)):
    members = rng.permutation(np.flatnonzero(labels == c))
    n_test = int(round(test_fraction * len(members)))
    n_test = min(max(n_test, 1), len(members) - 1)  # Both splits see every class.
    test.append(members[:n_test])
    train.append(members[n_test:])
  return {"train": np.sort(np.concatenate(train)), "test": np.sort(np.concatenate(test))}


def _distinct_others(rng: np.random.Generator, slots: np.ndarray, n: int, k: int) -> np.ndarray:
  """``[B, k]`` distinct slots in ``range(n)`` per row, none equal to that row's slot."""
  k = min(k, n - 1)
  draws = rng.integers(0, n - 1, size=(len(slots), 4 * k))
  out = np.empty((len(slots), k), np.int64)
  for row, cand in enumerate(draws.tolist()):
    picked = list(dict.fromkeys(cand))[:k]
    if len(picked) < k:  # Rare: too many repeats among the draws.
      rest = np.setdiff1d(np.arange(n - 1), picked)
      picked += rng.choice(rest, size=k - len(picked), replace=False).tolist()
    out[row] = picked
  return out + (out >= slots[:, None])  # Skip each row's own slot.


def generate_split(config: ClutteredDigitsConfig, split: str) -> Iterator[dict[str, Any]]:
  """Yields the examples of one split, in order.

  Example ``i`` takes its digit from the split's sources in cycles: within
  each cycle every source appears once, in an order drawn afresh per cycle.
  Examples are rendered in fixed chunks of ``_CHUNK``, each from a generator
  seeded with ``(seed, split, chunk)``, so example ``i`` is a pure function of
  the config, the split and ``i``. Fragments are cut from 2-4 other sources
  of the same split.

  Args:
    config: the variant.
    split: ``'train'`` or ``'test'``.

  Yields:
    dicts with ``image`` uint8 ``[S, S, 1]``, ``label`` int64, ``box`` int32
    ``[4]``, ``mask`` uint8 ``[S, S]``, ``source_index`` int32.

  Raises:
    ValueError: an unknown split.

  Example:
    >>> cfg = ClutteredDigitsConfig(name="tiny", canvas_size=24, num_train=4, num_test=4)
    >>> examples = list(generate_split(cfg, "test"))
    >>> [int(ex["label"]) for ex in examples], examples[0]["image"].shape
    ([3, 8, 1, 5], (24, 24, 1))
  """
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r} of {NAME}; known splits: {', '.join(SPLITS)}")
  images, labels = source_digits()
  split_id = SPLITS.index(split)
  sources = partition_sources(config.seed, config.test_fraction)[split]
  n = len(sources)
  count = config.num_train if split == "train" else config.num_test
  index = np.arange(count)
  cycle, pos = np.divmod(index, n)
  slots = np.empty(count, np.int64)
  for c in np.unique(cycle):
    in_cycle = cycle == c
    order = np.random.default_rng([config.seed, _ORDER, split_id, int(c)]).permutation(n)
    slots[in_cycle] = order[pos[in_cycle]]
  lo, hi = _CLUTTER_COUNT
  for start in range(0, count, _CHUNK):
    chunk = slots[start : start + _CHUNK]
    rng = np.random.default_rng([config.seed, _EXAMPLE, split_id, start // _CHUNK])
    num_clutter = rng.integers(lo, hi + 1, size=len(chunk))
    others = _distinct_others(rng, chunk, n, hi)
    num_clutter = np.minimum(num_clutter, others.shape[1])
    src = sources[chunk]
    out = _render.render_cluttered_digits(
      rng,
      images[src],
      images[sources[others]],
      num_clutter=num_clutter,
      canvas_size=config.canvas_size,
    )
    for j, s in enumerate(src.tolist()):
      yield {
        "image": out.image[j],
        "label": int(labels[s]),
        "box": out.box[j],
        "mask": out.mask[j],
        "source_index": np.int32(s),
      }


def reprepare_advice(config: ClutteredDigitsConfig, data_dir: str) -> str:
  """How to prepare a damaged ``cluttered_digits`` variant again, as the end of an error message.

  Example:
    >>> small = ClutteredDigits.builder_configs["small"]
    >>> print(reprepare_advice(small, "/data"))  # doctest: +NORMALIZE_WHITESPACE
    Prepare it again: delete /data/cluttered_digits/small and run jaxsal prepare-data
    --dataset cluttered_digits --config small --data-dir /data (or rerun the command:
    a dataset that is not prepared is prepared on first use)
  """
  folder = os.path.join(data_dir, NAME, config.name)
  if any(config is c for c in ClutteredDigits.BUILDER_CONFIGS):
    how = f"jaxsal prepare-data --dataset {NAME} --config {config.name} --data-dir {shlex.quote(data_dir)}"
  else:
    how = f"jaxsal.data.load_source({NAME!r}, ..., config=<the same ClutteredDigitsConfig>)"
  return (
    f"Prepare it again: delete {folder} and run {how} (or rerun the command: a dataset that "
    "is not prepared is prepared on first use)"
  )


class ClutteredDigits(tfds.core.GeneratorBasedBuilder):
  """Handwritten digits (scikit-learn) on cluttered canvases, with masks and boxes.

  Example:
    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> tiny = ClutteredDigitsConfig(name="tiny", canvas_size=16, num_train=8, num_test=4)
    >>> b = ClutteredDigits(config=tiny, data_dir=tmp.name, file_format="array_record")
    >>> b.download_and_prepare()  # doctest: +ELLIPSIS
    Downloading and preparing dataset ...
    Dataset cluttered_digits downloaded and prepared to .... Subsequent calls will reuse this data.
    >>> b.as_data_source()["train"][0]["image"].shape
    (16, 16, 1)
    >>> tmp.cleanup()
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
    ClutteredDigitsConfig(
      name="default",
      description="64x64 canvases, 20000 train / 4000 test.",
      canvas_size=64,
      num_train=20000,
      num_test=4000,
    ),
    ClutteredDigitsConfig(
      name="small",
      description="32x32 canvases, 2000 train / 500 test (tests, demos).",
      canvas_size=32,
      num_train=2000,
      num_test=500,
    ),
  ]
  DEFAULT_CONFIG_NAME = "default"
  # tfds finds a builder's source through importlib resources, which for an
  # editable install needs the `importlib_resources` backport that jaxsal does
  # not depend on. The path only serves to look for a checksums file beside
  # the module (there is none: nothing is downloaded), so give it directly.
  code_path = epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    s = cfg.canvas_size
    return tfds.core.DatasetInfo(
      builder=self,
      description=(
        "Handwritten digits from scikit-learn's load_digits, upscaled and placed "
        "on cluttered canvases (smooth texture, fragments of other digits, noise), "
        "with pixel masks and tight boxes. Train and test use disjoint source digits."
      ),
      # Raw bytes, not tf.Example int64 lists (which tfds fills element by
      # element, 8x slower to write); the sparse mask compresses ~40x.
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Tensor(shape=(s, s, 1), dtype=np.uint8, encoding="bytes"),
          "label": tfds.features.ClassLabel(names=list(CLASS_NAMES)),
          "box": tfds.features.Tensor(shape=(4,), dtype=np.int32),
          "mask": tfds.features.Tensor(shape=(s, s), dtype=np.uint8, encoding="zlib"),
          "source_index": tfds.features.Scalar(dtype=np.int32),
        }
      ),
      supervised_keys=("image", "label"),
      # Stored order = generation order; pipelines shuffle when they read.
      disable_shuffling=True,
      homepage="https://scikit-learn.org/stable/modules/generated/sklearn.datasets.load_digits.html",
      metadata=tfds.core.MetadataDict(cfg.parameters()),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Everything comes from scikit-learn.
    return {split: self._generate_examples(split) for split in SPLITS}

  def _generate_examples(self, split: str):
    yield from enumerate(generate_split(self.builder_config, split))
