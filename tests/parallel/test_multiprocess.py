"""A pod rehearsed on one machine: jaxsal commands as 2 processes x 4 CPU devices vs 1 x 8.

Every run here is a real ``jaxsal`` command in subprocesses: the 2-process
runs go through ``launch/launch.py local`` (a coordinator on localhost, gloo
collectives), the 1-process runs get 8 CPU devices. Both meshes span 8
devices, so the programs are the same and the results agree up to the order
of the floating-point reductions across processes.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAUNCH = os.path.join(ROOT, "launch", "launch.py")
JAXSAL = os.path.join(os.path.dirname(sys.executable), "jaxsal")
TIMEOUT = 600
HEARTBEAT = 5  # seconds; a lost process stops the others after this


def _env(**extra) -> dict:
  env = {k: v for k, v in os.environ.items() if not k.startswith("JAXSAL_")}
  env.pop("XLA_FLAGS", None)
  env.update(JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1", **extra)
  return env


def one_process(*args: str, check: bool = True) -> subprocess.CompletedProcess:
  """``jaxsal ARGS`` as one process with 8 CPU devices."""
  out = subprocess.run(
    [JAXSAL, *args],
    env=_env(JAX_NUM_CPU_DEVICES="8"),
    capture_output=True,
    text=True,
    timeout=TIMEOUT,
    cwd=ROOT,
  )
  if check:
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  return out


def two_processes(*args: str, check: bool = True, launcher=()) -> subprocess.CompletedProcess:
  """``jaxsal ARGS`` as 2 processes x 4 CPU devices, through the local launcher."""
  cmd = [sys.executable, LAUNCH, "local", "--processes", "2", "--devices-per-process", "4"]
  out = subprocess.run(
    [*cmd, *launcher, "--", JAXSAL, *args],
    env=_env(),
    capture_output=True,
    text=True,
    timeout=TIMEOUT,
    cwd=ROOT,
  )
  if check:
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  return out


def final_state(workdir) -> dict:
  """The latest checkpoint's state in ``workdir`` as numpy arrays (read on one device)."""
  ckpts = os.path.join(workdir, "checkpoints")
  step = max(int(s) for s in os.listdir(ckpts) if s.isdigit())
  path = os.path.join(ckpts, str(step), "state")
  reader = ocp.StandardCheckpointer()
  meta = reader.metadata(path)
  meta = getattr(meta, "item_metadata", meta)
  one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one), meta)
  return jax.device_get(reader.restore(path, target))


def max_diff(a, b) -> float:
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(la) == len(lb) and la
  return max(
    float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
    for x, y in zip(la, lb, strict=True)
    if np.asarray(x).size
  )


def records(workdir) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    lines = f.read().splitlines()
  out = [json.loads(line) for line in lines]  # every line whole JSON: none interleaved
  keys = [(r["step"], r["kind"]) for r in out]
  assert len(keys) == len(set(keys)), "a (step, kind) record written twice"
  return out


def files(workdir) -> list[str]:
  """Every file under ``workdir``, relative, without the checkpoints' insides."""
  out = []
  for root, dirs, names in os.walk(workdir):
    rel = os.path.relpath(root, workdir)
    if rel.split(os.sep)[0] in ("checkpoints", "checkpoints_set_aside"):
      continue
    out += [os.path.normpath(os.path.join(rel, n)) for n in names]
  return sorted(out)


def assert_same_training(one, two, *, metric_keys, atol=1e-5):
  """Same per-step losses and same final parameters (``atol``); same files, written once."""
  r1, r2 = records(one), records(two)
  assert [(r["step"], r["kind"]) for r in r1] == [(r["step"], r["kind"]) for r in r2]
  for a, b in zip(r1, r2, strict=True):
    for k in a:
      if k.startswith(("train_", "eval_")) and k in metric_keys:
        assert a[k] == pytest.approx(b[k], abs=atol), (a["step"], a["kind"], k)
  s1, s2 = final_state(one), final_state(two)
  assert int(s1["step"]) == int(s2["step"])
  params = [k for k in s1 if k.endswith("params")]  # the masker's state holds two sets
  assert params and max_diff({k: s1[k] for k in params}, {k: s2[k] for k in params}) < atol
  assert files(one) == files(two)
  assert sorted(os.listdir(os.path.join(one, "checkpoints"))) == sorted(
    os.listdir(os.path.join(two, "checkpoints"))
  )


