"""Random-access sources and grain batch pipelines.

``load_source`` returns a tfds random-access source (array_record, read
without TensorFlow) for a split of a known dataset, preparing the offline
``cluttered_digits`` on first use under a file lock. ``make_batches`` turns a
source into a resumable, host-sharded stream of numpy batches with grain.

The order of examples is a pure function of ``seed``: element ``j`` of the
global stream is element ``j mod N`` of epoch ``j // N``'s permutation, global
batch ``k`` is elements ``[k*B, (k+1)*B)``, and host ``p`` of ``P`` reads the
``p``-th contiguous ``B/P`` of it. So the global batches do not depend on the
number of hosts, and starting at step ``k`` reads exactly what a fresh stream
would from its ``k``-th batch.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import grain
import numpy as np
import tensorflow_datasets as tfds

from jaxsal import _checks
from jaxsal.data import _integrity
from jaxsal.data import cluttered_digits as _cd

try:
  import fcntl
except ImportError:  # Not POSIX: preparation is not guarded against concurrency.
  fcntl = None

# Where datasets live unless a call names a data_dir (read once, at import).
DEFAULT_DATA_DIR = os.path.expanduser(
  os.environ.get("JAXSAL_DATA_DIR", os.path.join("~", ".cache", "jaxsal", "tensorflow_datasets"))
)


class _Dataset(NamedTuple):
  splits: tuple[str, ...]
  num_classes: int
  prepared_here: bool  # Whether jaxsal can prepare it (offline, without TF).


DATASETS: dict[str, _Dataset] = {
  _cd.NAME: _Dataset(splits=_cd.SPLITS, num_classes=10, prepared_here=True),
  "imagenet2012": _Dataset(splits=("train", "validation"), num_classes=1000, prepared_here=False),
}

_IMAGENET_HELP = (
  "imagenet2012 needs a manual download and is prepared outside jaxsal (tfds's "
  "ImageNet builder needs TensorFlow, which jaxsal never imports): in an environment "
  "with tensorflow and tensorflow-datasets, put ILSVRC2012_img_train.tar and "
  "ILSVRC2012_img_val.tar in <manual_dir> and run\n"
  "  tfds build imagenet2012 --data_dir={data_dir} --manual_dir=<manual_dir> "
  "--file_format=array_record\n"
  "then point data_dir (or $JAXSAL_DATA_DIR) at that data_dir."
)


def _check_name(name: str) -> _Dataset:
  if name not in DATASETS:
    raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
  return DATASETS[name]


def _check_split(name: str, split: str, splits: tuple[str, ...]) -> None:
  """Accepts tfds split expressions ('train', 'train[:10%]', 'train+test')."""
  if not isinstance(split, str) or not split:
    raise ValueError(f"split must be a non-empty string; got {split!r}")
  for part in split.split("+"):
    base = re.sub(r"\[.*\]$", "", part.strip())
    if base not in splits:
      raise ValueError(
        f"unknown split {base!r} of dataset {name!r}; known splits: {', '.join(splits)}"
      )


def _resolve_config(config: Any) -> _cd.ClutteredDigitsConfig:
  configs = {c.name: c for c in _cd.ClutteredDigits.BUILDER_CONFIGS}
  if config is None:
    return configs[_cd.ClutteredDigits.DEFAULT_CONFIG_NAME]
  if isinstance(config, _cd.ClutteredDigitsConfig):
    return config
  if isinstance(config, str):
    if config not in configs:
      raise ValueError(
        f"unknown config {config!r} of dataset {_cd.NAME!r}; known configs: "
        f"{', '.join(configs)} (or pass a ClutteredDigitsConfig)"
      )
    return configs[config]
  raise TypeError(
    f"config must be None, a config name or a ClutteredDigitsConfig; got {type(config).__name__}"
  )


@contextlib.contextmanager
def _file_lock(path: str):
  """Holds an exclusive ``flock`` on ``path`` (created if needed) for the block."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "a") as f:
    if fcntl is not None:
      fcntl.flock(f.fileno(), fcntl.LOCK_EX)
    try:
      yield
    finally:
      if fcntl is not None:
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def cluttered_digits_builder(
  config: Any = None,
  *,
  data_dir: str | os.PathLike | None = None,
  prepare: bool = True,
) -> _cd.ClutteredDigits:
  """Returns the prepared ``cluttered_digits`` builder for a config.

  Preparation writes to a temporary directory that tfds renames when done,
  so a crash leaves no half-written dataset; an exclusive file lock in the
  data dir makes concurrent callers (hosts sharing a file system, test
  workers) wait for one preparation instead of racing.

  Args:
    config: None (``'default'``), a config name (``'default'``, ``'small'``)
      or a ``ClutteredDigitsConfig``.
    data_dir: the tfds data dir; ``DEFAULT_DATA_DIR`` if None.
    prepare: prepare the data if it is absent; if False, raise instead.

  Returns:
    A ``ClutteredDigits`` builder whose data is prepared in ``data_dir``.

  Raises:
    ValueError: an unknown config name, or data prepared under this config's
      name with different parameters.
    FileNotFoundError: the data is absent and ``prepare`` is False.
    jaxsal.data.DatasetError: ``data_dir`` is a file or cannot be read, the
      data must be prepared but ``data_dir`` cannot be written, or the
      prepared data's metadata cannot be read (the message says how to
      prepare it again).

  Example:
    >>> import tempfile
    >>> from jaxsal.data import ClutteredDigitsConfig, cluttered_digits_builder
    >>> tmp = tempfile.TemporaryDirectory()  # or None: DEFAULT_DATA_DIR
    >>> tiny = ClutteredDigitsConfig(name="tiny", canvas_size=16, num_train=8, num_test=4)
    >>> b = cluttered_digits_builder(tiny, data_dir=tmp.name)  # doctest: +ELLIPSIS
    Downloading and preparing dataset ...
    Dataset cluttered_digits downloaded and prepared to .... Subsequent calls will reuse this data.
    >>> len(b.as_data_source("test"))
    4
    >>> tmp.cleanup()
  """
  cfg = _resolve_config(config)
  data_dir = os.path.expanduser(os.fspath(data_dir or DEFAULT_DATA_DIR))

  # A built-in config goes by name: tfds rebuilds builders from their
  # arguments when unpickled (grain workers), and refuses a config *object*
  # that shares a built-in config's name.
  builtin = any(cfg is c for c in _cd.ClutteredDigits.BUILDER_CONFIGS)

  def make():
    return _cd.ClutteredDigits(
      config=cfg.name if builtin else cfg, data_dir=data_dir, file_format="array_record"
    )

  what = f"{_cd.NAME}/{cfg.name}"
  folder = os.path.join(data_dir, _cd.NAME, cfg.name, str(_cd.ClutteredDigits.VERSION))
  _integrity.check_data_dir(data_dir, folder)
  try:
    builder = make()
    if not builder.is_prepared():
      if not prepare:
        raise FileNotFoundError(
          f"{what} is not prepared in {data_dir}; call "
          "load_source(..., prepare=True) to generate it (offline, seconds to a minute)"
        )
      lock = os.path.join(data_dir, _cd.NAME, f".{cfg.name}-{builder.version}.lock")
      try:
        with _file_lock(lock):
          builder = make()  # Another process may have prepared it while we waited.
          if not builder.is_prepared():
            builder.download_and_prepare()
            builder = make()
      except OSError as e:
        if _integrity.denied(e):
          raise _integrity.not_writable(what, data_dir, e) from None
        raise
    stored = dict(builder.info.metadata or {})
  except (FileNotFoundError, _integrity.DatasetError):
    raise
  except Exception as e:  # tfds could not read the prepared dataset's own files
    if not os.path.isdir(folder):
      raise
    _integrity.check_readable(folder, what)
    raise _integrity.damaged(
      what,
      folder,
      f"its metadata cannot be read ({_integrity.reason(e)})",
      _cd.reprepare_advice(cfg, data_dir),
    ) from e
  if stored and stored != cfg.parameters():
    raise ValueError(
      f"{_cd.NAME}/{cfg.name} in {data_dir} was prepared with parameters {stored}, "
      f"not {cfg.parameters()}; give the config another name or use another data_dir"
    )
  return builder


