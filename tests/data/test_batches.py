"""Tests for load_source and the grain batch pipeline."""

import itertools
import json
import os
import subprocess
import sys
import textwrap

import grain
import numpy as np
import pytest

from jaxsal import data as jdata


def _source(n):
  """A random-access source whose example i carries its id i."""
  return [
    {"image": np.full((4, 4, 1), i % 256, np.uint8), "label": i % 10, "id": np.int32(i)}
    for i in range(n)
  ]


def _ids(batches):
  return [b["id"].tolist() for b in batches]


def _take(it, k):
  return list(itertools.islice(it, k))


def test_batches_are_float_images_and_int_labels():
  (b,) = _take(
    jdata.make_batches(
      _source(20), batch_size=8, seed=0, shuffle=False, process_index=0, process_count=1
    ),
    1,
  )
  assert b["image"].dtype == np.float32 and b["image"].shape == (8, 4, 4, 1)
  assert b["label"].dtype == np.int32 and b["label"].shape == (8,)
  np.testing.assert_allclose(b["image"][:, 0, 0, 0], np.arange(8) / 255.0, rtol=1e-6)
  np.testing.assert_array_equal(b["label"], np.arange(8) % 10)


@pytest.mark.parametrize("shuffle", [True, False])
def test_start_step_resumes_exactly(shuffle):
  src = _source(50)  # Batches of 8 straddle epoch boundaries.
  kw = dict(batch_size=8, seed=3, shuffle=shuffle, process_index=0, process_count=1)
  fresh = _ids(_take(jdata.make_batches(src, **kw), 30))
  for k in (1, 6, 12, 29):
    assert _ids(_take(jdata.make_batches(src, start_step=k, **kw), 30 - k)) == fresh[k:]


def test_each_epoch_is_a_new_permutation():
  batches = list(
    jdata.make_batches(
      _source(40), batch_size=8, seed=5, num_epochs=3, process_index=0, process_count=1
    )
  )
  assert len(batches) == 15
  ids = np.concatenate(_ids(batches)).reshape(3, 40)
  for epoch in ids:
    assert sorted(epoch.tolist()) == list(range(40))
  assert not np.array_equal(ids[0], ids[1]) and not np.array_equal(ids[1], ids[2])
  assert not np.array_equal(ids[0], np.arange(40))
  again = list(
    jdata.make_batches(
      _source(40), batch_size=8, seed=5, num_epochs=3, process_index=0, process_count=1
    )
  )
  assert _ids(again) == _ids(batches)
  other = list(
    jdata.make_batches(
      _source(40), batch_size=8, seed=6, num_epochs=3, process_index=0, process_count=1
    )
  )
  assert _ids(other) != _ids(batches)


def test_evaluation_sees_every_example_once_in_order():
  batches = list(
    jdata.make_batches(
      _source(53),
      batch_size=10,
      seed=0,
      shuffle=False,
      num_epochs=1,
      drop_remainder=False,
      process_index=0,
      process_count=1,
    )
  )
  assert [len(b["id"]) for b in batches] == [10, 10, 10, 10, 10, 3]
  assert np.concatenate(_ids(batches)).tolist() == list(range(53))


def test_drop_remainder_keeps_only_full_global_batches():
  batches = list(
    jdata.make_batches(
      _source(53), batch_size=10, seed=0, num_epochs=2, process_index=1, process_count=2
    )
  )
  assert len(batches) == 106 // 10 and all(len(b["id"]) == 5 for b in batches)


@pytest.mark.parametrize("count", [2, 4])
def test_hosts_read_disjoint_slices_of_the_epoch(count):
  src = _source(53)
  kw = dict(batch_size=12, seed=0, shuffle=False, num_epochs=1, drop_remainder=False)
  single = np.concatenate(_ids(jdata.make_batches(src, process_index=0, process_count=1, **kw)))
  per_host = [
    np.concatenate(_ids(jdata.make_batches(src, process_index=p, process_count=count, **kw)))
    for p in range(count)
  ]
  union = np.concatenate(per_host)
  assert len(union) == len(set(union.tolist())) == 53
  assert sorted(union.tolist()) == sorted(single.tolist()) == list(range(53))


def test_hosts_split_each_global_batch():
  """Concatenating the hosts' batch k gives global batch k, shuffled and resumed."""
  src = _source(37)
  kw = dict(batch_size=12, seed=9, start_step=2)
  single = _take(jdata.make_batches(src, process_index=0, process_count=1, **kw), 8)
  hosts = [
    _take(jdata.make_batches(src, process_index=p, process_count=3, **kw), 8) for p in range(3)
  ]
  for k in range(8):
    joined = np.concatenate([hosts[p][k]["id"] for p in range(3)])
    np.testing.assert_array_equal(joined, single[k]["id"])


def test_process_defaults_come_from_jax():
  a = _ids(_take(jdata.make_batches(_source(30), batch_size=6, seed=1), 7))
  b = _ids(
    _take(
      jdata.make_batches(_source(30), batch_size=6, seed=1, process_index=0, process_count=1), 7
    )
  )
  assert a == b


