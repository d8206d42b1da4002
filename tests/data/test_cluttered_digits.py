"""Tests for the cluttered_digits tfds builder and its preparation."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from sklearn.datasets import load_digits

from jaxsal import data as jdata
from jaxsal.data import cluttered_digits as cd


def test_source_digits_equal_sklearn():
  digits = load_digits()
  images, labels = jdata.source_digits()
  np.testing.assert_array_equal(images, digits.images)
  np.testing.assert_array_equal(labels, digits.target)


@pytest.mark.parametrize("seed,fraction", [(0, 0.2), (3, 0.5)])
def test_partition_is_disjoint_complete_and_stratified(seed, fraction):
  _, labels = jdata.source_digits()
  parts = jdata.partition_sources(seed, fraction)
  train, test = parts["train"], parts["test"]
  assert not set(train) & set(test)
  np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(len(labels)))
  for c in range(10):
    n_c, t_c = (labels == c).sum(), (labels[test] == c).sum()
    assert t_c == round(fraction * n_c)
  assert not np.array_equal(parts["test"], jdata.partition_sources(seed + 1, fraction)["test"])


def test_small_has_the_declared_shapes(small_builder, small_data):
  info = small_builder.info
  assert info.name == "cluttered_digits" and str(info.version) == "1.0.0"
  assert info.splits["train"].num_examples == 2000
  assert info.splits["test"].num_examples == 500
  assert info.features["label"].names == [str(i) for i in range(10)]
  train = small_data["train"]
  assert train["image"].shape == (2000, 32, 32, 1) and train["image"].dtype == np.uint8
  assert train["mask"].shape == (2000, 32, 32) and train["mask"].dtype == np.uint8
  assert train["box"].shape == (2000, 4) and train["box"].dtype == np.int32


def test_splits_use_disjoint_source_digits(small_data):
  train = set(small_data["train"]["source_index"].tolist())
  test = set(small_data["test"]["source_index"].tolist())
  assert not train & test
  parts = jdata.partition_sources(0, 0.2)
  assert train <= set(parts["train"].tolist()) and test <= set(parts["test"].tolist())
  # 2000 examples cycle through all ~1437 training sources.
  assert train == set(parts["train"].tolist())


def test_labels_are_the_source_digits_labels(small_data):
  target = load_digits().target
  for split in ("train", "test"):
    d = small_data[split]
    np.testing.assert_array_equal(d["label"], target[d["source_index"]])
    assert set(d["label"].tolist()) == set(range(10))


def test_boxes_are_tight_boxes_of_masks_inside_canvas(small_data):
  for split in ("train", "test"):
    d = small_data[split]
    for mask, box in zip(d["mask"], d["box"]):
      ys, xs = np.nonzero(mask)
      assert box.tolist() == [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]
    y0, x0, y1, x1 = d["box"].T
    assert (y0 >= 0).all() and (y0 < y1).all() and (y1 <= 32).all()
    assert (x0 >= 0).all() and (x0 < x1).all() and (x1 <= 32).all()
    assert set(np.unique(d["mask"]).tolist()) == {0, 1}


def test_examples_are_varied(small_data):
  d = small_data["train"]
  # Each source appears more than once in 2000 examples, at new placements.
  _, first = np.unique(d["source_index"], return_index=True)
  repeat = [i for i in range(len(d["label"])) if i not in set(first)][0]
  twin = np.flatnonzero(d["source_index"] == d["source_index"][repeat])[0]
  assert not np.array_equal(d["image"][repeat], d["image"][twin])
  assert len({tuple(b) for b in d["box"].tolist()}) > 500


def test_generation_is_deterministic_and_seeded():
  cfg = jdata.ClutteredDigitsConfig(name="det", canvas_size=24, num_train=300, num_test=10)
  other = jdata.ClutteredDigitsConfig(
    name="det2", canvas_size=24, num_train=300, num_test=10, seed=1
  )
  a = list(cd.generate_split(cfg, "train"))
  b = list(cd.generate_split(cfg, "train"))
  c = list(cd.generate_split(other, "train"))
  for x, y in zip(a, b):
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])
  assert any(not np.array_equal(x["image"], y["image"]) for x, y in zip(a, c))


def test_preparing_twice_gives_identical_data(small_data, tmp_path, read_all):
  again = jdata.cluttered_digits_builder("small", data_dir=str(tmp_path)).as_data_source()
  for split in ("train", "test"):
    d = read_all(again[split])
    for k in small_data[split]:
      np.testing.assert_array_equal(d[k], small_data[split][k], err_msg=f"{split}/{k}")
  # Nothing half-written is left behind.
  leftovers = [p for p, _, _ in os.walk(tmp_path) if "incomplete" in p]
  assert not leftovers


def test_prepared_data_is_reused_and_checked(small_builder, data_dir, tmp_path):
  b = jdata.cluttered_digits_builder("small", data_dir=data_dir, prepare=False)
  assert b.data_path == small_builder.data_path
  with pytest.raises(FileNotFoundError, match="not prepared"):
    jdata.cluttered_digits_builder("small", data_dir=str(tmp_path), prepare=False)
  tiny = jdata.ClutteredDigitsConfig(name="tiny", canvas_size=16, num_train=20, num_test=10)
  jdata.cluttered_digits_builder(tiny, data_dir=str(tmp_path))
  clash = jdata.ClutteredDigitsConfig(name="tiny", canvas_size=16, num_train=30, num_test=10)
  with pytest.raises(ValueError, match="prepared with parameters"):
    jdata.cluttered_digits_builder(clash, data_dir=str(tmp_path))


def test_config_validation():
  with pytest.raises(ValueError, match="canvas_size"):
    jdata.ClutteredDigitsConfig(name="x", canvas_size=4)
  with pytest.raises(ValueError, match="test_fraction"):
    jdata.ClutteredDigitsConfig(name="x", test_fraction=1.0)
  with pytest.raises(ValueError, match="num_train"):
    jdata.ClutteredDigitsConfig(name="x", num_train=0)
  with pytest.raises(ValueError, match="unknown config 'huge'.*default, small"):
    jdata.load_source("cluttered_digits", "train", config="huge")


def test_concurrent_preparation_is_safe(tmp_path):
  """Two processes preparing the same config at once both get the same data."""
  script = textwrap.dedent(f"""
      import numpy as np
      from jaxsal import data as jdata
      cfg = jdata.ClutteredDigitsConfig(name="race", canvas_size=16, num_train=600, num_test=50)
      src = jdata.load_source("cluttered_digits", "train", config=cfg, data_dir={str(tmp_path)!r})
      print(len(src), int(np.sum([src[i]["image"].sum() for i in range(len(src))])))
  """)
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  procs = [
    subprocess.Popen(
      [sys.executable, "-c", script],
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
      env=env,
    )
    for _ in range(2)
  ]
  outs = [p.communicate(timeout=120) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-2000:]
  lines = [out.strip().splitlines()[-1] for out, _ in outs]
  assert lines[0] == lines[1] and lines[0].startswith("600 ")
  versions = os.listdir(tmp_path / "cluttered_digits" / "race")
  assert versions == ["1.0.0"]


# Issue 27: a damaged or unreadable prepared dataset is a clear error that
# names the dataset, the folder and the file, and says how to prepare it again.


def _copy_of_small(tmp_path):
  """A copy of the prepared ``small`` (from the default data dir) in ``tmp_path``; its data dir."""
  import shutil

  shared = jdata.cluttered_digits_builder("small", prepare=False)
  shutil.copytree(shared.data_dir, tmp_path / "cluttered_digits" / "small" / "1.0.0")
  return tmp_path


def _shard(data_dir, split):
  folder = data_dir / "cluttered_digits" / "small" / "1.0.0"
  return folder, folder / f"cluttered_digits-{split}.array_record-00000-of-00001"


def test_a_truncated_dataset_file_names_the_file_and_the_advice_to_reprepare_works(
  tmp_path, capsys
):
  import shlex

  from jaxsal import cli

  data_dir = _copy_of_small(tmp_path / "data")
  folder, shard = _shard(data_dir, "train")
  with open(shard, "r+b") as f:
    f.truncate(os.path.getsize(shard) // 2)
  argv = ["prepare-data", "--config", "small", "--data-dir", str(data_dir), "--splits", "train"]
  assert cli.main(argv) == 2
  err = capsys.readouterr().err
  assert err.startswith(
    f"jaxsal: error: the prepared dataset cluttered_digits/small in {folder} is damaged: "
    f"{shard.name} is truncated or corrupt ("
  )
  assert err.count("\n") == 1 and "Traceback" not in err
  advice = (
    f"Prepare it again: delete {folder.parent} and run jaxsal prepare-data --dataset "
    f"cluttered_digits --config small --data-dir {data_dir} (or rerun the command"
  )
  assert advice in err
  # The advice, word for word: the data is prepared again and reads whole.
  import shutil

  shutil.rmtree(folder.parent)
  command = err.split(" and run ", 1)[1].split(" (or rerun", 1)[0]
  assert cli.main(shlex.split(command)[1:]) == 0
  src = jdata.load_source("cluttered_digits", "train", config="small", data_dir=str(data_dir))
  assert len(src) == 2000 and src[1999]["image"].shape == (32, 32, 1)


def test_a_corrupt_byte_inside_a_dataset_file_is_named_when_read_also_through_grain(tmp_path):
  data_dir = _copy_of_small(tmp_path)
  folder, shard = _shard(data_dir, "test")
  data = bytearray(shard.read_bytes())
  data[len(data) // 3] ^= 0xFF  # inside a data chunk: the file opens, one example is damaged
  shard.write_bytes(bytes(data))
  src = jdata.load_source("cluttered_digits", "test", config="small", data_dir=str(data_dir))
  bad = []
  for i in range(len(src)):
    try:
      src[i]
    except jdata.DatasetError as e:
      bad.append((i, str(e)))
  assert bad, "no example of the damaged file failed to read"
  i, message = bad[0]
  assert message.startswith(
    f"the prepared dataset cluttered_digits/small in {folder} is damaged: reading example {i} "
    f"(in {shard.name}) failed (RuntimeError: Corrupted Riegeli/records file"
  )
  assert message.endswith(
    "(or rerun the command: a dataset that is not prepared is prepared on first use)"
  )
  # Through grain's reading threads, the same error reaches the caller.
  batches = jdata.make_batches(
    src, batch_size=500, seed=0, shuffle=False, num_epochs=1, process_index=0, process_count=1
  )
  with pytest.raises(jdata.DatasetError, match=rf"reading example \d+ \(in {shard.name}\)"):
    next(batches)


def test_unreadable_dataset_metadata_is_named(tmp_path):
  data_dir = _copy_of_small(tmp_path)
  folder, _ = _shard(data_dir, "test")
  (folder / "dataset_info.json").write_text('{"name": "cluttered_')
  with pytest.raises(
    jdata.DatasetError,
    match=rf"^the prepared dataset cluttered_digits/small in {folder} is damaged: its metadata "
    r"cannot be read \(.*\)\. Prepare it again: delete ",
  ):
    jdata.load_source("cluttered_digits", "test", config="small", data_dir=str(data_dir))


def test_a_data_dir_that_is_a_file_is_a_clear_error(tmp_path, capsys):
  from jaxsal import cli

  path = tmp_path / "data"
  path.write_text("not a folder")
  assert cli.main(["prepare-data", "--config", "small", "--data-dir", str(path)]) == 2
  assert capsys.readouterr().err == (
    f"jaxsal: error: data_dir '{path}' is not a folder: '{path}' is a file; give a folder for "
    "the datasets (dataset.data_dir, --data-dir or $JAXSAL_DATA_DIR)\n"
  )
  assert path.read_text() == "not a folder"


def _deny(monkeypatch, denied_dirs=(), denied_files=(), read_only_dirs=()):
  """The file system refusing this user as ``chmod`` would (these tests run as root: it would not).

  A denied folder (``chmod 000``) cannot be listed, nor can anything under it
  be stat'ed or opened; a denied file cannot be opened; nothing can be
  created under a read-only folder (``chmod 555``).
  """
  import builtins
  import errno

  denied = [os.fspath(d) for d in denied_dirs]
  read_only = [os.fspath(d) for d in read_only_dirs]
  files = {os.fspath(f) for f in denied_files}

  def under(path, strictly, dirs=denied):
    try:
      p = os.path.abspath(os.fspath(path))
    except TypeError:  # a file descriptor
      return False
    return any(p.startswith(d + os.sep) or (not strictly and p == d) for d in dirs)

  def refuse(path):
    raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))

  real = {name: getattr(os, name) for name in ("listdir", "scandir", "stat", "mkdir")}
  real_open = builtins.open

  def listdir(path="."):
    if under(path, strictly=False):
      refuse(path)
    return real["listdir"](path)

  def scandir(path="."):
    if under(path, strictly=False):
      refuse(path)
    return real["scandir"](path)

  def stat(path, *a, **k):
    if under(path, strictly=True):
      refuse(path)
    return real["stat"](path, *a, **k)

  def mkdir(path, *a, **k):
    if under(path, strictly=True) or under(path, strictly=True, dirs=read_only):
      refuse(path)
    return real["mkdir"](path, *a, **k)

  def open_(file, mode="r", *a, **k):
    if isinstance(file, int):
      return real_open(file, mode, *a, **k)
    writes = any(c in mode for c in "wax+")
    if under(file, strictly=True) or os.fspath(file) in files:
      refuse(file)
    if writes and under(file, strictly=True, dirs=read_only):
      refuse(file)
    return real_open(file, mode, *a, **k)

  for name, fn in (("listdir", listdir), ("scandir", scandir), ("stat", stat), ("mkdir", mkdir)):
    monkeypatch.setattr(os, name, fn)
  monkeypatch.setattr(builtins, "open", open_)


def test_a_read_only_data_dir_is_named_when_the_data_must_be_prepared(tmp_path, monkeypatch):
  ro = tmp_path / "ro"
  ro.mkdir()
  _deny(monkeypatch, read_only_dirs=[ro])
  with pytest.raises(
    jdata.DatasetError,
    match=rf"^cannot prepare cluttered_digits/small in data_dir '{ro}': "
    rf"'{ro}/cluttered_digits' cannot be written \(Permission denied\); give a data_dir this "
    r"user can write to \(dataset.data_dir, --data-dir or \$JAXSAL_DATA_DIR\)",
  ):
    jdata.load_source("cluttered_digits", "train", config="small", data_dir=str(ro))
  assert os.listdir(ro) == []


def test_an_unreadable_dataset_folder_or_file_is_named(tmp_path, monkeypatch):
  data_dir = _copy_of_small(tmp_path)
  folder, shard = _shard(data_dir, "train")
  with monkeypatch.context() as m:
    _deny(m, denied_dirs=[folder.parent])
    with pytest.raises(
      jdata.DatasetError,
      match=rf"^data_dir '{data_dir}': the folder '{folder.parent}' cannot be read "
      r"\(Permission denied\); give this user read access to it, or use another data_dir",
    ):
      jdata.load_source("cluttered_digits", "train", config="small", data_dir=str(data_dir))
  with monkeypatch.context() as m:
    _deny(m, denied_files=[shard])
    with pytest.raises(
      jdata.DatasetError,
      match=rf"^the prepared dataset cluttered_digits/small in {folder} cannot be read: "
      rf"{shard.name} \(Permission denied\); give this user read access",
    ):
      jdata.load_source("cluttered_digits", "train", config="small", data_dir=str(data_dir))
  # Nothing was prepared again over the data that could not be read.
  assert sorted(os.listdir(folder.parent)) == ["1.0.0"]