def load_source(
  name: str,
  split: str,
  *,
  config: Any = None,
  data_dir: str | os.PathLike | None = None,
  prepare: bool = True,
) -> Any:
  """Returns a random-access source of one split of a known dataset.

  Args:
    name: a key of ``DATASETS``: ``'cluttered_digits'`` or ``'imagenet2012'``.
    split: a split name or tfds split expression (``'train'``,
      ``'test[:10%]'``); cluttered_digits has train/test, imagenet2012
      train/validation.
    config: for cluttered_digits, None (``'default'``), ``'small'``,
      ``'default'`` or a ``ClutteredDigitsConfig``; for tfds datasets, an
      optional tfds config name.
    data_dir: the tfds data dir; ``DEFAULT_DATA_DIR`` (``$JAXSAL_DATA_DIR``
      or ``~/.cache/jaxsal/tensorflow_datasets``) if None.
    prepare: prepare cluttered_digits if absent (ignored for imagenet2012,
      which is prepared outside jaxsal).

  Returns:
    A tfds array_record data source (wrapped so that a damaged file is a
    clear error): ``len(source)`` and ``source[i]``, a dict of numpy arrays
    (cluttered_digits: ``image`` uint8 ``[S, S, 1]``, ``label``, ``box``
    int32 ``[4]``, ``mask`` uint8 ``[S, S]``, ``source_index``).

  Raises:
    ValueError: an unknown dataset, split or config.
    FileNotFoundError: the data is not prepared (and cannot or may not be).
    jaxsal.data.DatasetError: the data folder or a file of the prepared data
      cannot be read, or a file is missing, truncated or corrupt (each file is
      opened here; reading a damaged example later raises it too). The
      message names the dataset, the folder and the file, and says how to
      prepare the data again.

  Example:
    >>> import tempfile
    >>> from jaxsal.data import ClutteredDigitsConfig, load_source
    >>> tmp = tempfile.TemporaryDirectory()  # or None: DEFAULT_DATA_DIR
    >>> tiny = ClutteredDigitsConfig(name="tiny", canvas_size=16, num_train=8, num_test=4)
    >>> src = load_source("cluttered_digits", "train", config=tiny,
    ...                   data_dir=tmp.name)  # doctest: +ELLIPSIS
    Downloading and preparing dataset ...
    Dataset cluttered_digits downloaded and prepared to .... Subsequent calls will reuse this data.
    >>> len(src), src[0]["image"].shape
    (8, (16, 16, 1))
    >>> tmp.cleanup()
  """
  spec = _check_name(name)
  _check_split(name, split, spec.splits)
  data_dir = os.path.expanduser(os.fspath(data_dir or DEFAULT_DATA_DIR))
  if name == _cd.NAME:
    builder = cluttered_digits_builder(config, data_dir=data_dir, prepare=prepare)
    return _integrity.open_checked(
      builder.as_data_source(split=split),
      f"{_cd.NAME}/{builder.builder_config.name}",
      os.fspath(builder.data_dir),
      _cd.reprepare_advice(builder.builder_config, data_dir),
    )
  full_name = name if config is None else f"{name}/{config}"
  builder = tfds.builder(full_name, data_dir=data_dir)
  if not builder.is_prepared():
    raise FileNotFoundError(
      f"{full_name} is not prepared in {data_dir}. " + _IMAGENET_HELP.format(data_dir=data_dir)
    )
  file_format = builder.info.file_format
  if file_format is None or file_format.value not in ("array_record", "parquet"):
    raise FileNotFoundError(
      f"{full_name} in {data_dir} is stored as {file_format}, which has no random access; "
      "rebuild it with --file_format=array_record. " + _IMAGENET_HELP.format(data_dir=data_dir)
    )
  folder = os.fspath(builder.data_dir)
  advice = f"Delete {folder} and build it again. " + _IMAGENET_HELP.format(data_dir=data_dir)
  source = tfds.data_source(full_name, split=split, data_dir=data_dir, download=False)
  return _integrity.open_checked(source, full_name, folder, advice)


