"""Runs that cannot be corrupted (issue 27): read-only inputs, recovery, identity, lock, NaN, Ctrl-C."""

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsal import cli, configs, train


def _classifier(data_dir, *overrides):
  return configs.apply_overrides(
    configs.get_config("small_cnn_digits:test"),
    [f"dataset.data_dir={data_dir}", "checkpoint.use_async=False", *overrides],
  )


def _masker(data_dir, classifier_workdir, *overrides):
  return configs.apply_overrides(
    configs.get_config("masker_digits:test"),
    [
      f"classifier.dataset.data_dir={data_dir}",
      f"classifier_workdir={classifier_workdir}",
      "checkpoint.use_async=False",
      "num_train_steps=2",
      "eval_num_images=8",
      *overrides,
    ],
  )


def _tree_digest(path):
  """Every file under ``path`` with its bytes' sha256: what "nothing was written" compares."""
  out = {}
  for root, _, files in os.walk(path):
    for f in files:
      p = os.path.join(root, f)
      with open(p, "rb") as fh:
        out[os.path.relpath(p, path)] = hashlib.sha256(fh.read()).hexdigest()
  return out


def _train_argv(workdir, data_dir, *sets):
  argv = ["train", "--config", "small_cnn_digits:test", "--workdir", str(workdir), "--no-progress"]
  for s in (f"dataset.data_dir={data_dir}", "checkpoint.use_async=False", *sets):
    argv += ["--set", s]
  return argv


def _params(workdir):
  return train.load_classifier(str(workdir))["variables"]["params"]


# Finding 1 (and 3 for maskers): the classifier a masker explains is read, never written.


def test_masker_reads_its_classifier_workdir_and_never_writes_it(
  data_dir, test_classifier_workdir, tmp_path
):
  before = _tree_digest(test_classifier_workdir)
  # The classifier config asks for more steps than the classifier has: the
  # masker must not train it on (the finding: steps 1, 10, 20 became 20, 30, 40).
  config = _masker(data_dir, test_classifier_workdir, "classifier.num_train_steps=60")
  masker_dir = tmp_path / "masker"
  out = train.train_masker(config, str(masker_dir), progress=False)
  assert _tree_digest(test_classifier_workdir) == before
  jax.tree.map(
    np.testing.assert_array_equal, out["original"][1]["params"], _params(test_classifier_workdir)
  )
  identity = json.loads((masker_dir / "identity.json").read_text())
  assert identity["kind"] == "masker" and len(identity["classifier.fingerprint"]) == 16

  # A mistyped classifier_workdir is an error naming it, not a new training there.
  typo = tmp_path / "no_such_classifier"
  with pytest.raises(
    FileNotFoundError, match=f"classifier_workdir: no trained classifier in '{typo}'"
  ):
    train.train_masker(_masker(data_dir, typo), str(tmp_path / "masker2"), progress=False)
  assert not typo.exists() and not (tmp_path / "masker2").exists()

  # The same masker workdir on another classifier (one more step) is refused by fingerprint.
  other = tmp_path / "other_classifier"
  shutil.copytree(test_classifier_workdir, other)
  train.train_and_evaluate(_classifier(data_dir, "num_train_steps=41"), str(other), progress=False)
  # As another process left it: the refused run below must not write its pid there.
  (masker_dir / "run.lock").write_text("4242 otherhost\n")
  masker_files = _tree_digest(masker_dir)
  with pytest.raises(train.WorkdirError, match="made by a different run: classifier.fingerprint"):
    train.train_masker(_masker(data_dir, other), str(masker_dir), progress=False)
  assert _tree_digest(masker_dir) == masker_files

  # A masker workdir given to the classifier's training is another kind of run, not corrupt ...
  with pytest.raises(
    train.WorkdirError, match=r"holds another kind of run: a masker run .*not a classifier run"
  ):
    train.train_and_evaluate(_classifier(data_dir), str(masker_dir), progress=False)
  with pytest.raises(train.WorkdirError, match="holds another kind of run: a masker run"):
    train.load_classifier(str(masker_dir))
  # ... also when it records no identity (a workdir from before identities).
  os.remove(masker_dir / "identity.json")
  with pytest.raises(train.CheckpointError, match="another kind of run.*kind='masker'") as info:
    train.train_and_evaluate(_classifier(data_dir), str(masker_dir), progress=False)
  assert not isinstance(info.value, train.CorruptCheckpointError)


