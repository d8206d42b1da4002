"""``jaxsal explain`` on hostile inputs: clear errors that leave nothing, and images read as they are.

A tiny classifier stands in for ``--model`` (``explain.load_model`` is
patched), so each command runs in well under a second.
"""

import errno
import json
import os

import jax
import numpy as np
import pytest
from PIL import Image

from jaxsal import cli, configs, explain, models

K = 3


@pytest.fixture(scope="module")
def tiny():
  model = models.SmallCNN(num_classes=K, widths=(4, 4, 4, 4, 4))
  variables = jax.jit(lambda k: models.init_model(model, k, (1, 8, 8, 3)))(jax.random.key(0))
  apply_fn, params = models.from_linen(model, variables)
  return explain.Model(
    apply_fn,
    params,
    size=(8, 8),
    channels=3,
    mean=(0.5, 0.5, 0.5),
    std=(0.25, 0.25, 0.25),
    class_names=["a", "b", "c"],
    crop=False,
    description="tiny",
  )


@pytest.fixture
def model(tiny, monkeypatch):
  """``--model tiny`` loads the tiny classifier."""
  real = explain.load_model
  monkeypatch.setattr(
    explain, "load_model", lambda spec, size=224: tiny if spec == "tiny" else real(spec, size=size)
  )
  return tiny


def _png(path, value=0, size=8):
  rng = np.random.default_rng(value)
  Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
  return str(path)


def _tree(root):
  return sorted(
    (os.path.relpath(os.path.join(d, f), root), os.path.getsize(os.path.join(d, f)))
    for d, _, fs in os.walk(root)
    for f in fs
  ) + sorted(os.path.relpath(d, root) for d, _, _ in os.walk(root))


def _fails(tmp_path, capsys, argv, message, out=None):
  """The command exits 2 with ``jaxsal: error: ...message...`` and leaves tmp_path unchanged."""
  out = str(tmp_path / "out") if out is None else out
  before = _tree(tmp_path)
  methods = [] if "--methods" in argv else ["--methods", "gradient"]
  assert cli.main(["explain", *argv, *methods, "--out", out, "--no-progress"]) == 2
  err = capsys.readouterr().err
  assert err.startswith("jaxsal: error: "), err
  assert message in err, err
  assert _tree(tmp_path) == before
  return err


def _run(argv):
  methods = [] if "--methods" in argv else ["--methods", "gradient"]
  assert cli.main(["explain", *argv, *methods, "--no-progress"]) == 0


# --- finding 6: 16-bit images -------------------------------------------------------------


def test_a_16_bit_png_is_read_at_its_real_range_not_saturated(tmp_path, model):
  rng = np.random.default_rng(0)
  a8 = rng.integers(0, 256, (8, 8), dtype=np.uint8)
  # 257 * v is v in 16 bits; +100 is below half a step, so it rounds back to v.
  Image.fromarray((a8.astype(np.uint16) * 257 + (a8 < 255) * 100).astype(np.uint16)).save(
    tmp_path / "deep.png"
  )
  Image.fromarray(a8).save(tmp_path / "flat.png")
  assert Image.open(tmp_path / "deep.png").mode == "I;16"
  got = explain.read_image(str(tmp_path / "deep.png"))
  assert got.dtype == np.uint8 and got.shape == (8, 8, 3)
  np.testing.assert_array_equal(got, np.repeat(a8[..., None], 3, -1))
  # The command explains the 16-bit file as its 8-bit twin.
  _run([str(tmp_path / "deep.png"), "--model", "tiny", "--out", str(tmp_path / "o16")])
  _run([str(tmp_path / "flat.png"), "--model", "tiny", "--out", str(tmp_path / "o8")])
  np.testing.assert_array_equal(
    np.load(tmp_path / "o16" / "images" / "deep" / "gradient.npy"),
    np.load(tmp_path / "o8" / "images" / "flat" / "gradient.npy"),
  )


# --- finding 5: non-finite images ---------------------------------------------------------