def dataset_info(
  name: str, config: Any = None, *, data_dir: str | os.PathLike | None = None
) -> dict[str, Any]:
  """Returns what a model needs to know about a dataset, without preparing it.

  Args:
    name: a key of ``DATASETS``.
    config: as in ``load_source``.
    data_dir: only used to look up tfds metadata; nothing is written.

  Returns:
    A dict with ``name``, ``num_classes``, ``image_shape`` (``(H, W, C)``,
    ``None`` for variable sizes), ``class_names`` (a tuple of str) and
    ``splits`` (split name -> number of examples, None if unknown).

  Raises:
    ValueError: an unknown dataset or config.

  Example:
    >>> info = dataset_info("cluttered_digits", "small")
    >>> info["num_classes"], info["image_shape"], info["class_names"][:2]
    (10, (32, 32, 1), ('0', '1'))
  """
  spec = _check_name(name)
  if name == _cd.NAME:
    cfg = _resolve_config(config)
    s = cfg.canvas_size
    return {
      "name": name,
      "num_classes": spec.num_classes,
      "image_shape": (s, s, 1),
      "class_names": _cd.CLASS_NAMES,
      "splits": {"train": cfg.num_train, "test": cfg.num_test},
    }
  full_name = name if config is None else f"{name}/{config}"
  data_dir = os.path.expanduser(os.fspath(data_dir or DEFAULT_DATA_DIR))
  info = tfds.builder(full_name, data_dir=data_dir).info
  splits = {s: (info.splits[s].num_examples if s in info.splits else None) for s in spec.splits}
  return {
    "name": name,
    "num_classes": info.features["label"].num_classes,
    "image_shape": tuple(info.features["image"].shape),
    "class_names": tuple(info.features["label"].names),
    "splits": splits,
  }


