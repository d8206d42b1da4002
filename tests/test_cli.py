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
