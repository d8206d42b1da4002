import pytest

from jaxsal import configs, train


def test_shipped_configs_load_with_every_variant():
  assert {"small_cnn_digits", "resnet50_imagenet", "grid_pointing_digits"} <= set(
    configs.list_configs()
  )
  for spec in (
    "small_cnn_digits",
    "small_cnn_digits:cpu",
    "small_cnn_digits:test",
    "resnet50_imagenet",
    "resnet50_imagenet:cpu",
  ):
    c = configs.get_config(spec)
    train.validate_config(c)  # every name known, every number valid
  for spec in (
    "masker_digits",
    "masker_digits:fix",
    "masker_digits:ca_in",
    "masker_digits:ca_out",
    "masker_digits:ca_fewshot",
    "masker_digits:fix_fewshot",
    "masker_digits:ca_pool",
    "masker_digits:test",
    "masker_resnet50_imagenet",
    "masker_resnet50_imagenet:fix",
    "masker_resnet50_imagenet:cpu",
  ):
    train.validate_masker_config(configs.get_config(spec))
  for spec in (
    "grid_pointing_digits",
    "grid_pointing_digits:test",
    "sanity_digits",
    "sanity_digits:test",
  ):
    c = configs.get_config(spec)
    train.validate_config(c.classifier)
    if "random_classifier" in c:
      train.validate_config(c.random_classifier)


def test_masker_presets_are_the_papers():
  fix, ca = (
    configs.get_config("masker_resnet50_imagenet:fix"),
    configs.get_config("masker_resnet50_imagenet"),
  )
  assert (fix.mode, ca.mode) == ("fix", "ca")
  for c, lam_out in ((fix, 10.0), (ca, 15.0)):
    assert (c.objective.lam_in, c.objective.lam_out, c.objective.lam_tv) == (1.0, lam_out, 1e-3)
    assert c.batch_size == 72 and tuple(c.masker.layers) == ("l3", "l4")
    assert c.masker_optimizer.name == "adam" and c.masker_optimizer.learning_rate == 1e-3
    assert c.masker_optimizer.grad_clip_norm == 10.0
    assert c.classifier_optimizer.name == "sgd" and c.classifier_optimizer.momentum == 0.9
    # 60 epochs of 20% of ImageNet's training set at batch 72.
    assert c.num_train_steps == int(60 * 0.2 * 1_281_167) // 72
  assert ca.historic_prob == 0.5 and ca.objective.tv_counted_twice


def test_resnet50_recipe_numbers():
  c = configs.get_config("resnet50_imagenet")
  assert c.optimizer.learning_rate == pytest.approx(0.4)  # 0.1 per 256 images at batch 1024
  assert c.num_train_steps == 90 * (1_281_167 // 1024)


def test_overrides_parse_literals_and_leave_original_alone():
  c = configs.get_config("small_cnn_digits:test")
  d = configs.apply_overrides(
    c,
    [
      "num_train_steps=7",
      "optimizer.learning_rate=1",
      "dataset.mean=(0.5,)",
      "model.name=resnet18",
    ],
  )
  assert d.num_train_steps == 7 and d.optimizer.learning_rate == 1.0
  assert d.dataset.mean == (0.5,) and d.model.name == "resnet18"
  assert c.num_train_steps == 40 and c.model.name == "small_cnn"


def test_unknown_key_is_an_error_listing_the_keys():
  c = configs.get_config("small_cnn_digits:test")
  with pytest.raises(KeyError, match="'lr' is not among the keys of optimizer: .*learning_rate"):
    configs.apply_overrides(c, ["optimizer.lr=0.1"])
  with pytest.raises(KeyError, match="num_trian_steps"):
    configs.apply_overrides(c, ["num_trian_steps=3"])


def test_wrong_type_and_malformed_override():
  c = configs.get_config("small_cnn_digits:test")
  with pytest.raises(ValueError, match="expected a value of type int"):
    configs.apply_overrides(c, ["batch_size=big"])
  with pytest.raises(ValueError, match="key.sub=value"):
    configs.apply_overrides(c, ["batch_size"])


def test_unknown_config_and_variant(tmp_path):
  with pytest.raises(ValueError, match="unknown config 'nope'; known configs: .*small_cnn_digits"):
    configs.get_config("nope")
  with pytest.raises(ValueError, match="unknown variant 'tpu'"):
    configs.get_config("small_cnn_digits:tpu")
  path = tmp_path / "mine.py"
  path.write_text(
    "import ml_collections\n"
    "def get_config(arg):\n  return ml_collections.ConfigDict({'arg': arg})\n"
  )
  assert configs.get_config(f"{path}:x").arg == "x"
  with pytest.raises(ValueError, match="does not exist"):
    configs.get_config(str(tmp_path / "missing.py"))