def _to_model_input(batch: dict[str, Any]) -> dict[str, Any]:
  """Batched example -> model input: float32 images (uint8 scaled to [0, 1]), int32 ints."""
  out = dict(batch)
  image = np.asarray(batch["image"])
  if image.dtype == np.uint8:
    out["image"] = image.astype(np.float32) * np.float32(1.0 / 255.0)
  else:
    out["image"] = image.astype(np.float32, copy=False)
  for key, value in batch.items():
    # tfds returns scalar features as Python ints, which batch to int64; JAX
    # (without x64) works in int32, and so do the stored features.
    if key != "image" and isinstance(value, np.ndarray) and value.dtype == np.int64:
      out[key] = value.astype(np.int32)
  if "label" in out:
    out["label"] = np.asarray(out["label"]).astype(np.int32, copy=False)
  return out


def _ensure_flags_parsed() -> None:
  """grain's worker processes read absl flags; outside ``absl.app.run`` nobody
  parsed them, so take the defaults (``absl.app.run`` would parse them again)."""
  from absl import flags  # pylint: disable=g-import-not-at-top

  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def _check_int(value: Any, name: str, low: int, high: int | None = None) -> None:
  ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
  if not ok or value < low or (high is not None and value >= high):
    want = f">= {low}" if high is None else f"in [{low}, {high})"
    raise ValueError(f"{name} must be an integer {want}; got {value!r}")