@pytest.fixture(scope="module")
def classifiers(tmp_path_factory):
  """``jaxsal train --config small_cnn_digits:test`` as 1 x 8 and as 2 x 4."""
  base = tmp_path_factory.mktemp("classifiers")
  one, two = str(base / "one"), str(base / "two")
  args = ("train", "--config", "small_cnn_digits:test", "--no-progress")
  one_process(*args, "--workdir", one)
  out = two_processes(*args, "--workdir", two)
  return one, two, out


def test_train_two_processes_equal_one(classifiers):
  one, two, out = classifiers
  keys = ("train_loss", "train_accuracy", "eval_loss", "eval_accuracy")
  assert_same_training(one, two, metric_keys=keys)
  e1 = [r for r in records(one) if r["kind"] == "eval"]
  e2 = [r for r in records(two) if r["kind"] == "eval"]
  assert [r["eval_accuracy"] for r in e1] == [r["eval_accuracy"] for r in e2]
  assert [r["eval_count"] for r in e2] == [500, 500]  # every test image once, not twice
  # Both processes ran and printed their line; the files were written once.
  assert "[0] jaxsal: trained small_cnn" in out.stdout
  assert "[1] jaxsal: trained small_cnn" in out.stdout
  assert files(two) == ["config.json", "identity.json", "metrics.jsonl", "run.lock"]


@pytest.mark.parametrize("mode", ["ca", "fix"])
def test_train_masker_two_processes_equal_one(classifiers, tmp_path, mode):
  classifier = classifiers[0]
  args = (
    "train-masker",
    "--config",
    "masker_digits:test",
    "--set",
    f"classifier_workdir={classifier}",
    "--set",
    f"mode={mode}",
    "--no-progress",
  )
  one, two = str(tmp_path / "one"), str(tmp_path / "two")
  one_process(*args, "--workdir", one)
  two_processes(*args, "--workdir", two)
  keys = ("train_loss", "eval_le", "eval_om", "eval_f1", "eval_area", "eval_accuracy")
  assert_same_training(one, two, metric_keys=keys)
  with open(os.path.join(one, "eval.json")) as f1, open(os.path.join(two, "eval.json")) as f2:
    m1, m2 = json.load(f1)["metrics"], json.load(f2)["metrics"]
  assert m1["count"] == m2["count"] == 32
  for k in m1:
    assert m1[k] == pytest.approx(m2[k], abs=1e-5), k


def test_train_generator_two_processes_equal_one(tmp_path):
  args = ("train-generator", "--config", "generator_digits:test", "--no-progress")
  one, two = str(tmp_path / "one"), str(tmp_path / "two")
  one_process(*args, "--workdir", one)
  two_processes(*args, "--workdir", two)
  assert_same_training(one, two, metric_keys=("train_loss", "eval_loss", "eval_nll"), atol=1e-3)
  # The -ELBO is ~700 nats: 1e-3 absolute is 1.5e-6 relative; parameters within 1e-5.
  assert max_diff(final_state(one)["params"], final_state(two)["params"]) < 1e-5


def _copy(src, dst):
  subprocess.run(["cp", "-r", src, dst], check=True)


@pytest.mark.parametrize(
  "command,config,result",
  [
    ("grid-pointing", "grid_pointing_digits:test", "grid_pointing.json"),
    ("localization", "localization_digits:test", "localization.json"),
  ],
)
def test_experiments_two_processes_equal_one(classifiers, tmp_path, command, config, result):
  """The same trained models, evaluated by 1 and by 2 processes: the same result tables."""
  one, two = str(tmp_path / "one"), str(tmp_path / "two")
  _copy(classifiers[0], one)
  _copy(classifiers[0], two)
  args = (command, "--config", config, "--no-progress")
  first = one_process(*args, "--workdir", one)
  if command == "localization":
    # The masker the first run trained is evaluated by both.
    _copy(os.path.join(one, "maskers"), os.path.join(two, "maskers"))
  second = two_processes(*args, "--workdir", two)
  table = [line for line in first.stdout.splitlines() if "|" in line]
  assert table and len(table) >= 3
  for i in (0, 1):
    assert [
      line[4:] for line in second.stdout.splitlines() if line.startswith(f"[{i}]") and "|" in line
    ] == table
  with open(os.path.join(one, result)) as f1, open(os.path.join(two, result)) as f2:
    r1, r2 = json.load(f1), json.load(f2)
  rows1 = r1.get("rows") or r1["grids"]
  rows2 = r2.get("rows") or r2["grids"]
  flat1 = {k: v for k, v in _leaves(rows1)}
  flat2 = {k: v for k, v in _leaves(rows2)}
  assert flat1.keys() == flat2.keys() and flat1
  for k, v in flat1.items():
    assert flat2[k] == pytest.approx(v, abs=1e-5), k
  assert files(two) == files(one)