# Finding 2: the recovery the corrupt-checkpoint message offers works, word for word.


def test_corrupt_latest_checkpoint_advice_followed_word_for_word(data_dir, tmp_path, capsys):
  sets = ("num_train_steps=4", "checkpoint.every=2", "log_every=2", "eval_every=4")
  work = tmp_path / "run"
  assert cli.main(_train_argv(work, data_dir, *sets)) == 0
  finished = _params(work)
  data = [
    os.path.join(root, f)
    for root, _, files in os.walk(work / "checkpoints" / "4" / "state")
    for f in files
  ]
  biggest = max(data, key=os.path.getsize)
  with open(biggest, "r+b") as f:
    f.truncate(os.path.getsize(biggest) // 2)
  capsys.readouterr()

  assert cli.main(_train_argv(work, data_dir, *sets)) == 2
  err = capsys.readouterr().err
  assert err.startswith("jaxsal: error: the latest checkpoint (step 4)")
  advice = re.search(r"--set (checkpoint\.restore_step=\d+)", err)
  assert advice and advice.group(1) == "checkpoint.restore_step=2", err

  assert cli.main(_train_argv(work, data_dir, *sets) + ["--set", advice.group(1)]) == 0
  out = capsys.readouterr().out
  assert (
    "restored checkpoint at step 2" in out and "moved the checkpoints of steps [4] aside" in out
  )
  # The corrupt step is kept aside, not deleted; the run finished at step 4.
  (aside,) = os.listdir(work / "checkpoints_set_aside")
  assert os.listdir(work / "checkpoints_set_aside" / aside) == ["4"]
  assert sorted(int(d) for d in os.listdir(work / "checkpoints") if d.isdigit()) == [1, 2, 4]
  jax.tree.map(np.testing.assert_array_equal, _params(work), finished)
  records = [json.loads(line) for line in open(work / "metrics.jsonl")]
  assert [r["step"] for r in records if r["kind"] == "train"] == [2, 4]


# Finding 3: a workdir records its identity; another run is refused before writing.


def test_rerun_with_another_identity_is_refused_naming_the_keys(data_dir, tmp_path, capsys):
  work = tmp_path / "run"
  assert cli.main(_train_argv(work, data_dir, "num_train_steps=2", "checkpoint.every=2")) == 0
  identity = json.loads((work / "identity.json").read_text())
  assert identity["kind"] == "classifier" and identity["image_shape"] == [32, 32, 1]
  assert "num_train_steps" not in identity and "checkpoint" not in identity
  before = _tree_digest(work)
  capsys.readouterr()
  argv = _train_argv(work, data_dir, "num_train_steps=4", "seed=1", "dataset.std=(0.5,)")
  assert cli.main(argv) == 2
  err = capsys.readouterr().err
  assert err == (
    f"jaxsal: error: workdir '{work}' was made by a different run: "
    "dataset.std [1.0] (the workdir's) != [0.5] (this run's); "
    "seed 0 (the workdir's) != 1 (this run's); use a new --workdir\n"
  )
  assert _tree_digest(work) == before
  # More steps is the same run: it resumes.
  assert cli.main(_train_argv(work, data_dir, "num_train_steps=4", "checkpoint.every=2")) == 0
  assert "restored checkpoint at step 2" in capsys.readouterr().out


# Finding 4: one writer per workdir.


def test_second_run_on_a_locked_workdir_is_refused_and_a_dead_holder_releases_it(
  data_dir, tmp_path, capsys
):
  work = tmp_path / "run"
  work.mkdir()
  # Another process holds the lock, as a running ``jaxsal train`` does.
  holder = subprocess.Popen(
    [
      sys.executable,
      "-c",
      "import fcntl, os, sys, time\n"
      f"fd = os.open({str(work / 'run.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
      "fcntl.flock(fd, fcntl.LOCK_EX)\n"
      "os.write(fd, f'{os.getpid()} somehost'.encode())\n"
      "print('locked', flush=True)\n"
      "time.sleep(120)\n",
    ],
    stdout=subprocess.PIPE,
    text=True,
  )
  try:
    assert holder.stdout.readline().strip() == "locked"
    before = _tree_digest(work)
    assert cli.main(_train_argv(work, data_dir, "num_train_steps=2")) == 2
    assert capsys.readouterr().err == (
      f"jaxsal: error: workdir '{work}' is in use by another run (pid {holder.pid} on somehost); "
      "wait for it to end, or use another --workdir\n"
    )
    assert _tree_digest(work) == before
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  # Killed with -9, it holds nothing: the next run takes the lock over.
  assert cli.main(_train_argv(work, data_dir, "num_train_steps=2", "checkpoint.every=2")) == 0
  assert (work / "run.lock").read_text().split()[0] == str(os.getpid())
  # In one process too: the lock is held for the run's life and released at its end.
  from jaxsal.train._workdir import WorkdirLock

  lock = WorkdirLock(str(work))
  with pytest.raises(train.WorkdirError, match=f"in use by another run \\(pid {os.getpid()}"):
    train.train_and_evaluate(_classifier(data_dir, "num_train_steps=2"), str(work), progress=False)
  lock.release()


def test_a_run_refused_for_its_identity_leaves_run_lock_untouched(tmp_path):
  """The lock is taken before the whole identity is known (a masker's classifier
  fingerprint); a run refused then must not have written its pid into run.lock."""
  import socket

  from jaxsal.train._workdir import WorkdirLock, check_identity, write_identity

  work = tmp_path / "run"
  work.mkdir()
  made = {"kind": "masker", "seed": 0, "classifier.fingerprint": "0123456789abcdef"}
  write_identity(str(work), made)
  ended = subprocess.Popen([sys.executable, "-c", "pass"])
  ended.wait()  # the last holder: a process that has ended
  lock_file = work / "run.lock"
  lock_file.write_text(f"{ended.pid} {socket.gethostname()}\n")
  os.utime(lock_file, ns=(1_000_000_000, 1_000_000_000))
  before = (lock_file.read_bytes(), lock_file.stat().st_mtime_ns)

  # What run_training does: the partial check, the lock, the whole identity.
  other = {**made, "classifier.fingerprint": "fedcba9876543210"}
  check_identity(str(work), {"kind": "masker", "seed": 0}, partial=True)
  lock = WorkdirLock(str(work))
  try:
    # While it is being checked, a second run is refused without the stale pid.
    with pytest.raises(
      train.WorkdirError, match=r"in use by another run \(pid unknown: a run that is starting"
    ):
      WorkdirLock(str(work))
    with pytest.raises(train.WorkdirError, match="made by a different run: classifier.fingerprint"):
      check_identity(str(work), other)
  finally:
    lock.release()
  assert (lock_file.read_bytes(), lock_file.stat().st_mtime_ns) == before

  # An accepted run writes its pid, and a second run is refused naming it.
  lock = WorkdirLock(str(work))
  try:
    check_identity(str(work), made)
    assert lock_file.read_text() == f"{os.getpid()} {socket.gethostname()}\n"
    with pytest.raises(train.WorkdirError, match=rf"in use by another run \(pid {os.getpid()} on "):
      WorkdirLock(str(work))
  finally:
    lock.release()


# Finding 5: non-finite values stop a run; checkpoints carry a checksum; std > 0.


def test_zero_std_is_refused_naming_dataset_std(data_dir, tmp_path, capsys):
  assert cli.main(_train_argv(tmp_path / "W", data_dir, "dataset.std=(0.0,)")) == 2
  assert capsys.readouterr().err == (
    "jaxsal: error: dataset.std must hold finite numbers > 0 (the images are divided by it); "
    "got (0.0,)\n"
  )
  assert not (tmp_path / "W").exists()


def test_non_finite_loss_stops_the_run_naming_the_step_and_keeps_the_good_checkpoint(
  data_dir, tmp_path
):
  work = tmp_path / "run"
  # A learning rate that overflows the parameters within a few steps.
  c = _classifier(
    data_dir,
    "num_train_steps=12",
    "optimizer.learning_rate=1e30",
    "checkpoint.every=1",
    "checkpoint.keep=100",
    "log_every=6",
  )
  with pytest.raises(train.NonFiniteError) as info:
    train.train_and_evaluate(c, str(work), progress=False)
  step, metric = info.value.step, info.value.metric
  assert metric in ("train_loss", "train_grad_norm") and 1 < step <= 6
  kept = sorted(int(d) for d in os.listdir(work / "checkpoints") if d.isdigit())
  assert kept == list(range(1, step))
  assert str(info.value).startswith(
    f"training stopped at step {step}: {metric} is "
  ) and f"the last checkpoint, step {step - 1}, is kept" in str(info.value)
  # The kept checkpoint restores (finite, checksum intact).
  assert train.load_classifier(str(work))["step"] == step - 1


def _toy_checkpoints(directory, values):
  ckpt = train.Checkpoints(str(directory), every=1, keep=10, use_async=False)
  for step, v in values.items():
    ckpt.save(step, {"params": {"w": jnp.asarray(v)}}, meta={"kind": "toy"})
  ckpt.close()


def test_flipped_byte_is_found_by_the_checksum_and_the_previous_step_offered(tmp_path):
  w = np.random.default_rng(0).standard_normal(4096).astype(np.float32)
  _toy_checkpoints(tmp_path / "ck", {1: w, 2: w + 1})
  files = [
    os.path.join(root, f) for root, _, fs in os.walk(tmp_path / "ck" / "2" / "state") for f in fs
  ]
  biggest = max(files, key=os.path.getsize)
  size = os.path.getsize(biggest)
  with open(biggest, "r+b") as f:
    f.seek(size // 2)
    byte = f.read(1)
    f.seek(size // 2)
    f.write(bytes([byte[0] ^ 0x40]))
  assert os.path.getsize(biggest) == size
  ckpt = train.Checkpoints(str(tmp_path / "ck"), use_async=False)
  target = {"params": {"w": jnp.zeros(4096)}}
  with pytest.raises(
    train.CorruptCheckpointError,
    match=r"latest checkpoint \(step 2\).*corrupt.*previous checkpoint, step 1, is available: "
    r"rerun the same command with --set checkpoint.restore_step=1 ",
  ):
    ckpt.restore(target)
  np.testing.assert_array_equal(ckpt.restore(target, 1)[0]["params"]["w"], w)
  ckpt.close()


def test_restored_parameters_are_checked_finite(tmp_path):
  _toy_checkpoints(
    tmp_path / "ck", {1: np.ones(3, np.float32), 2: np.array([1, np.nan, 3], np.float32)}
  )
  ckpt = train.Checkpoints(str(tmp_path / "ck"), use_async=False)
  with pytest.raises(
    train.CorruptCheckpointError, match=r"step 2.*parameters hold NaN or Inf.*step 1, is available"
  ):
    ckpt.restore({"params": {"w": jnp.zeros(3)}})
  ckpt.close()


def test_a_save_cut_by_a_kill_is_one_jaxsal_line_on_rerun_not_orbax_warnings(
  tmp_path, capsys, caplog
):
  import logging

  caplog.set_level(logging.INFO, logger="absl")
  ck = tmp_path / "ck"
  _toy_checkpoints(ck, {1: np.ones(3, np.float32)})
  # What a kill -9 during saves leaves: step 1 renamed into place before its
  # _CHECKPOINT_METADATA was written, and step 2's temporary folder, half written.
  os.remove(ck / "1" / "_CHECKPOINT_METADATA")
  (ck / "2.orbax-checkpoint-tmp" / "state.orbax-checkpoint-tmp").mkdir(parents=True)
  capsys.readouterr()
  caplog.clear()

  ckpt = train.Checkpoints(str(ck), use_async=False)
  state = {"params": {"w": jnp.zeros(3)}}
  restored, _ = ckpt.restore(state)
  np.testing.assert_array_equal(restored["params"]["w"], np.ones(3))
  ckpt.save(2, restored, meta={}, force=True)
  ckpt.close()
  assert ckpt.steps() == [1, 2] and not (ck / "2.orbax-checkpoint-tmp").exists()
  absl = [r.getMessage() for r in caplog.records if r.name == "absl" and r.levelno >= 30]
  assert absl == []
  assert capsys.readouterr().err == (
    f"jaxsal: removed an unfinished checkpoint of step 2 ({ck}/2.orbax-checkpoint-tmp, left by "
    "a run stopped while it was written); that step is saved again\n"
  )


# Finding 10: Ctrl-C at any moment: exit 130, one line, no traceback; with SIGKILL, resumes bitwise.


def _cli(workdir, data_dir, steps):
  sets = (f"num_train_steps={steps}", "checkpoint.every=50", "log_every=25", "eval_every=100000")
  return [sys.executable, "-m", "jaxsal.cli", *_train_argv(workdir, data_dir, *sets)]


def _env():
  # Optimised compilation: these runs are long enough that run time, not
  # compile time, dominates.
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  return env


def _steps(workdir):
  path = workdir / "checkpoints"
  return sorted(int(d) for d in os.listdir(path) if d.isdigit()) if path.exists() else []


def _signal_when(argv, ready, sig, timeout=240):
  proc = subprocess.Popen(
    argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
  )
  deadline = time.time() + timeout
  while time.time() < deadline and proc.poll() is None and not ready():
    time.sleep(0.01)
  assert proc.poll() is None, "the run ended before the signal: " + proc.stderr.read()
  proc.send_signal(sig)
  out, err = proc.communicate(timeout=120)
  return proc.returncode, out, err


def test_sigkill_and_ctrl_c_then_the_same_command_resumes_to_identical_params(data_dir, tmp_path):
  steps = 200
  work, clean = tmp_path / "run", tmp_path / "clean"
  cmd = _cli(work, data_dir, steps)
  # Ctrl-C at start-up: the workdir is there, nothing compiled or saved yet.
  rc, _, err = _signal_when(cmd, work.exists, signal.SIGINT)
  assert rc == 130, err
  assert "Traceback" not in err and err.strip().splitlines()[-1] == (
    "jaxsal: interrupted; rerun the same command to resume (no checkpoint of this run was "
    "saved yet)"
  )
  # kill -9 mid-training.
  rc, _, err = _signal_when(cmd, lambda: any(s >= 50 for s in _steps(work)), signal.SIGKILL)
  assert rc == -signal.SIGKILL
  killed_at = _steps(work)[-1]
  assert 50 <= killed_at < steps
  # Ctrl-C mid-training, after resuming: a checkpoint is saved at the step boundary, and the
  # one line names it.
  rc, out, err = _signal_when(cmd, lambda: any(s >= 100 for s in _steps(work)), signal.SIGINT)
  assert rc == 130, err
  assert f"restored checkpoint at step {killed_at}" in out
  assert "Traceback" not in err
  m = re.fullmatch(
    r"jaxsal: interrupted at step (\d+); saved a checkpoint there; rerun the same command to "
    r"resume from step \1",
    err.strip().splitlines()[-1],
  )
  assert m, err
  stopped = int(m.group(1))
  assert stopped == _steps(work)[-1] and 100 <= stopped < steps

  again = subprocess.run(cmd, capture_output=True, text=True, env=_env())
  assert again.returncode == 0, again.stderr
  assert f"restored checkpoint at step {stopped}" in again.stdout
  once = subprocess.run(_cli(clean, data_dir, steps), capture_output=True, text=True, env=_env())
  assert once.returncode == 0, once.stderr
  assert "restored" not in once.stdout
  jax.tree.map(np.testing.assert_array_equal, _params(work), _params(clean))
  # The metric log of the resumed run reads as one run: each train window logged once.
  records = [json.loads(line) for line in open(work / "metrics.jsonl")]
  assert [r["step"] for r in records if r["kind"] == "train"] == list(range(25, steps + 1, 25))
