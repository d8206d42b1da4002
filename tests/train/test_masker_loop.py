"""Masker training end to end: resume after a crash, few-shot subsets, bad configs."""

import json
import os

import jax
import numpy as np
import pytest

from jaxsal import configs, data, train


def _config(data_dir, classifier_workdir, *overrides):
  c = configs.get_config("masker_digits:test")
  return configs.apply_overrides(
    c,
    [
      f"classifier.dataset.data_dir={data_dir}",
      f"classifier_workdir={classifier_workdir}",
      "checkpoint.use_async=False",
      *overrides,
    ],
  )


def test_crash_then_rerun_resumes_to_the_same_parameters(
  data_dir, test_classifier_workdir, tmp_path, monkeypatch
):
  c = _config(data_dir, test_classifier_workdir, "num_train_steps=6", "checkpoint.every=2")
  full = train.train_masker(c, str(tmp_path / "full"), progress=False)

  real = data.make_batches

  def crashing(*args, **kwargs):
    it = real(*args, **kwargs)
    if not kwargs.get("shuffle", True) or kwargs.get("start_step", 0):
      yield from it  # evaluation, and the resumed run, read normally
      return
    for i, batch in enumerate(it):
      if i == 5:  # killed while step 6 waits for its batch
        raise KeyboardInterrupt
      yield batch

  monkeypatch.setattr(data, "make_batches", crashing)
  with pytest.raises(KeyboardInterrupt):
    train.train_masker(c, str(tmp_path / "killed"), progress=False)
  ckpts = sorted(int(d) for d in os.listdir(tmp_path / "killed" / "checkpoints") if d.isdigit())
  assert ckpts[-1] == 4
  resumed = train.train_masker(c, str(tmp_path / "killed"), progress=False)
  assert resumed["restored_step"] == 4 and int(resumed["state"].step) == 6
  for part in (
    "masker_params",
    "masker_state",
    "masker_opt",
    "classifier_params",
    "classifier_opt",
  ):
    jax.tree.map(
      np.testing.assert_array_equal,
      jax.device_get(getattr(full["state"], part)),
      jax.device_get(getattr(resumed["state"], part)),
    )
  # The metric log holds each step once, as an uninterrupted run's does.
  steps = [
    json.loads(l)["step"]
    for l in open(tmp_path / "killed" / "metrics.jsonl")
    if json.loads(l)["kind"] == "train"
  ]
  assert steps == [1, 2, 3, 4, 5, 6]
  assert full["eval"] == resumed["eval"]
  saved = json.load(open(tmp_path / "killed" / "eval.json"))
  assert saved["metrics"]["le"] == resumed["eval"]["le"]


def test_fix_run_keeps_the_classifier_and_writes_its_metrics(
  data_dir, test_classifier_workdir, tmp_path
):
  c = _config(data_dir, test_classifier_workdir, "mode=fix", "num_train_steps=1")
  out = train.train_masker(c, str(tmp_path / "fix"), progress=False)
  clf = train.train_and_evaluate(c.classifier, test_classifier_workdir, progress=False)
  jax.tree.map(
    np.testing.assert_array_equal,
    jax.device_get(out["state"].classifier_params),
    jax.device_get(clf["state"].params),
  )
  ev = out["eval"]
  assert ev["count"] == 32
  for k in ("le", "om", "f1", "f1a", "pxap", "area", "accuracy"):
    assert 0.0 <= ev[k] <= 1.0, k
  assert ev["om"] >= ev["le"]  # OM also counts misclassified images
  # A FIX workdir is not resumed by a CA run.
  with pytest.raises(train.WorkdirError, match="mode 'fix' \\(the workdir's\\) != 'ca'"):
    train.train_masker(
      configs.apply_overrides(c, ["mode=ca"]), str(tmp_path / "fix"), progress=False
    )


def test_few_shot_source_takes_k_of_every_class(data_dir):
  src = data.load_source("cluttered_digits", "train", config="small", data_dir=data_dir)
  labels = np.asarray([int(src[i]["label"]) for i in range(len(src))])
  few = data.FewShotSource(src, 3, seed=1, labels=labels)
  got = np.asarray([int(few[i]["label"]) for i in range(len(few))])
  assert len(few) == 30 and np.bincount(got, minlength=10).tolist() == [3] * 10
  np.testing.assert_array_equal(got, labels[few.indices])
  again = data.FewShotSource(src, 3, seed=1, labels=labels)
  np.testing.assert_array_equal(few.indices, again.indices)
  other = data.FewShotSource(src, 3, seed=2, labels=labels)
  assert not np.array_equal(few.indices, other.indices)
  most = int(np.bincount(labels).min())
  with pytest.raises(
    ValueError,
    match=f"few-shot k={most + 1} is larger than the number of "
    f"examples of some classes .*use k <= {most}",
  ):
    data.FewShotSource(src, most + 1, labels=labels)
  with pytest.raises(ValueError, match="k \\(examples per class\\) must be a positive integer"):
    data.FewShotSource(src, 0, labels=labels)


@pytest.mark.parametrize(
  "override,match",
  [
    (
      "masker.layers=('l3','l9')",
      "unknown tap 'l9' in masker.layers; the classifier 'small_cnn' has taps: l0, l1, l2, l3, l4",
    ),
    ("mode=frozen", "unknown mode 'frozen'; known: ca, fix"),
    ("objective.name=inout", "unknown objective.name 'inout'"),
    ("objective.lam_out=-1.0", "objective.lam_out must be a number >= 0; got -1.0"),
    ("historic_prob=2.0", "historic_prob must be in \\[0, 1\\]"),
    ("few_shot=-1", "few_shot must be an integer >= 0"),
    ("objective.infill=noise", "unknown objective.infill 'noise'"),
  ],
)
def test_bad_config_fails_before_writing_anything(data_dir, override, match, tmp_path):
  c = _config(data_dir, str(tmp_path / "clf"), override)
  with pytest.raises(ValueError, match=match):
    train.train_masker(c, str(tmp_path / "run"), progress=False)
  assert not (tmp_path / "run").exists() and not (tmp_path / "clf").exists()


def test_few_shot_larger_than_a_class_fails_before_writing(data_dir, tmp_path):
  c = _config(data_dir, str(tmp_path / "clf"), "few_shot=100000")
  with pytest.raises(ValueError, match="few-shot k=100000 is larger than"):
    train.train_masker(c, str(tmp_path / "run"), progress=False)
  assert not (tmp_path / "run").exists()
