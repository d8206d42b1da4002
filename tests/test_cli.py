import pytest

from jaxsal import cli


def test_configs_lists_shipped_configs(capsys):
  assert cli.main(["configs"]) == 0
  assert "small_cnn_digits" in capsys.readouterr().out


@pytest.mark.parametrize(
  "argv,match",
  [
    (["train", "--config", "nope", "--workdir", "W"], "unknown config 'nope'"),
    (
      ["train", "--config", "small_cnn_digits:test", "--workdir", "W", "--set", "optimizer.lr=1"],
      "config has no key 'optimizer.lr'",
    ),
    (["prepare-data", "--dataset", "mnist"], "unknown dataset 'mnist'"),
    (
      ["train", "--config", "resnet50_imagenet", "--workdir", "W", "--set", "dataset.data_dir=."],
      "tfds build imagenet2012",
    ),
    (["grid-pointing", "--workdir", "W", "--set", "tau=1.5"], "tau must be a number in [0, 1)"),
    (["grid-pointing", "--workdir", "W", "--set", "methods=('lrp',)"], "unknown method 'lrp'"),
    (["sanity", "--workdir", "W", "--set", "modes=('cascade',)"], "unknown mode 'cascade'"),
    (
      ["reconstruction", "--workdir", "W"],
      "no generative model in '{tmp}/W/generator' (no generator.json, config.json and checkpoints there); "
      "train one first: jaxsal train-generator --config generator_digits --workdir W/generator",
    ),
    (
      ["reconstruction", "--workdir", "W", "--set", "methods.optimized_mask.steps=0"],
      "methods.optimized_mask.steps must be a positive integer",
    ),
    (
      ["train-generator", "--workdir", "W", "--set", "max_area=1.5"],
      "max_area must be in (0, 1]; got 1.5",
    ),
  ],
)
def test_bad_arguments_exit_2_with_a_message(argv, match, capsys, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert cli.main(argv) == 2
  err = capsys.readouterr().err
  assert err.startswith("jaxsal: error:")
  assert match.format(tmp=tmp_path) in err
  assert not (tmp_path / "W").exists()


def test_ctrl_c_advice_says_how_to_go_on(tmp_path):
  work = tmp_path / "W"
  (work / "checkpoints" / "40").mkdir(parents=True)
  (work / "checkpoints" / "50.orbax-checkpoint-tmp-1").mkdir()
  assert cli._advice(["explain", "a.png", "--model", "W", "--out", "o"]) == (
    "nothing was written; rerun the command"
  )
  assert cli._advice(["train", "--config", "c", "--workdir", str(work)]) == (
    "rerun the same command to resume from step 40"
  )
  assert cli._advice(["train-masker", f"--workdir={tmp_path / 'new'}"]) == (
    "rerun the same command to resume (no checkpoint of this run was saved yet)"
  )


# Issue 27: nonsensical hyperparameters are refused up front, naming the key,
# the value and the range allowed (a negative temperature used to train).
@pytest.mark.parametrize(
  "command,setting,message",
  [
    (
      "train-masker",
      "masker.temperature=-1.0",
      "masker.temperature must be a number > 0; got -1.0",
    ),
    ("train-masker", "masker.temperature=0.0", "masker.temperature must be a number > 0; got 0.0"),
    (
      "train-masker",
      "objective.lam_tv=-0.001",
      "objective.lam_tv must be a number >= 0; got -0.001",
    ),
    ("train-masker", "objective.lam_in=1e999", "objective.lam_in must be a number >= 0; got inf"),
    (
      "train-masker",
      "objective.blur_sigma=0.0",
      "objective.blur_sigma must be a number > 0; got 0.0",
    ),
    (
      "train-masker",
      "masker_optimizer.learning_rate=-0.001",
      "masker_optimizer.learning_rate must be a number > 0; got -0.001",
    ),
    (
      "train-masker",
      "classifier_optimizer.momentum=1.5",
      "classifier_optimizer.momentum must be a number in [0, 1); got 1.5",
    ),
    (
      "train-masker",
      "classifier.optimizer.weight_decay=-0.0001",
      "optimizer.weight_decay must be a number >= 0; got -0.0001",
    ),
    (
      "train-generator",
      "optimizer.learning_rate=0.0",
      "optimizer.learning_rate must be a number > 0; got 0.0",
    ),
    (
      "train-generator",
      "optimizer.decay_factor=-0.1",
      "optimizer.decay_factor must be a number in (0, 1]; got -0.1",
    ),
    (
      "train-generator",
      "optimizer.warmup_steps=-5",
      "optimizer.warmup_steps must be an integer >= 0; got -5",
    ),
    (
      "train",
      "optimizer.grad_clip_norm=-1.0",
      "optimizer.grad_clip_norm must be a number >= 0; got -1.0",
    ),
  ],
)
def test_nonsensical_hyperparameters_are_refused_naming_key_value_and_range(
  command, setting, message, capsys, tmp_path, monkeypatch
):
  monkeypatch.chdir(tmp_path)
  argv = [command, "--workdir", "W", "--set", setting, "--no-progress"]
  if command == "train":
    argv += ["--config", "small_cnn_digits:test"]
  assert cli.main(argv) == 2
  assert capsys.readouterr().err == f"jaxsal: error: {message}\n"
  assert list(tmp_path.iterdir()) == []


def _console_script() -> str:
  """What pip's ``jaxsal`` console script runs, from pyproject.toml's [project.scripts]."""
  import pathlib
  import tomllib

  pyproject = pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml"
  entry = tomllib.loads(pyproject.read_text())["project"]["scripts"]["jaxsal"]
  module, function = entry.split(":")
  return f"from {module} import {function}\nsys.exit({function}())\n"


# Issue 27: Ctrl-C in the first moments of `jaxsal`, while the command's
# modules are imported (before jaxsal.cli.main runs), printed a traceback.
@pytest.mark.parametrize("moment", ["jaxsal.cli", "argparse", "jax"])
def test_ctrl_c_while_the_command_starts_is_one_line_and_exit_130(moment, tmp_path):
  import subprocess
  import sys

  # The SIGINT arrives while `moment` is being imported, as a Ctrl-C would.
  code = (
    "import os, signal, sys\n"
    "def hook(event, args):\n"
    f"  if event == 'import' and args[0] == {moment!r}:\n"
    "    os.kill(os.getpid(), signal.SIGINT)\n"
    "sys.addaudithook(hook)\n"
    "sys.argv = ['jaxsal', 'configs']\n" + _console_script()
  )
  p = subprocess.run(
    [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path
  )
  assert "Traceback" not in p.stderr and "KeyboardInterrupt" not in p.stderr, p.stderr[-2000:]
  assert (p.returncode, p.stderr) == (130, "jaxsal: interrupted; rerun the command\n")
  assert p.stdout == ""
