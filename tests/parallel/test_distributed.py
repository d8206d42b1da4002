"""Multi-process settings and per-process evaluation batches, in one process."""

import numpy as np
import pytest

from jaxsal import data, parallel


@pytest.fixture
def no_job_env(monkeypatch):
  for k in (
    "JAXSAL_COORDINATOR_ADDRESS",
    "JAXSAL_NUM_PROCESSES",
    "JAXSAL_PROCESS_ID",
    "JAXSAL_HEARTBEAT_TIMEOUT",
    "JAXSAL_INIT_TIMEOUT",
  ):
    monkeypatch.delenv(k, raising=False)
  return monkeypatch


def test_settings_come_from_the_config_then_the_environment(no_job_env):
  no_job_env.setenv("JAXSAL_COORDINATOR_ADDRESS", "10.0.0.1:8476")
  no_job_env.setenv("JAXSAL_NUM_PROCESSES", "4")
  no_job_env.setenv("JAXSAL_PROCESS_ID", "3")
  no_job_env.setenv("JAXSAL_HEARTBEAT_TIMEOUT", "7")
  s = parallel.resolve_settings("auto")
  assert s == {
    "mode": "auto",
    "coordinator_address": "10.0.0.1:8476",
    "num_processes": 4,
    "process_id": 3,
    "heartbeat_timeout": 7,
    "init_timeout": 300,
  }
  # Explicit settings win over the environment.
  s = parallel.resolve_settings({"process_id": 1, "heartbeat_timeout": 20})
  assert (s["process_id"], s["num_processes"], s["heartbeat_timeout"]) == (1, 4, 20)
  assert parallel.is_multihost_environment()


def test_no_settings_means_one_process(no_job_env):
  for k in ("SLURM_NTASKS", "TPU_WORKER_HOSTNAMES", "JAX_COORDINATOR_ADDRESS"):
    no_job_env.delenv(k, raising=False)
  s = parallel.resolve_settings("auto")
  assert s["coordinator_address"] is None and s["num_processes"] is None
  assert not parallel.is_multihost_environment()
  assert parallel.initialize("auto") is False  # nothing to join: a no-op
  assert parallel.initialize("never") is False


@pytest.mark.parametrize(
  "env,settings,match",
  [
    ({"JAXSAL_PROCESS_ID": "2", "JAXSAL_NUM_PROCESSES": "2"}, {}, "needs all of"),
    (
      {"JAXSAL_COORDINATOR_ADDRESS": "h:1", "JAXSAL_NUM_PROCESSES": "2"},
      {"process_id": -1},
      r"distributed.process_id must be an integer >= 0 and < 2; got -1",
    ),
    (
      {"JAXSAL_COORDINATOR_ADDRESS": "h:1", "JAXSAL_NUM_PROCESSES": "two"},
      {"process_id": 0},
      "JAXSAL_NUM_PROCESSES must be an integer >= 1; got 'two'",
    ),
    (
      {"JAXSAL_NUM_PROCESSES": "2", "JAXSAL_PROCESS_ID": "0"},
      {"coordinator_address": "localhost"},
      "distributed.coordinator_address must be 'host:port'",
    ),
    ({}, {"heartbeat_timeout": 0}, "distributed.heartbeat_timeout must be an integer >= 1"),
    ({}, {"mode": "sometimes"}, "unknown distributed mode 'sometimes'; known: always, auto, never"),
    ({}, {"coordinator": "h:1"}, r"unknown setting\(s\) \['coordinator'\]"),
  ],
)
def test_bad_settings_are_named(no_job_env, env, settings, match):
  for k, v in env.items():
    no_job_env.setenv(k, v)
  with pytest.raises(ValueError, match=match):
    parallel.resolve_settings(settings)


def test_joining_after_the_devices_started_is_refused(no_job_env):
  import jax

  jax.devices()  # this process's backend is up
  no_job_env.setenv("JAXSAL_COORDINATOR_ADDRESS", "127.0.0.1:1")
  no_job_env.setenv("JAXSAL_NUM_PROCESSES", "2")
  no_job_env.setenv("JAXSAL_PROCESS_ID", "1")
  with pytest.raises(ValueError, match="before JAX starts its devices"):
    parallel.initialize("auto")


def test_one_process_needs_no_agreement():
  parallel.check_same_everywhere("config", {"a": 1})  # returns at once


def _source(n):
  return [
    {"image": np.full((2, 2, 1), i, np.uint8), "label": i, "box": np.asarray([i, 0, 1, 1])}
    for i in range(n)
  ]


@pytest.mark.parametrize("n,batch,processes", [(11, 4, 2), (5, 8, 4), (8, 4, 2), (3, 6, 3)])
def test_eval_batches_of_all_processes_make_one_processs(n, batch, processes):
  """Every process yields as many batches; concatenated, they are one process's batches."""
  src = _source(n)
  one = list(data.eval_batches(src, batch_size=batch, process_index=0, process_count=1))
  parts = [
    list(data.eval_batches(src, batch_size=batch, process_index=p, process_count=processes))
    for p in range(processes)
  ]
  assert len({len(p) for p in parts}) == 1 and len(parts[0]) == len(one) == -(-n // batch)
  for k, whole in enumerate(one):
    for key in whole:
      joined = np.concatenate([p[k][key] for p in parts])
      np.testing.assert_array_equal(joined, whole[key])
  labels = np.concatenate([b["label"][b["valid"] > 0] for b in one])
  np.testing.assert_array_equal(labels, np.arange(n))  # every example once, in order
  assert one[0]["image"].dtype == np.float32 and one[0]["image"].max() <= 1.0


def test_eval_batches_refuse_what_cannot_split():
  with pytest.raises(ValueError, match="must be divisible by process_count=2"):
    next(data.eval_batches(_source(4), batch_size=3, process_index=0, process_count=2))
  with pytest.raises(ValueError, match="no example to evaluate"):
    next(data.eval_batches([], batch_size=2))


def test_local_rows_and_gather_in_one_process():
  import jax.numpy as jnp

  mesh = parallel.make_mesh()
  assert parallel.local_rows(mesh, 16) == slice(0, 16)
  with pytest.raises(ValueError, match="does not split over the 8 devices"):
    parallel.local_rows(mesh, 12)
  x = parallel.shard_batch(np.arange(16.0), mesh)
  np.testing.assert_array_equal(parallel.gather({"x": x * 2})["x"], np.arange(16.0) * 2)
  assert float(parallel.gather(jnp.sum(x))) == 120.0