def make_batches(
  source: Any,
  *,
  batch_size: int,
  seed: int,
  shuffle: bool = True,
  num_epochs: int | None = None,
  drop_remainder: bool = True,
  start_step: int = 0,
  process_index: int | None = None,
  process_count: int | None = None,
  preprocess: Callable[..., dict[str, Any]] | None = None,
  worker_count: int = 0,
) -> Iterator[dict[str, np.ndarray]]:
  """Iterates over this host's share of the global batches of a source.

  The global stream is the source repeated ``num_epochs`` times (forever if
  None), each epoch in its own permutation when ``shuffle`` (grain's
  ``shuffle`` before ``repeat``: epoch ``e`` uses seed ``seed + e``). Global
  batch ``k`` is stream elements ``[k*batch_size, (k+1)*batch_size)``; this
  host yields its contiguous ``batch_size // process_count`` of it, the
  ``process_index``-th. Hence the concatenation of every host's batch ``k`` is
  global batch ``k`` whatever the number of hosts, and ``start_step=k``
  yields exactly batches ``k, k+1, ...`` of a fresh iterator (resumable by
  step, with no iterator state to checkpoint).

  Args:
    source: a random-access source (``len`` and ``__getitem__``), e.g. from
      ``load_source``, yielding dicts with at least ``'image'``.
    batch_size: the GLOBAL batch size, divisible by ``process_count``.
    seed: int in [0, 2**32); seeds the permutations and a random ``preprocess``.
    shuffle: permute each epoch; False reads in source order.
    num_epochs: epochs to read; None repeats forever.
    drop_remainder: drop a final partial global batch. If False, the last
      global batch may be short, and with several hosts some hosts get a
      short last batch or none (pad and mask if every host must step).
    start_step: the first global batch to yield.
    process_index: this host's index; ``jax.process_index()`` if None.
    process_count: number of hosts; ``jax.process_count()`` if None.
    preprocess: optional per-example transform applied before batching:
      ``f(example) -> example``, or a ``grain.transforms.RandomMap`` whose
      ``random_map(example, rng)`` gets a generator that depends only on
      ``seed`` and the example's stream position (so it is resumable too).
      A uint8 ``'image'`` it returns is still scaled to [0, 1].
    worker_count: grain worker processes; 0 reads in this process (threads).

  Returns:
    An iterator of dicts of numpy arrays with leading axis
    ``b = batch_size // process_count``: ``'image'`` float32 ``[b, H, W, C]``
    (uint8 sources scaled to [0, 1]), ``'label'`` int32 ``[b]``, and the
    source's other features (``box``, ``mask``, ``source_index``) as stored,
    except that int64 arrays (what scalar features batch to) become int32.

  Raises:
    ValueError: a bad argument, e.g. ``batch_size`` not divisible by
      ``process_count`` or an empty source.

  Example:
    >>> import numpy as np
    >>> from jaxsal.data import make_batches
    >>> # Any random-access source works, e.g. load_source("cluttered_digits", "train").
    >>> src = [{"image": np.full((8, 8, 1), i, np.uint8), "label": i} for i in range(10)]
    >>> batch = next(make_batches(src, batch_size=4, seed=0))
    >>> batch["image"].shape, batch["image"].dtype, batch["label"].dtype
    ((4, 8, 8, 1), dtype('float32'), dtype('int32'))
  """
  _checks.check_positive_int(batch_size, "batch_size")
  _check_int(seed, "seed", 0, 2**32)
  _check_int(start_step, "start_step", 0)
  _check_int(worker_count, "worker_count", 0)
  if num_epochs is not None:
    _checks.check_positive_int(num_epochs, "num_epochs")
  if process_count is None or process_index is None:
    import jax  # pylint: disable=g-import-not-at-top

    process_count = jax.process_count() if process_count is None else process_count
    process_index = jax.process_index() if process_index is None else process_index
  _checks.check_positive_int(process_count, "process_count")
  _check_int(process_index, "process_index", 0, process_count)
  if batch_size % process_count:
    raise ValueError(
      f"batch_size={batch_size} is the global batch and must be divisible by "
      f"process_count={process_count}; got remainder {batch_size % process_count}"
    )
  num_examples = len(source)
  if num_examples == 0:
    raise ValueError("source is empty")
  per_host = batch_size // process_count

  ds = grain.MapDataset.source(source)
  if shuffle:
    ds = ds.shuffle(seed=seed)  # Before repeat: a new permutation per epoch.
  if num_epochs != 1:
    ds = ds.repeat(num_epochs)
  if preprocess is not None:
    if isinstance(preprocess, grain.transforms.RandomMap):
      ds = ds.random_map(preprocess, seed=seed)
    else:
      ds = ds.map(preprocess)
  ds = ds.batch(per_host, drop_remainder=drop_remainder)
  # Micro-batch m belongs to global batch m // P and host m % P.
  total = len(ds) if num_epochs is not None else None
  if total is not None and drop_remainder:
    total -= total % process_count  # Only whole global batches.
  ds = ds[process_index + start_step * process_count : total : process_count]
  ds = ds.map(_to_model_input)
  if worker_count > 0:
    _ensure_flags_parsed()
    it = ds.to_iter_dataset().mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
  else:
    # A few batches ahead: the default buffer (500 elements) would hold 500 batches.
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=4, prefetch_buffer_size=4))
  return iter(it)


