"""A prepared dataset's folder and files, checked when opened and guarded when read.

Left alone, a truncated or corrupt array_record file is found only when an
example is read, deep inside tfds or array_record: a ``RuntimeError`` about a
Riegeli block, a record of ``None`` that tfds cannot decode, or no error at
all until training reads that example. An unreadable folder looks like a
dataset that is not prepared, and a data dir that is a file fails inside
``os.makedirs``. Here each becomes a ``DatasetError`` (a ``ValueError``, so
the CLI prints it as ``jaxsal: error: ...``) that names the dataset, its
folder and the file, and says how to prepare it again.

When a source is opened, each of its shard files is opened (its footer read,
its record count compared with the one tfds recorded, its first and last
records read): milliseconds per file, and only for datasets of at most
``MAX_SHARDS_OPENED`` files (ImageNet's thousand files are only checked to
exist). A corruption in the middle of a file (a flipped byte) is found when
that example is read, by ``GuardedSource``, with the same message.
"""

from __future__ import annotations

import collections.abc
import errno
import operator
import os
from typing import Any

# Datasets with more shard files than this are not opened file by file when
# a source is opened (only checked to exist); their reads are still guarded.
MAX_SHARDS_OPENED = 64

# Errors of a file system that refuses access (the folder's or file's
# permissions, or a file system mounted read-only).
_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)


class DatasetError(ValueError):
  """A dataset folder or a prepared dataset cannot be used: unreadable, missing a file, or damaged."""


def check_data_dir(data_dir: str, folder: str) -> None:
  """Checks that ``data_dir`` is a folder and that ``folder`` (a dataset inside it) can be read.

  Each existing folder from ``data_dir`` down to ``folder`` is listed; the
  first that cannot be is named. A missing one ends the check (the dataset
  is not prepared yet).

  Raises:
    DatasetError: ``data_dir`` (or a folder on the way) is a file, or cannot
      be read.
  """
  path = data_dir
  parts = os.path.relpath(folder, data_dir).split(os.sep)
  for part in [""] + [p for p in parts if p not in ("", ".")]:
    path = os.path.join(path, part) if part else path
    try:
      os.listdir(path)
    except FileNotFoundError:
      return
    except NotADirectoryError:
      raise DatasetError(
        f"data_dir {data_dir!r} is not a folder: {path!r} is a file; give a folder for the "
        "datasets (dataset.data_dir, --data-dir or $JAXSAL_DATA_DIR)"
      ) from None
    except PermissionError as e:
      raise DatasetError(
        f"data_dir {data_dir!r}: the folder {path!r} cannot be read ({e.strerror}); give this "
        "user read access to it, or use another data_dir (dataset.data_dir, --data-dir or "
        "$JAXSAL_DATA_DIR)"
      ) from None


def check_readable(folder: str, what: str) -> None:
  """Checks that every file in ``folder`` (a prepared dataset) can be opened for reading.

  Raises:
    DatasetError: one cannot (named, with the reason).
  """
  for name in sorted(os.listdir(folder)):
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
      continue
    try:
      with open(path, "rb") as f:
        f.read(1)
    except OSError as e:
      if denied(e):
        raise unreadable(what, folder, name, e) from None


def unreadable(what: str, folder: str, name: str, e: OSError) -> DatasetError:
  """The error for a prepared dataset whose file ``name`` this user may not read."""
  return DatasetError(
    f"the prepared dataset {what} in {folder} cannot be read: {name} ({e.strerror}); "
    "give this user read access to the folder and its files, or use another data_dir"
  )


def denied(e: OSError) -> bool:
  """Whether ``e`` is the file system refusing access (permissions or a read-only mount)."""
  return isinstance(e, PermissionError) or getattr(e, "errno", None) in _DENIED


def not_writable(what: str, data_dir: str, e: OSError) -> DatasetError:
  """The error for a dataset that cannot be prepared because ``data_dir`` is not writable."""
  where = f"{e.filename!r} " if getattr(e, "filename", None) else ""
  return DatasetError(
    f"cannot prepare {what} in data_dir {data_dir!r}: {where}cannot be written "
    f"({e.strerror or e}); give a data_dir this user can write to (dataset.data_dir, "
    "--data-dir or $JAXSAL_DATA_DIR), or prepare it once where it can be written"
  )


def damaged(what: str, folder: str, problem: str, advice: str) -> DatasetError:
  """The error for a prepared dataset that cannot be read as it is."""
  return DatasetError(f"the prepared dataset {what} in {folder} is damaged: {problem}. {advice}")


def reason(e: BaseException) -> str:
  """``e`` as ``Type: the first line of its message`` (cut at 200 characters)."""
  first = str(e).splitlines()[0][:200] if str(e) else ""
  return f"{type(e).__name__}: {first}" if first else type(e).__name__


