"""launch/launch.py dry runs: the commands for a 4-host TPU slice and for one GPU node."""

import importlib.util
import os
import shlex

import pytest

from jaxsal import configs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _launch():
  spec = importlib.util.spec_from_file_location("launch", os.path.join(ROOT, "launch", "launch.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _jaxsal_args(remote: str) -> tuple[str, list[str]]:
  """The config and the --set overrides of a printed jaxsal command."""
  words = shlex.split(remote)
  words = words[words.index("jaxsal") :]
  config = words[words.index("--config") + 1]
  sets = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
  return config, sets


def test_tpu_dry_run_for_a_4_host_slice(capsys):
  launch = _launch()
  assert launch.tpu_hosts("v4-32") == 4 and launch.tpu_hosts("v5litepod-16") == 4
  assert launch.tpu_hosts("v4-8") == 1
  rc = launch.main(
    [
      "tpu",
      "--name",
      "sal",
      "--zone",
      "us-central2-b",
      "--accelerator",
      "v4-32",
      "--bucket",
      "gs://b/j",
      "--mode",
      "fix",
      "--dry-run",
    ]
  )
  lines = capsys.readouterr().out.strip().splitlines()
  assert rc == 0 and lines[0].startswith("# v4-32: 4 hosts")
  create, install, run = lines[1:]
  assert create.startswith(
    "gcloud compute tpus tpu-vm create sal --zone=us-central2-b --accelerator-type=v4-32"
  )
  for line in (install, run):
    assert " ssh sal " in line and "--worker=all" in line
  remote = shlex.split(run)[-1].removeprefix("--command=")
  config, sets = _jaxsal_args(remote)
  assert config == "masker_resnet50_imagenet:fix"
  assert "--workdir gs://b/j/masker_resnet50_fix" in remote
  c = configs.apply_overrides(configs.get_config(config), sets)  # every override is a real key
  assert c.mode == "fix" and c.classifier_workdir == "gs://b/j/resnet50_imagenet"
  assert c.classifier.dataset.data_dir == "gs://b/j/tensorflow_datasets"


def test_gpu_dry_run_for_one_node_and_the_classifier_stage(capsys):
  launch = _launch()
  assert launch.main(["gpu", "--workdir", "/r/m", "--gpus", "8", "--no-install", "--dry-run"]) == 0
  line = capsys.readouterr().out.strip().splitlines()[-1]
  assert line.startswith(
    "env XLA_PYTHON_CLIENT_MEM_FRACTION=0.9 "
    "CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 jaxsal train-masker"
  )
  config, sets = _jaxsal_args(line)
  c = configs.apply_overrides(configs.get_config(config), sets)
  assert c.mode == "ca" and c.classifier_workdir == "/r/m/classifier"
  launch.main(
    [
      "tpu",
      "--name",
      "s",
      "--zone",
      "z",
      "--bucket",
      "gs://b",
      "--stage",
      "classifier",
      "--no-create",
      "--dry-run",
    ]
  )
  run = capsys.readouterr().out.strip().splitlines()[-1]
  config, sets = _jaxsal_args(shlex.split(run)[-1].removeprefix("--command="))
  assert config == "resnet50_imagenet"
  assert (
    configs.apply_overrides(configs.get_config(config), sets).dataset.data_dir
    == "gs://b/tensorflow_datasets"
  )


def test_gpu_nodes_and_tpu_hosts_get_the_local_launchers_settings(capsys):
  """Every mode passes the same JAXSAL_* settings as ``launch.py local`` gives its processes."""
  launch = _launch()
  argv = ["gpu", "--workdir", "/r", "--no-install", "--dry-run", "--heartbeat-timeout", "30"]
  argv += ["--nodes", "2", "--node-rank", "1", "--coordinator", "node0:1234"]
  assert launch.main(argv) == 0
  words = shlex.split(capsys.readouterr().out.strip().splitlines()[-1])
  env = dict(w.split("=", 1) for w in words[1 : words.index("jaxsal")])
  local = launch.process_env(1, 2, 4, 1234, heartbeat_timeout=30, base={})
  for k in ("JAXSAL_NUM_PROCESSES", "JAXSAL_PROCESS_ID", "JAXSAL_HEARTBEAT_TIMEOUT"):
    assert env[k] == local[k]
  assert env["JAXSAL_COORDINATOR_ADDRESS"] == "node0:1234"
  argv = ["tpu", "--name", "s", "--zone", "z", "--bucket", "gs://b", "--dry-run"]
  assert launch.main(argv + ["--heartbeat-timeout", "30"]) == 0
  remote = shlex.split(capsys.readouterr().out.strip().splitlines()[-1])[-1]
  assert remote.startswith("--command=env JAXSAL_HEARTBEAT_TIMEOUT=30 jaxsal train-masker")


def test_local_dry_run_and_process_environment(capsys):
  launch = _launch()
  argv = ["local", "--processes", "3", "--devices-per-process", "2", "--port", "0"]
  assert launch.main(argv + ["--dry-run", "--", "jaxsal", "configs"]) == 2  # port 0
  assert "--port must be in 1..65535; got 0" in capsys.readouterr().err
  argv[-1] = str(launch.free_port())
  assert launch.main(argv + ["--dry-run", "--", "jaxsal", "configs"]) == 0
  assert "3 processes x 2 CPU devices" in capsys.readouterr().out
  env = launch.process_env(2, 3, 2, 5555, base={"PATH": "/bin"})
  assert env == {
    "PATH": "/bin",
    "JAXSAL_COORDINATOR_ADDRESS": "127.0.0.1:5555",
    "JAXSAL_NUM_PROCESSES": "3",
    "JAXSAL_PROCESS_ID": "2",
    "JAX_PLATFORMS": "cpu",
    "JAX_NUM_CPU_DEVICES": "2",
    "PYTHONUNBUFFERED": "1",
  }


def test_local_launcher_returns_the_first_failure_and_stops_the_others(capsys, tmp_path):
  """One process fails at once, the other would sleep for a minute: the job ends with the
  failure's status in a few seconds."""
  import time

  launch = _launch()
  script = 'if [ "$JAXSAL_PROCESS_ID" = 1 ]; then echo bad; exit 7; fi; echo fine; sleep 60'
  t0 = time.monotonic()
  rc = launch.main(["local", "--grace", "1", "--", "sh", "-c", script])
  assert rc == 7 and time.monotonic() - t0 < 30
  out = capsys.readouterr()
  assert "[1] bad" in out.out and "[0] fine" in out.out
  assert "process 1 exited with status 7; stopping the others" in out.err


@pytest.mark.parametrize(
  "argv,message",
  [
    (["local", "--processes", "0", "--", "jaxsal"], "--processes must be >= 1; got 0"),
    (["local", "--", "no-such-command-xyz"], "command 'no-such-command-xyz' is not found on PATH"),
    (["local"], "no command to run"),
    (["gpu", "--workdir", "/r", "--nodes", "2"], "--coordinator must be HOST:PORT"),
    (["gpu", "--workdir", "/r", "--heartbeat-timeout", "0"], "--heartbeat-timeout must be >= 1"),
    (
      ["tpu", "--name", "s", "--zone", "z", "--accelerator", "v9-8", "--bucket", "gs://b"],
      "--accelerator must look like v4-32",
    ),
    (
      ["tpu", "--name", "s", "--zone", "z", "--bucket", "/local/dir"],
      "--bucket must be a gs:// path every host can reach",
    ),
  ],
)
def test_bad_launch_arguments_are_refused(argv, message, capsys):
  assert _launch().main(argv + ["--dry-run"]) == 2
  assert message in capsys.readouterr().err