def test_an_image_with_nan_or_inf_is_refused_naming_the_file(tmp_path, capsys, model):
  a = np.full((8, 8), 0.5, np.float32)
  a[3, 4] = np.nan
  Image.fromarray(a, mode="F").save(tmp_path / "nan.tif")
  a[3, 4] = np.inf
  Image.fromarray(a, mode="F").save(tmp_path / "inf.tif")
  for name in ("nan.tif", "inf.tif"):
    path = str(tmp_path / name)
    _fails(
      tmp_path,
      capsys,
      [path, "--model", "tiny"],
      f"image {path!r} has NaN or inf values (mode 'F'); give an image with finite values",
    )


def test_an_image_the_model_normalises_to_inf_is_refused_naming_the_file(
  tmp_path, capsys, model, monkeypatch
):
  monkeypatch.setattr(model, "std", np.zeros(3, np.float32))
  path = _png(tmp_path / "cat.png")
  _fails(
    tmp_path,
    capsys,
    [path, "--model", "tiny"],
    f"image {path!r} is not finite after the model's normalisation (mean [0.5, 0.5, 0.5], "
    "std [0.0, 0.0, 0.0]); nothing was written",
  )


# --- finding 9: decompression bombs -------------------------------------------------------


@pytest.mark.parametrize("limit", [100, 200])  # 16x16 is over twice 100 (PIL's error), 200 warns
def test_an_image_over_the_pixel_limit_is_a_clear_error_naming_its_size(
  tmp_path, capsys, model, monkeypatch, limit
):
  path = _png(tmp_path / "bomb.png", size=16)
  monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
  _fails(
    tmp_path,
    capsys,
    [path, "--model", "tiny"],
    f"image {path!r} is too large to read: 16 x 16 = 256 pixels, over the limit of {limit} "
    "pixels (PIL.Image.MAX_IMAGE_PIXELS, a guard against decompression bombs)",
  )
  assert limit == Image.MAX_IMAGE_PIXELS


# --- finding 7: output names that collide -------------------------------------------------


def test_no_input_name_collides_with_the_outputs(tmp_path, model):
  (tmp_path / "a").mkdir()
  (tmp_path / "b").mkdir()
  files = [
    _png(tmp_path / "explain.json.png", 1),
    _png(tmp_path / "grid.png.png", 2),
    _png(tmp_path / "a" / "cat.png", 3),
    _png(tmp_path / "b" / "cat.png", 4),
    _png(tmp_path / "b" / "cat_2.png", 5),
    _png(tmp_path / "b" / "Cat.PNG", 6),
  ]
  out = tmp_path / "out"
  _run([*files, "--model", "tiny", "--out", str(out)])
  summary = json.load(open(out / "explain.json"))
  names = [im["name"] for im in summary["images"]]
  assert names == ["explain.json", "grid.png", "cat", "cat_2", "cat_2_2", "Cat_3"]
  assert [im["file"] for im in summary["images"]] == [os.path.abspath(f) for f in files]
  assert sorted(os.listdir(out)) == ["explain.json", "grid.png", "images"]
  assert sorted(os.listdir(out / "images")) == sorted(names)
  for f in summary["files"]:
    assert os.path.isfile(out / f), f
  assert len(summary["files"]) == 6 * 2 + 2
  # Each image's map is its own file's map: the two cat.png differ.
  cat_a, cat_b = (np.load(out / "images" / n / "gradient.npy") for n in ("cat", "cat_2"))
  assert not np.array_equal(cat_a, cat_b)


# --- finding 9: --out checked before computing; full disk; umask ----------------------------