def test_preprocess_plain_and_random():
  def halve(ex):
    return dict(ex, image=(ex["image"] // 2).astype(np.uint8))

  (b,) = _take(
    jdata.make_batches(
      _source(10),
      batch_size=5,
      seed=0,
      shuffle=False,
      preprocess=halve,
      process_index=0,
      process_count=1,
    ),
    1,
  )
  np.testing.assert_allclose(b["image"][:, 0, 0, 0], (np.arange(5) // 2) / 255.0, rtol=1e-6)

  class Jitter(grain.transforms.RandomMap):
    def random_map(self, ex, rng):
      return dict(ex, noise=np.float32(rng.random()))

  kw = dict(batch_size=4, seed=2, preprocess=Jitter(), process_index=0, process_count=1)
  fresh = _take(jdata.make_batches(_source(10), **kw), 6)
  resumed = _take(jdata.make_batches(_source(10), start_step=3, **kw), 3)
  for x, y in zip(fresh[3:], resumed):
    np.testing.assert_array_equal(x["noise"], y["noise"])
  assert len(np.unique(np.concatenate([b["noise"] for b in fresh]))) == 24


def test_make_batches_errors():
  src = _source(10)
  with pytest.raises(ValueError, match="batch_size=10 .* divisible by process_count=3"):
    jdata.make_batches(src, batch_size=10, seed=0, process_index=0, process_count=3)
  with pytest.raises(ValueError, match="process_index"):
    jdata.make_batches(src, batch_size=4, seed=0, process_index=2, process_count=2)
  with pytest.raises(ValueError, match="seed"):
    jdata.make_batches(src, batch_size=4, seed=-1, process_index=0, process_count=1)
  with pytest.raises(ValueError, match="batch_size"):
    jdata.make_batches(src, batch_size=0, seed=0, process_index=0, process_count=1)
  with pytest.raises(ValueError, match="empty"):
    jdata.make_batches([], batch_size=2, seed=0, process_index=0, process_count=1)


def test_cluttered_digits_end_to_end(data_dir, small_data):
  src = jdata.load_source("cluttered_digits", "test", config="small", data_dir=data_dir)
  assert len(src) == 500
  batches = list(
    jdata.make_batches(
      src,
      batch_size=64,
      seed=0,
      shuffle=False,
      num_epochs=1,
      drop_remainder=False,
      process_index=0,
      process_count=1,
    )
  )
  assert sum(len(b["label"]) for b in batches) == 500
  ref = small_data["test"]
  cat = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
  assert cat["image"].dtype == np.float32
  assert cat["image"].min() >= 0.0 and cat["image"].max() <= 1.0
  np.testing.assert_allclose(cat["image"], ref["image"] / np.float32(255), rtol=1e-6)
  for k in ("label", "box", "mask", "source_index"):
    np.testing.assert_array_equal(cat[k], ref[k])
  assert cat["label"].dtype == cat["source_index"].dtype == cat["box"].dtype == np.int32

  sub = jdata.load_source("cluttered_digits", "train[:10%]", config="small", data_dir=data_dir)
  assert len(sub) == 200


def test_load_source_errors(data_dir, tmp_path):
  with pytest.raises(
    ValueError, match="unknown dataset 'x'; known datasets: cluttered_digits, imagenet2012"
  ):
    jdata.load_source("x", "train", data_dir=data_dir)
  with pytest.raises(ValueError, match="unknown split 'validation'.*known splits: train, test"):
    jdata.load_source("cluttered_digits", "validation", config="small", data_dir=data_dir)
  with pytest.raises(ValueError, match="unknown split 'val'.*train, validation"):
    jdata.load_source("imagenet2012", "val", data_dir=str(tmp_path))
  with pytest.raises(FileNotFoundError, match="manual download"):
    jdata.load_source("imagenet2012", "validation", data_dir=str(tmp_path))


def test_dataset_info():
  info = jdata.dataset_info("cluttered_digits", "small")
  assert info["num_classes"] == 10 and info["image_shape"] == (32, 32, 1)
  assert info["class_names"] == tuple(str(i) for i in range(10))
  assert info["splits"] == {"train": 2000, "test": 500}
  assert jdata.dataset_info("cluttered_digits")["image_shape"] == (64, 64, 1)
  with pytest.raises(ValueError, match="unknown dataset"):
    jdata.dataset_info("mnist")


def test_never_imports_tensorflow(data_dir):
  """Loading, batching and the default data dir, in a clean interpreter."""
  script = textwrap.dedent("""
      import json, sys
      from jaxsal import data as jdata
      src = jdata.load_source("cluttered_digits", "train", config="small")
      batch = next(jdata.make_batches(src, batch_size=16, seed=0))
      info = jdata.dataset_info("imagenet2012")
      print(json.dumps({"tf": "tensorflow" in sys.modules, "dir": jdata.DEFAULT_DATA_DIR,
                        "shape": list(batch["image"].shape), "classes": info["num_classes"]}))
  """)
  env = dict(os.environ, JAXSAL_DATA_DIR=data_dir, JAX_PLATFORMS="cpu")
  out = subprocess.run(
    [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
  )
  assert out.returncode == 0, out.stderr[-2000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result == {"tf": False, "dir": data_dir, "shape": [16, 32, 32, 1], "classes": 1000}