def eval_batches(
  source: Any,
  *,
  batch_size: int,
  preprocess: Callable | None = None,
  num_examples: int | None = None,
  process_index: int | None = None,
  process_count: int | None = None,
) -> Iterator[dict[str, Any]]:
  """Every example of ``source`` once, in order, as this process's share of equal global batches.

  Global batch ``k`` holds examples ``k * batch_size ..`` in order; process
  ``p`` reads only its contiguous ``batch_size // process_count`` of them. The
  last global batch is padded: every process yields the same number of
  batches of the same shape (so all of them take part in every compiled
  call, even one whose share is all padding), and ``'valid'`` (float32,
  1 for a real example, 0 for padding) says which rows count. Concatenated
  over processes, batch ``k`` is what one process would yield.

  Args:
    source: a random-access source of examples (dicts with ``'image'``, ...).
    batch_size: the GLOBAL batch size, divisible by ``process_count``.
    preprocess: a per-example transform applied before batching, or None.
    num_examples: the first ``num_examples`` of ``source``; all if None.
    process_index, process_count: this process and how many there are;
      ``jax.process_index()`` and ``jax.process_count()`` if None.

  Yields:
    Dicts like ``make_batches``' (uint8 images scaled to float32 in [0, 1],
    int32 labels) of ``batch_size // process_count`` rows, plus ``'valid'``.

  Raises:
    ValueError: a batch size not divisible by ``process_count``, or no example.

  Example:
    >>> import numpy as np
    >>> src = [{"image": np.full((2, 2, 1), i, np.uint8), "label": i} for i in range(5)]
    >>> [b["label"].tolist() for b in eval_batches(src, batch_size=4, process_index=1,
    ...                                            process_count=2)]
    [[2, 3], [0, 0]]
    >>> [b["valid"].tolist() for b in eval_batches(src, batch_size=4, process_index=0,
    ...                                            process_count=2)]
    [[1.0, 1.0], [1.0, 0.0]]
  """
  _checks.check_positive_int(batch_size, "batch_size")
  if process_count is None or process_index is None:
    import jax  # pylint: disable=g-import-not-at-top

    process_count = jax.process_count() if process_count is None else process_count
    process_index = jax.process_index() if process_index is None else process_index
  _checks.check_positive_int(process_count, "process_count")
  _check_int(process_index, "process_index", 0, process_count)
  if batch_size % process_count:
    raise ValueError(
      f"batch_size={batch_size} is the global batch and must be divisible by "
      f"process_count={process_count}; got remainder {batch_size % process_count}"
    )
  n = len(source) if num_examples is None else min(int(num_examples), len(source))
  if n <= 0:
    raise ValueError(
      f"no example to evaluate: the source holds {len(source)}, asked {num_examples}"
    )
  per_host = batch_size // process_count

  def example(i):
    ex = source[i]
    return preprocess(ex) if preprocess is not None else ex

  template = None
  for k in range(-(-n // batch_size)):
    lo = k * batch_size + process_index * per_host
    rows = [example(i) for i in range(lo, min(lo + per_host, n))]
    if template is None:
      # A process whose share is all padding still needs the shapes.
      template = rows[0] if rows else example(0)
    valid = np.zeros(per_host, np.float32)
    valid[: len(rows)] = 1.0
    pad = per_host - len(rows)
    if pad:
      blank = {
        key: type(v)() if isinstance(v, (str, bytes)) else np.zeros_like(np.asarray(v))
        for key, v in template.items()
      }
      rows += [blank] * pad
    batch = {key: np.stack([np.asarray(r[key]) for r in rows]) for key in rows[0]}
    out = _to_model_input(batch)
    out["valid"] = valid
    yield out
