"""End-to-end training: 1 == 8 devices, corrupt checkpoints, bad input."""

import os

import jax
import numpy as np
import pytest

from jaxsal import configs, train


def _config(data_dir, *overrides):
  c = configs.get_config("small_cnn_digits:test")
  return configs.apply_overrides(
    c, [f"dataset.data_dir={data_dir}", "checkpoint.use_async=False", *overrides]
  )


def test_one_and_eight_devices_give_the_same_losses(data_dir, tmp_path):
  runs = {}
  for n in (1, 8):
    c = _config(data_dir, "num_train_steps=8", f"mesh.num_devices={n}", "eval_every=8")
    runs[n] = train.train_and_evaluate(c, str(tmp_path / f"d{n}"), progress=False)
  assert runs[1]["mesh"].shape == {"data": 1} and runs[8]["mesh"].shape == {"data": 8}
  l1 = [r["train_loss"] for r in runs[1]["history"]]
  l8 = [r["train_loss"] for r in runs[8]["history"]]
  assert len(l1) == len(l8) == 8
  np.testing.assert_allclose(l1, l8, rtol=0, atol=1e-5)
  assert l1[-1] < l1[0]  # it learns
  p1 = jax.device_get(runs[1]["state"].params)
  p8 = jax.device_get(runs[8]["state"].params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), p1, p8)
  # The sharded run really ran on 8 devices with replicated parameters.
  leaf = jax.tree.leaves(runs[8]["state"].params)[0]
  assert len(leaf.sharding.device_set) == 8 and leaf.sharding.is_fully_replicated


# SIGKILL and Ctrl-C during a run, then the same command: tests/train/test_run_guards.py.


def test_corrupt_latest_checkpoint_names_the_previous_one(data_dir, tmp_path):
  c = _config(data_dir, "num_train_steps=20", "checkpoint.every=10")
  workdir = tmp_path / "run"
  train.train_and_evaluate(c, str(workdir), progress=False)
  latest = workdir / "checkpoints" / "20"
  for root, _, files in os.walk(latest):
    for f in files:
      with open(os.path.join(root, f), "wb") as fh:
        fh.write(b"\x00garbage")
  with pytest.raises(
    train.CorruptCheckpointError,
    match=r"latest checkpoint \(step 20\).*corrupt.*step 10, is available.*"
    r"checkpoint.restore_step=10",
  ) as info:
    train.train_and_evaluate(c, str(workdir), progress=False)
  assert info.value.previous == 10
  c10 = configs.apply_overrides(c, ["checkpoint.restore_step=10", "num_train_steps=12"])
  out = train.train_and_evaluate(c10, str(workdir), progress=False)
  assert out["restored_step"] == 10 and int(out["state"].step) == 12


def test_checkpoint_of_another_model_is_refused(data_dir, tmp_path):
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(
    _config(data_dir, "num_train_steps=2", "checkpoint.every=2"), workdir, progress=False
  )
  other = _config(data_dir, "num_train_steps=2", "model.name=resnet18")
  with pytest.raises(
    train.WorkdirError,
    match=r"made by a different run: model 'small_cnn' \(the workdir's\) != 'resnet18'",
  ):
    train.train_and_evaluate(other, workdir, progress=False)
  # A workdir from before identities were recorded: its checkpoint's metadata says it.
  os.remove(os.path.join(workdir, "identity.json"))
  with pytest.raises(
    train.CheckpointError, match="written for model='small_cnn'.*model='resnet18'"
  ):
    train.train_and_evaluate(other, workdir, progress=False)


@pytest.mark.parametrize(
  "override,match",
  [
    ("model.name=resnet9000", "unknown model 'resnet9000'; known: .*small_cnn"),
    ("dataset.name=mnist", "unknown dataset 'mnist'; known: .*cluttered_digits"),
    ("optimizer.name=lion", "unknown optimizer.name 'lion'"),
    ("batch_size=12", "batch_size=12 must be divisible by the 8 devices"),
    ("dataset.label_randomization=shuffle", "unknown dataset.label_randomization"),
  ],
)
def test_bad_config_fails_before_writing_anything(data_dir, tmp_path, override, match):
  workdir = tmp_path / "never"
  with pytest.raises(ValueError, match=match):
    train.train_and_evaluate(_config(data_dir, override), str(workdir), progress=False)
  assert not workdir.exists()


def test_unwritable_workdir(data_dir, tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("x")
  with pytest.raises(ValueError, match="workdir .*a_file/run.* cannot be written"):
    train.train_and_evaluate(_config(data_dir), str(blocker / "run"), progress=False)
  with pytest.raises(ValueError, match="exists and is not a directory"):
    train.prepare_workdir(str(blocker))