def _leaves(tree, prefix=""):
  if isinstance(tree, dict):
    for k, v in tree.items():
      yield from _leaves(v, f"{prefix}{k}/")
  elif isinstance(tree, (int, float)):
    yield prefix, tree


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_a_lost_process_stops_the_job_and_the_rerun_resumes_bitwise(classifiers, tmp_path):
  """SIGKILL one of two processes after a checkpoint: the other exits within the heartbeat
  timeout, and rerunning the launcher command ends where an uninterrupted 2-process run does."""
  sys.path.insert(0, os.path.dirname(LAUNCH))
  try:
    import launch
  finally:
    sys.path.pop(0)
  work = str(tmp_path / "run")
  args = ("train", "--config", "small_cnn_digits:test", "--no-progress", "--workdir", work)
  port = _free_port()
  procs = [
    subprocess.Popen(
      [JAXSAL, *args],
      env=launch.process_env(i, 2, 4, port, heartbeat_timeout=HEARTBEAT, base=_env()),
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      cwd=ROOT,
    )
    for i in range(2)
  ]
  try:
    first = os.path.join(work, "checkpoints", "10")
    deadline = time.monotonic() + TIMEOUT
    while not os.path.isdir(first) and time.monotonic() < deadline:
      assert all(p.poll() is None for p in procs), procs[0].communicate()[0][-3000:]
      time.sleep(0.05)
    assert os.path.isdir(first)
    procs[1].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    rc = procs[0].wait(timeout=HEARTBEAT + 60)
    waited = time.monotonic() - killed
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
      p.communicate()
  steps = sorted(int(s) for s in os.listdir(os.path.join(work, "checkpoints")) if s.isdigit())
  assert rc != 0, "the survivor finished the run alone"
  assert waited < HEARTBEAT + 30
  assert steps and steps[-1] < 40, steps  # it stopped before the end
  out = two_processes(*args)
  assert "[0] jaxsal: restored checkpoint at step" in out.stdout
  uninterrupted = final_state(classifiers[1])
  resumed = final_state(work)
  for a, b in zip(jax.tree.leaves(uninterrupted), jax.tree.leaves(resumed), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  records(work)  # no record written twice by the resumed run


@pytest.mark.parametrize(
  "case",
  ["process_id", "port", "batch", "configs"],
)
def test_bad_setups_are_refused_before_any_work(tmp_path, case):
  work = str(tmp_path / "W")
  args = ["train", "--config", "small_cnn_digits:test", "--no-progress", "--workdir", work]
  if case == "process_id":
    env = _env(
      JAXSAL_COORDINATOR_ADDRESS="127.0.0.1:1", JAXSAL_NUM_PROCESSES="2", JAXSAL_PROCESS_ID="2"
    )
    out = subprocess.run([JAXSAL, *args], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "JAXSAL_PROCESS_ID must be an integer >= 0 and < 2; got '2'" in out.stderr
  elif case == "port":
    with socket.socket() as s:
      s.bind(("127.0.0.1", 0))
      s.listen()
      port = s.getsockname()[1]
      out = two_processes(*args, check=False, launcher=("--port", str(port)))
    assert out.returncode == 2
    assert f"launch: error: --port {port} is in use on this machine" in out.stderr
  elif case == "batch":
    out = two_processes(*args, "--set", "batch_size=12", check=False)
    assert out.returncode == 2
    assert "batch_size" in out.stdout and "12" in out.stdout and "8" in out.stdout
  else:
    # Each process runs the command with its own number of steps.
    line = " ".join([JAXSAL, *args, "--set", "num_train_steps=1$JAXSAL_PROCESS_ID"])
    cmd = [sys.executable, LAUNCH, "local", "--processes", "2", "--devices-per-process", "4"]
    out = subprocess.run(
      [*cmd, "--", "sh", "-c", line], env=_env(), capture_output=True, text=True, timeout=TIMEOUT
    )
    assert out.returncode == 2
    for i, j in ((0, 1), (1, 0)):
      assert (
        f"[{i}] jaxsal: error: the processes of this job were given different configs; "
        f"process {i} differs from process {j} in num_train_steps: 1{i} here, 1{j} on process {j}"
      ) in out.stdout
  assert not os.path.exists(os.path.join(work, "checkpoints"))
