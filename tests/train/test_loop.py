"""End-to-end training: 1 == 8 devices, resume after SIGKILL, corrupt checkpoints, bad input."""

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxsal import configs, train


def _config(data_dir, *overrides):
  c = configs.get_config("small_cnn_digits:test")
  return configs.apply_overrides(
    c, [f"dataset.data_dir={data_dir}", "checkpoint.use_async=False", *overrides]
  )


def _saved_params(workdir, step=None):
  mngr = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"))
  step = mngr.latest_step() if step is None else step
  out = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  mngr.close()
  return step, out["state"]["params"]


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


def _cli(workdir, data_dir, steps):
  return [
    sys.executable,
    "-m",
    "jaxsal.cli",
    "train",
    "--config",
    "small_cnn_digits:test",
    "--workdir",
    str(workdir),
    "--no-progress",
    "--set",
    f"dataset.data_dir={data_dir}",
    "--set",
    f"num_train_steps={steps}",
    "--set",
    "checkpoint.every=25",
    "--set",
    "log_every=25",
    "--set",
    "eval_every=100000",
  ]


def _env():
  # Optimised compilation: these runs are long enough that run time, not
  # compile time, dominates.
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  return env


def test_sigkill_then_same_command_resumes_to_identical_params(data_dir, tmp_path):
  from jaxsal import data

  data.load_source("cluttered_digits", "train", config="small", data_dir=data_dir)
  steps = 300
  killed, full = tmp_path / "killed", tmp_path / "full"
  proc = subprocess.Popen(
    _cli(killed, data_dir, steps),
    env=_env(),
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )
  ckdir = killed / "checkpoints"
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    done = [int(d) for d in (os.listdir(ckdir) if ckdir.exists() else []) if d.isdigit()]
    if done and max(done) >= 50:
      break
    time.sleep(0.02)
  assert proc.poll() is None, "the run ended before it could be killed:\n" + proc.stdout.read()
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert proc.returncode == -signal.SIGKILL
  kept = sorted(int(d) for d in os.listdir(ckdir) if d.isdigit())
  assert kept and max(kept) < steps

  again = subprocess.run(_cli(killed, data_dir, steps), env=_env(), capture_output=True, text=True)
  assert again.returncode == 0, again.stdout + again.stderr
  assert f"restored checkpoint at step {max(kept)}" in again.stdout

  once = subprocess.run(_cli(full, data_dir, steps), env=_env(), capture_output=True, text=True)
  assert once.returncode == 0, once.stdout + once.stderr
  assert "restored" not in once.stdout

  s1, p1 = _saved_params(killed)
  s2, p2 = _saved_params(full)
  assert s1 == s2 == steps
  jax.tree.map(np.testing.assert_array_equal, p1, p2)
  # The metrics log of the resumed run reads as one run: each train step logged once.
  import json

  steps_logged = [
    json.loads(l)["step"]
    for l in open(killed / "metrics.jsonl")
    if json.loads(l)["kind"] == "train"
  ]
  assert steps_logged == list(range(25, steps + 1, 25))


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