def test_out_is_checked_before_anything_is_computed(tmp_path, capsys, model, monkeypatch):
  path = _png(tmp_path / "cat.png")
  monkeypatch.setattr(explain, "compute_maps", lambda *a, **k: pytest.fail("computed"))
  (tmp_path / "file.txt").write_text("keep me")
  _fails(
    tmp_path,
    capsys,
    [path, "--model", "tiny"],
    f"out {str(tmp_path / 'file.txt')!r} is an existing file; give a new or empty folder",
    out=str(tmp_path / "file.txt"),
  )
  _fails(
    tmp_path,
    capsys,
    [path, "--model", "tiny"],
    f"out {str(tmp_path / 'file.txt' / 'sub')!r}: {str(tmp_path / 'file.txt')!r} is a file, "
    "not a folder",
    out=str(tmp_path / "file.txt" / "sub"),
  )
  (tmp_path / "full").mkdir()
  (tmp_path / "full" / "x").write_text("")
  _fails(
    tmp_path,
    capsys,
    [path, "--model", "tiny"],
    "exists and is not an empty folder; choose a new one",
    out=str(tmp_path / "full"),
  )

  def denied(*args, **kwargs):
    raise PermissionError(errno.EACCES, "Permission denied")

  monkeypatch.setattr(explain.tempfile, "mkdtemp", denied)  # as root, chmod would not stop us
  _fails(
    tmp_path,
    capsys,
    [path, "--model", "tiny"],
    f"out {str(tmp_path / 'new' / 'out')!r} cannot be written: Permission denied "
    f"({str(tmp_path / 'new')!r}); give a folder you can write to",
    out=str(tmp_path / "new" / "out"),
  )


def test_a_full_disk_is_a_clear_error_and_nothing_is_half_written(
  tmp_path, capsys, model, monkeypatch
):
  path = _png(tmp_path / "cat.png")
  calls = []

  def full(*args, **kwargs):
    calls.append(args[0])
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(np, "save", full)
  _fails(
    tmp_path,
    capsys,
    [path, "--model", "tiny"],
    f"out {str(tmp_path / 'deep' / 'er' / 'out')!r}: could not write the outputs (No space left "
    "on device, the disk is full); nothing was written",
    out=str(tmp_path / "deep" / "er" / "out"),
  )
  assert calls  # the failure was in the writing, after the computing


def test_the_output_folder_gets_the_users_umask(tmp_path, model):
  path = _png(tmp_path / "cat.png")
  old = os.umask(0o027)
  try:
    _run([path, "--model", "tiny", "--out", str(tmp_path / "out")])
  finally:
    os.umask(old)
  assert os.stat(tmp_path / "out").st_mode & 0o777 == 0o750
  assert os.stat(tmp_path / "out" / "images" / "cat").st_mode & 0o777 == 0o750
  assert os.stat(tmp_path / "out" / "explain.json").st_mode & 0o777 == 0o640


# --- finding 9: workdirs of another kind, no images -----------------------------------------


@pytest.mark.parametrize(
  "kind,message",
  [
    ("empty", "is not a jaxsal classifier workdir: it has no config.json; --model expects a "),
    ("masker", "is a masker workdir (written by jaxsal train-masker; config mode 'ca'), not a "),
    ("generator", "is a generator workdir (written by jaxsal train-generator; a VAE with "),
    ("other", "is not a jaxsal classifier workdir: its config.json has no model.name (top-level "),
  ],
)
def test_a_workdir_that_holds_no_classifier_says_what_it_holds(tmp_path, capsys, kind, message):
  work = tmp_path / kind
  work.mkdir()
  config = {
    "masker": configs.get_config("masker_digits:test").to_json(),
    "generator": configs.get_config("generator_digits:test").to_json(),
    "other": json.dumps({"seed": 0}),
  }
  if kind in config:
    (work / "config.json").write_text(config[kind])
  path = _png(tmp_path / "cat.png")
  err = _fails(tmp_path, capsys, [path, "--model", str(work)], f"model {str(work)!r} {message}")
  assert "classifier workdir (written by jaxsal train) or ARCH:FILE" in err


def test_a_batch_of_zero_images_is_a_clear_error(tmp_path, capsys, model):
  path = _png(tmp_path / "cat.png")
  _fails(
    tmp_path,
    capsys,
    [path, "--model", "tiny", "--batch-size", "0"],
    "batch_size must be a positive integer; got 0",
  )
  (tmp_path / "none").mkdir()
  _fails(tmp_path, capsys, [str(tmp_path / "none"), "--model", "tiny"], "has no images")
  with pytest.raises(ValueError, match=r"^x: no images to explain \(a batch of 0 images\)$"):
    explain.compute_maps(
      model.apply_fn, model.params, np.zeros((0, 8, 8, 3)), {}, None, keys=None, batch_size=1
    )