def _shards(source: Any) -> list[tuple[str, int, int]]:
  """``(file, records tfds recorded in it, records of it the source reads)``, in reading order."""
  from tensorflow_datasets.core.data_sources import base  # pylint: disable=g-import-not-at-top

  return [
    (os.fspath(fi.filename), int(fi.examples_in_shard), int(fi.take))
    for fi in base.file_instructions(source.dataset_info, source.split)
  ]


def check_files(source: Any, what: str, folder: str, advice: str) -> None:
  """Checks the shard files of a tfds array_record ``source`` before anything is read.

  Args:
    source: a tfds data source (``dataset_info`` and ``split``).
    what: the dataset's name for the message (``cluttered_digits/small``).
    folder: the prepared dataset's folder.
    advice: the sentence that says how to prepare it again.

  Raises:
    DatasetError: a file is missing, cannot be read, or is truncated or
      corrupt (its footer unreadable, its record count not the recorded one,
      its first or last record unreadable).
  """
  shards = list(dict.fromkeys((f, n) for f, n, _ in _shards(source)))
  for path, _ in shards:
    name = os.path.basename(path)
    try:
      with open(path, "rb") as f:
        f.read(1)
    except FileNotFoundError:
      raise damaged(what, folder, f"its file {name} is missing", advice) from None
    except OSError as e:
      if denied(e):
        raise unreadable(what, folder, name, e) from None
      raise damaged(what, folder, f"{name} cannot be read ({reason(e)})", advice) from None
  if len(shards) > MAX_SHARDS_OPENED:
    return
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top

  for path, recorded in shards:
    name = os.path.basename(path)
    reader = array_record_module.ArrayRecordReader(path, "readahead_buffer_size:0")
    problem = None
    try:
      if not reader.ok():
        problem = "unreadable"
      elif reader.num_records() != recorded:
        problem = f"holds {reader.num_records()} records, not the {recorded} it was written with"
      elif recorded:
        reader.read(sorted({0, recorded - 1}))
        problem = None if reader.ok() else "unreadable"
    except Exception as e:  # array_record raises RuntimeError or TypeError on a broken file
      problem = reason(e)
    try:
      reader.close()
    except Exception as e:  # its close() says what was wrong with the file
      problem = f"{problem}: {reason(e)}" if problem else reason(e)
    if problem:
      raise damaged(what, folder, f"{name} is truncated or corrupt ({problem})", advice)


def open_checked(source: Any, what: str, folder: str, advice: str) -> GuardedSource:
  """``source`` after ``check_files``, its reads guarded by a ``GuardedSource``."""
  check_files(source, what, folder, advice)
  return GuardedSource(source, what, folder, advice)


class GuardedSource(collections.abc.Sequence):
  """A tfds data source whose reads fail with a ``DatasetError`` naming the dataset and the file.

  Reading an example of a damaged file otherwise raises whatever array_record
  or tfds's decoding happens to raise. Every other attribute is the wrapped
  source's; the wrapper pickles (grain's worker processes receive it).
  """

  def __init__(self, source: Any, what: str, folder: str, advice: str):
    self._source = source
    self._what, self._folder, self._advice = what, folder, advice

  def __reduce__(self):
    return (GuardedSource, (self._source, self._what, self._folder, self._advice))

  def __getattr__(self, name: str) -> Any:
    if name.startswith("__") or name == "_source":
      raise AttributeError(name)
    return getattr(self._source, name)

  def __len__(self) -> int:
    return len(self._source)

  def __repr__(self) -> str:
    return repr(self._source)

  def _error(self, index: Any, e: Exception) -> DatasetError:
    where = ""
    try:
      i = int(index)
      for path, _, take in _shards(self._source):
        if i < take:
          where = f" (in {os.path.basename(path)})"
          break
        i -= take
    except Exception:  # the message is still right without the file's name
      pass
    return damaged(
      self._what, self._folder, f"reading example {index}{where} failed ({reason(e)})", self._advice
    )

  def __getitem__(self, index: Any) -> Any:
    i = operator.index(index)  # what is not an index is the caller's TypeError, as before
    try:
      return self._source[i]
    except IndexError:
      raise
    except Exception as e:
      raise self._error(i, e) from e

  def __getitems__(self, indices: Any) -> Any:
    indices = [operator.index(i) for i in indices]
    try:
      return self._source.__getitems__(indices)
    except IndexError:
      raise
    except Exception as e:
      raise self._error(indices[0] if indices else "?", e) from e

  def __iter__(self):
    for i in range(len(self)):
      yield self[i]
