"""The ``jaxsal`` command fed bad arguments and bad files: exit status 2, one clear line, no writes.

Every case runs ``jaxsal.cli.main(argv)`` in a fresh folder holding a set of
bad inputs (made by :func:`_make_inputs`) and asserts:

* the command ends with status 2 (argparse's own errors end it with
  ``SystemExit(2)``, which the ``jaxsal`` entry point turns into the same
  status);
* the last line of stderr starts with ``jaxsal: error:`` (argparse names the
  subcommand: ``jaxsal train: error:``) and holds the case's substring, which
  names the offending argument or value;
* no ``Traceback`` anywhere in the output;
* the tree under the folder is unchanged (the same paths, each file the same
  bytes), apart from the paths a case declares it may create (none, so far).

``{tmp}`` in an argument is the case's folder, ``{data}`` the session's
prepared-dataset folder (the ``data_dir`` fixture; only the cases that get as
far as a dataset use it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import stat

import numpy as np
import pytest

from jaxsal import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
TEST = ["--config", "small_cnn_digits:test"]
TRAIN_W = ["train", *TEST, "--workdir", "W"]
DATA = "dataset.data_dir={data}"


def _png_bytes(size: int = 8) -> bytes:
  import io

  from PIL import Image

  buf = io.BytesIO()
  rng = np.random.default_rng(0)
  Image.fromarray(rng.integers(0, 256, (size, size, 3), np.uint8)).save(buf, format="PNG")
  return buf.getvalue()


def _make_inputs(tmp) -> None:
  """The bad (and a few good) inputs every case finds in its folder."""
  from jaxsal import configs

  png = _png_bytes()
  (tmp / "img.png").write_bytes(png)
  (tmp / "text.png").write_text("this is text, not a PNG")
  (tmp / "trunc.png").write_bytes(png[: len(png) // 2])
  (tmp / "zero.png").write_bytes(b"")
  (tmp / "file.txt").write_text("a plain file\n")
  (tmp / "empty").mkdir()
  (tmp / "full").mkdir()
  (tmp / "full" / "keep.txt").write_text("already here\n")
  (tmp / "raises.py").write_text("raise RuntimeError('boom at import')\n")
  (tmp / "noget.py").write_text("X = 1\n")
  (tmp / "notpy.py").write_text("this is not { python\n")
  (tmp / "returns_int.py").write_text("def get_config(arg=None):\n  return 3\n")
  (tmp / "get_raises.py").write_text(
    "def get_config(arg=None):\n  raise ZeroDivisionError('inside get_config')\n"
  )
  (tmp / "noargs.py").write_text(
    "import ml_collections\n\ndef get_config():\n  return ml_collections.ConfigDict()\n"
  )
  (tmp / "cfgs").mkdir()
  (tmp / "cfgs" / "config.txt").write_text("def get_config(arg=None):\n  return None\n")
  (tmp / "junk.safetensors").write_bytes(b"not a safetensors file")
  # A masker workdir (what jaxsal train-masker writes first: config.json and identity.json).
  masker = configs.get_config("masker_digits:test")
  masker.classifier_workdir = "clf"
  (tmp / "masker").mkdir()
  (tmp / "masker" / "config.json").write_text(masker.to_json())
  identity = {"kind": "masker", "model": "small_cnn", "mode": "ca", "layers": ["l1", "l2"]}
  (tmp / "masker" / "identity.json").write_text(json.dumps(identity))
  (tmp / "nojson").mkdir()
  (tmp / "nojson" / "config.json").write_text("{not json")
  ro = tmp / "ro"
  ro.mkdir()
  ro.chmod(stat.S_IRUSR | stat.S_IXUSR)


def _snapshot(root) -> dict[str, bytes | None]:
  """``{relative path: the file's bytes, or None for a folder}`` of everything under ``root``."""
  out: dict[str, bytes | None] = {}
  for dirpath, dirnames, filenames in os.walk(root):
    rel = os.path.relpath(dirpath, root)
    for d in dirnames:
      out[os.path.normpath(os.path.join(rel, d))] = None
    for f in filenames:
      with open(os.path.join(dirpath, f), "rb") as fh:
        out[os.path.normpath(os.path.join(rel, f))] = fh.read()
  return out


NEEDS_NON_ROOT: set[str] = set()


def C(id, argv, match, *, allowed=(), xfail=None, needs_non_root=False):
  """A case: ``(argv, the substring of the error line, paths it may create)``."""
  if needs_non_root:
    NEEDS_NON_ROOT.add(id)
  marks = []
  if xfail:
    marks.append(pytest.mark.xfail(strict=True, reason=xfail))
  return pytest.param(list(argv), match, tuple(allowed), id=id, marks=marks)


MASKER = ["--config", "masker_digits:test"]
EXPLAIN = ["explain", "img.png", "--model", "resnet18:{weights}", "--size", "16"]

CASES = [
  # The command line itself.
  C("no-command", [], "the following arguments are required: command"),
  C("unknown-command", ["frobnicate"], "invalid choice: 'frobnicate'"),
  C("configs-extra-argument", ["configs", "--all"], "unrecognized arguments: --all"),
  # train: required arguments and configs.
  C("train-no-config", ["train", "--workdir", "W"], "required: --config"),
  C("train-no-workdir", ["train", *TEST], "required: --workdir"),
  C(
    "train-unknown-option",
    ["train", *TEST, "--workdir", "W", "--steps", "3"],
    "unrecognized arguments: --steps 3",
  ),
  C(
    "train-unknown-config",
    ["train", "--config", "nope", "--workdir", "W"],
    "unknown config 'nope'; known configs: demo_digits,",
  ),
  C("train-empty-config", ["train", "--config", "", "--workdir", "W"], "config must be a name"),
  C(
    "train-unknown-variant",
    ["train", "--config", "small_cnn_digits:huge", "--workdir", "W"],
    "unknown variant 'huge' of small_cnn_digits",
  ),
  C(
    "train-config-missing-file",
    ["train", "--config", "missing.py", "--workdir", "W"],
    "config file 'missing.py' does not exist",
  ),
  C(
    "train-config-raises",
    ["train", "--config", "raises.py", "--workdir", "W"],
    "config file 'raises.py' failed to load: RuntimeError: boom at import",
  ),
  C(
    "train-config-no-get-config",
    ["train", "--config", "noget.py", "--workdir", "W"],
    "defines no get_config(arg) function",
  ),
  C(
    "train-config-not-python",
    ["train", "--config", "notpy.py", "--workdir", "W"],
    "config file 'notpy.py' failed to load: SyntaxError",
  ),
  C(
    "train-config-not-py-suffix",
    ["train", "--config", os.path.join("cfgs", "config.txt"), "--workdir", "W"],
    "config file 'cfgs/config.txt' is not a .py file",
  ),
  C(
    "train-config-returns-int",
    ["train", "--config", "returns_int.py", "--workdir", "W"],
    "get_config(None) of 'returns_int.py' returned int, not an ml_collections.ConfigDict",
  ),
  C(
    "train-config-get-config-raises",
    ["train", "--config", "get_raises.py", "--workdir", "W"],
    "get_config(None) of 'get_raises.py' failed: ZeroDivisionError: inside get_config",
  ),
  C(
    "train-config-get-config-takes-no-arg",
    ["train", "--config", "noargs.py:x", "--workdir", "W"],
    "get_config('x') of 'noargs.py' failed: TypeError",
  ),
  C(
    "train-config-a-folder",
    ["train", "--config", "cfgs/", "--workdir", "W"],
    "config file 'cfgs/' is a folder",
  ),
  # train: --set keys and values.
  C(
    "set-no-equals", ["train", *TEST, "--workdir", "W", "--set", "num_train_steps"], "key.sub=value"
  ),
  C("set-empty-key", ["train", *TEST, "--workdir", "W", "--set", "=5"], "config has no key ''"),
  C("set-unknown-key", ["train", *TEST, "--workdir", "W", "--set", "nope=1"], "no key 'nope'"),
  C(
    "set-unknown-nested-key",
    ["train", *TEST, "--workdir", "W", "--set", "optimizer.nope=1"],
    "config has no key 'optimizer.nope'",
  ),
  C(
    "set-key-below-a-leaf",
    ["train", *TEST, "--workdir", "W", "--set", "seed.value=1"],
    "config has no key 'seed.value'",
  ),
  C(
    "set-string-for-int",
    ["train", *TEST, "--workdir", "W", "--set", "num_train_steps=abc"],
    "override 'num_train_steps=abc': expected a value of type int",
  ),
  C(
    "set-float-for-int",
    ["train", *TEST, "--workdir", "W", "--set", "batch_size=1.5"],
    "override 'batch_size=1.5': expected a value of type int",
  ),
  C(
    "set-code-injection",
    ["train", *TEST, "--workdir", "W", "--set", "num_train_steps=__import__('os').mkdir('pwned')"],
    """expected a value of type int, got "__import__('os').mkdir('pwned')" (str)""",
  ),
  C(
    "set-code-injection-in-a-string",
    ["train", *TEST, "--workdir", "W", "--set", "model.name=__import__('os').mkdir('pwned')"],
    "unknown model \"__import__('os').mkdir('pwned')\"; known:",
  ),
  C(
    "set-negative-steps",
    ["train", *TEST, "--workdir", "W", "--set", "num_train_steps=-5"],
    "num_train_steps must be a positive integer; got -5",
  ),
  C(
    "set-zero-batch",
    ["train", *TEST, "--workdir", "W", "--set", "batch_size=0"],
    "batch_size must be a positive integer; got 0",
  ),
  C(
    "set-zero-log-every",
    ["train", *TEST, "--workdir", "W", "--set", "log_every=0"],
    "log_every must be a positive integer; got 0",
  ),
  C(
    "set-tuple-for-int",
    ["train", *TEST, "--workdir", "W", "--set", "seed=(1, 2)"],
    "override 'seed=(1, 2)': expected a value of type int",
  ),
  C(
    "set-mean-std-lengths-differ",
    ["train", *TEST, "--workdir", "W", "--set", "dataset.mean=(0.5, 0.5)"],
    "dataset.mean (0.5, 0.5) and dataset.std (1.0,)",
  ),
  C(
    "set-zero-std",
    ["train", *TEST, "--workdir", "W", "--set", "dataset.std=(0.0,)"],
    "dataset.std must hold finite numbers > 0",
  ),
  C(
    "set-std-not-numbers",
    ["train", *TEST, "--workdir", "W", "--set", "dataset.std=('a',)"],
    "dataset.std must hold finite numbers > 0",
  ),
  C(
    "set-unknown-model",
    ["train", *TEST, "--workdir", "W", "--set", "model.name=vgg"],
    "unknown model 'vgg'; known:",
  ),
  C(
    "set-unknown-optimizer",
    ["train", *TEST, "--workdir", "W", "--set", "optimizer.name=adamw2"],
    "unknown optimizer.name 'adamw2'",
  ),
  C(
    "set-unknown-dataset",
    ["train", *TEST, "--workdir", "W", "--set", "dataset.name=mnist"],
    "unknown dataset 'mnist'",
  ),
  C(
    "set-int-for-mapping",
    ["train", *TEST, "--workdir", "W", "--set", "mesh.shape=3"],
    "override 'mesh.shape=3': expected a dict or a tuple of names",
  ),
  C(
    "set-unknown-label-mode",
    ["train", *TEST, "--workdir", "W", "--set", "dataset.label_randomization=shuffle"],
    "unknown dataset.label_randomization 'shuffle'",
  ),
  C(
    "set-zero-eval-batch",
    [*TRAIN_W, "--set", "eval_batch_size=0"],
    "eval_batch_size must be a positive integer; got 0",
  ),
  C(
    "set-zero-keep", [*TRAIN_W, "--set", "checkpoint.keep=0"], "checkpoint.keep must be a positive"
  ),
  C(
    "set-negative-checkpoint-every",
    [*TRAIN_W, "--set", "checkpoint.every=-1"],
    "checkpoint.every must be a positive integer; got -1",
  ),
  C(
    "set-nan-learning-rate",
    [*TRAIN_W, "--set", "optimizer.learning_rate=nan"],
    "expected a value of type float, got 'nan' (str)",
  ),
  C(
    "set-negative-mesh-devices",
    [*TRAIN_W, "--set", "mesh.num_devices=-2"],
    "mesh.num_devices must be 0 (all)",
  ),
  C(
    "set-unknown-distributed",
    [*TRAIN_W, "--set", "distributed=maybe"],
    "unknown distributed mode 'maybe'",
  ),
  C(
    "set-unknown-dataset-config",
    [*TRAIN_W, "--set", "dataset.config=huge"],
    "unknown config 'huge' of dataset 'cluttered_digits'",
  ),
  C(
    "set-unknown-model-kwarg",
    [*TRAIN_W, "--set", "model.kwargs={'depth': 3}", "--set", DATA],
    "depth",
  ),
  C(
    "set-negative-image-size",
    [*TRAIN_W, "--set", "dataset.image_size=-1", "--set", DATA, "--set", "num_train_steps=1"],
    "image_size",
  ),
  C(
    "set-negative-restore-step",
    [*TRAIN_W, "--set", "checkpoint.restore_step=-7", "--set", DATA, "--set", "num_train_steps=1"],
    "restore_step",
  ),
  # train: workdirs that cannot be this run's.
  C(
    "train-workdir-is-a-file",
    ["train", *TEST, "--workdir", "file.txt", "--set", DATA],
    "file.txt' exists and is not a directory",
  ),
  C(
    "train-workdir-under-a-file",
    ["train", *TEST, "--workdir", "file.txt/W", "--set", DATA],
    "file.txt/W' cannot be written",
  ),
  C(
    "train-workdir-read-only",
    ["train", *TEST, "--workdir", "ro/W", "--set", DATA],
    "ro/W",
    needs_non_root=True,
  ),
  C(
    "train-workdir-is-a-masker",
    ["train", *TEST, "--workdir", "masker", "--set", DATA],
    "holds another kind of run: a masker run",
  ),
  # train-masker.
  C(
    "masker-unknown-variant",
    ["train-masker", "--config", "masker_digits:fox", "--workdir", "W"],
    "unknown variant 'fox' of masker_digits",
  ),
  C("masker-no-workdir", ["train-masker", *MASKER], "required: --workdir"),
  C(
    "masker-unknown-mode",
    ["train-masker", *MASKER, "--workdir", "W", "--set", "mode=fox"],
    "unknown mode 'fox'",
  ),
  C(
    "masker-unknown-layer",
    ["train-masker", *MASKER, "--workdir", "W", "--set", "masker.layers=('l9',)"],
    "unknown tap 'l9' in masker.layers",
  ),
  C(
    "masker-zero-steps",
    ["train-masker", *MASKER, "--workdir", "W", "--set", "num_train_steps=0"],
    "num_train_steps must be a positive integer; got 0",
  ),
  C(
    "masker-classifier-workdir-is-a-file",
    ["train-masker", *MASKER, "--workdir", "W", "--set", "classifier_workdir=file.txt"],
    "classifier_workdir: no trained classifier in",
  ),
  C(
    "masker-classifier-workdir-missing",
    [
      "train-masker",
      *MASKER,
      "--workdir",
      "W",
      "--set",
      "classifier_workdir=typo",
      "--set",
      "classifier.dataset.data_dir={data}",
    ],
    "typo' (no config.json and checkpoints there)",
  ),
  C(
    "masker-classifier-workdir-is-a-masker",
    [
      "train-masker",
      *MASKER,
      "--workdir",
      "W",
      "--set",
      "classifier_workdir=masker",
      "--set",
      "classifier.dataset.data_dir={data}",
    ],
    "classifier_workdir: no trained classifier in",
  ),
  C(
    "masker-no-layers",
    ["train-masker", *MASKER, "--workdir", "W", "--set", "masker.layers=()"],
    "masker.layers must name at least one tap",
  ),
  C(
    "masker-unknown-objective",
    ["train-masker", *MASKER, "--workdir", "W", "--set", "objective.name=none"],
    "unknown objective.name 'none'",
  ),
  # train-generator.
  C(
    "generator-unknown-variant",
    ["train-generator", "--config", "generator_digits:big", "--workdir", "W"],
    "unknown variant 'big' of generator_digits",
  ),
  C(
    "generator-zero-latent",
    ["train-generator", "--workdir", "W", "--set", "model.latent_dim=0"],
    "model.latent_dim must be a positive integer; got 0",
  ),
  C(
    "generator-negative-area",
    ["train-generator", "--workdir", "W", "--set", "max_area=-0.5"],
    "max_area must be in (0, 1]; got -0.5",
  ),
  C(
    "generator-widths-not-ints",
    ["train-generator", "--workdir", "W", "--set", "model.widths=('a', 'b')"],
    "model.widths[i] must be a positive integer; got 'a'",
  ),
  C(
    "generator-no-widths",
    ["train-generator", "--workdir", "W", "--set", "model.widths=()"],
    "model.widths must name at least one stage width",
  ),
  # localization.
  C(
    "localization-unknown-variant",
    ["localization", "--config", "localization_digits:xl", "--workdir", "W"],
    "unknown variant 'xl' of localization_digits",
  ),
  C(
    "localization-zero-images",
    ["localization", "--workdir", "W", "--set", "num_images=0"],
    "num_images must be a positive integer; got 0",
  ),
  C(
    "localization-unknown-method",
    ["localization", "--workdir", "W", "--set", "methods=('lrp',)"],
    "unknown method 'lrp'",
  ),
  C(
    "localization-bad-hyperparameter",
    [
      "localization",
      "--config",
      "localization_digits:test",
      "--workdir",
      "W",
      "--set",
      "methods.gradcam.layer=l9",
    ],
    "methods.gradcam.layer: the classifier 'small_cnn' has no layer 'l9'",
  ),
  C(
    "localization-nothing-to-evaluate",
    [
      "localization",
      "--workdir",
      "W",
      "--set",
      "maskers={}",
      "--set",
      "methods={}",
      "--set",
      "center_box=False",
    ],
    "nothing to evaluate",
  ),
  C(
    "localization-workdir-is-a-masker",
    [
      "localization",
      "--config",
      "localization_digits:test",
      "--workdir",
      "masker",
      "--set",
      "classifier.dataset.data_dir={data}",
    ],
    "holds another kind of run: a masker run",
  ),
  C(
    "localization-negative-batch",
    ["localization", "--workdir", "W", "--set", "batch_size=-4"],
    "batch_size must be a positive integer; got -4",
  ),
  C(
    "localization-unknown-masker",
    ["localization", "--workdir", "W", "--set", "maskers=('zz',)"],
    "maskers.zz is empty",
  ),
  C(
    "localization-unknown-model-kwarg",
    [
      "localization",
      "--config",
      "localization_digits:test",
      "--workdir",
      "W",
      "--set",
      "classifier.model.kwargs={'depth': 3}",
    ],
    "model.kwargs {'depth': 3}: model 'small_cnn' does not take them",
  ),
  # grid-pointing.
  C(
    "grid-negative-tau",
    ["grid-pointing", "--workdir", "W", "--set", "tau=-0.1"],
    "tau must be a number in [0, 1)",
  ),
  C(
    "grid-no-methods",
    ["grid-pointing", "--workdir", "W", "--set", "methods=()"],
    "methods must name at least one method",
  ),
  C(
    "grid-no-sizes",
    ["grid-pointing", "--workdir", "W", "--set", "grid_sizes=()"],
    "grid_sizes must name at least one grid size",
  ),
  C(
    "grid-zero-size",
    ["grid-pointing", "--workdir", "W", "--set", "grid_sizes=(0,)"],
    "grid_sizes entry must be a positive integer; got 0",
  ),
  C(
    "grid-even-smooth",
    ["grid-pointing", "--workdir", "W", "--set", "smooth=2"],
    "smooth must be 0 or an odd window size; got 2",
  ),
  C(
    "grid-unknown-hyperparameter",
    ["grid-pointing", "--workdir", "W", "--set", "methods.integrated_gradients.stepz=4"],
    "config has no key 'methods.integrated_gradients.stepz'",
  ),
  C(
    "grid-string-hyperparameter",
    ["grid-pointing", "--workdir", "W", "--set", "methods.integrated_gradients.steps=many"],
    "expected a value of type int, got 'many'",
  ),
  C(
    "grid-size-not-a-number",
    ["grid-pointing", "--workdir", "W", "--set", "grid_sizes=(2, 'x')"],
    "grid_sizes entry must be a positive integer; got 'x'",
  ),
  C(
    "grid-confidence-above-1",
    ["grid-pointing", "--workdir", "W", "--set", "min_confidence=2.0"],
    "min_confidence must be in [0, 1]; got 2.0",
  ),
  # sanity.
  C(
    "sanity-unknown-mode",
    ["sanity", "--workdir", "W", "--set", "modes=('cascade',)"],
    "unknown mode 'cascade'",
  ),
  C(
    "sanity-no-modes",
    ["sanity", "--workdir", "W", "--set", "modes=()"],
    "modes must name at least one of",
  ),
  C(
    "sanity-unknown-label-mode",
    ["sanity", "--workdir", "W", "--set", "label_modes=('shuffle',)"],
    "unknown label mode 'shuffle'",
  ),
  C(
    "sanity-zero-images",
    ["sanity", "--workdir", "W", "--set", "num_images=0"],
    "num_images must be a positive integer; got 0",
  ),
  C(
    "sanity-zero-hog-cell",
    ["sanity", "--workdir", "W", "--set", "hog_pixels_per_cell=0"],
    "hog_pixels_per_cell must be a positive integer",
  ),
  C(
    "sanity-bad-layer",
    [
      "sanity",
      "--config",
      "sanity_digits:test",
      "--workdir",
      "W",
      "--set",
      "methods.gradcam.layer=fc",
    ],
    "methods.gradcam.layer: the classifier 'small_cnn' has no layer 'fc'",
  ),
  # reconstruction.
  C(
    "reconstruction-area-above-1",
    ["reconstruction", "--workdir", "W", "--set", "areas=(1.5,)"],
    "areas must be fractions in (0, 1]; got 1.5",
  ),
  C(
    "reconstruction-no-areas",
    ["reconstruction", "--workdir", "W", "--set", "areas=()"],
    "areas must hold at least one kept fraction",
  ),
  C(
    "reconstruction-no-seeds",
    ["reconstruction", "--workdir", "W", "--set", "seeds=()"],
    "seeds must hold at least one seed",
  ),
  C(
    "reconstruction-generator-workdir-is-a-file",
    ["reconstruction", "--workdir", "W", "--set", "generator_workdir=file.txt"],
    "no generative model in",
  ),
  C(
    "reconstruction-unknown-method",
    ["reconstruction", "--workdir", "W", "--set", "methods=('nope',)"],
    "methods: unknown method 'nope'",
  ),
  # demo.
  C(
    "demo-unknown-variant",
    ["demo", "--config", "demo_digits:full", "--workdir", "W"],
    "unknown variant 'full' of demo_digits",
  ),
  C(
    "demo-unknown-part",
    ["demo", "--workdir", "W", "--set", "parts=('nope',)"],
    "unknown parts 'nope'",
  ),
  C(
    "demo-no-parts",
    ["demo", "--workdir", "W", "--set", "parts=()"],
    "parts must name each part at most once, at least one",
  ),
  C(
    "demo-zero-gallery",
    ["demo", "--workdir", "W", "--set", "gallery.num_images=0"],
    "gallery.num_images must be a positive integer; got 0",
  ),
  C(
    "demo-workdir-is-a-file",
    ["demo", "--config", "demo_digits:test", "--workdir", "file.txt"],
    "workdir 'file.txt' is a file",
  ),
  C(
    "demo-workdir-under-a-file",
    ["demo", "--config", "demo_digits:test", "--workdir", "file.txt/W"],
    "'file.txt' is a file",
  ),
  C(
    "demo-workdir-read-only",
    ["demo", "--config", "demo_digits:test", "--workdir", "ro/W"],
    "ro/W",
    needs_non_root=True,
  ),
  C(
    "demo-unknown-masker-variant",
    ["demo", "--workdir", "W", "--set", "reconstruction.masker_variant=zz"],
    "reconstruction.masker_variant 'zz' is not among localization.maskers",
  ),
  C(
    "demo-sanity-without-cascading",
    ["demo", "--workdir", "W", "--set", "sanity.modes=('independent',)"],
    "sanity.modes must include 'cascading'",
  ),
  C(
    "demo-unknown-gallery-method",
    ["demo", "--workdir", "W", "--set", "gallery.methods=('lrp',)"],
    "gallery.methods: unknown method 'lrp'",
  ),
  C(
    "demo-gallery-bad-layer",
    [
      "demo",
      "--config",
      "demo_digits:test",
      "--workdir",
      "W",
      "--set",
      "gallery.methods.gradcam.layer=l7",
    ],
    "gallery.methods.gradcam.layer: the classifier 'small_cnn' has no layer 'l7'",
  ),
  # explain: images.
  C(
    "explain-missing-image",
    ["explain", "missing.png", *EXPLAIN[2:], "--out", "O"],
    "image path 'missing.png' does not exist",
  ),
  C(
    "explain-empty-folder",
    ["explain", "empty", *EXPLAIN[2:], "--out", "O"],
    "'empty' has no images",
  ),
  C(
    "explain-text-named-png",
    ["explain", "text.png", *EXPLAIN[2:], "--out", "O"],
    "'text.png' is not an image",
  ),
  C(
    "explain-truncated-png",
    ["explain", "trunc.png", *EXPLAIN[2:], "--out", "O"],
    "'trunc.png' is not an image that PIL can read",
  ),
  C(
    "explain-zero-size-png",
    ["explain", "zero.png", *EXPLAIN[2:], "--out", "O"],
    "'zero.png' is not an image that PIL can read",
  ),
  C(
    "explain-no-images",
    ["explain", "--model", "m", "--out", "O"],
    "the following arguments are required: images",
  ),
  # explain: methods and their parameters.
  C("explain-unknown-method", [*EXPLAIN, "--methods", "lrp", "--out", "O"], "unknown method 'lrp'"),
  C(
    "explain-no-methods",
    [*EXPLAIN, "--methods", "--out", "O"],
    "argument --methods: expected at least one argument",
  ),
  C(
    "explain-param-no-dot",
    [*EXPLAIN, "--param", "steps=4", "--out", "O"],
    "param 'steps=4': expected METHOD.NAME=VALUE",
  ),
  C(
    "explain-param-unknown-method",
    [*EXPLAIN, "--param", "lrp.steps=4", "--out", "O"],
    "param lrp.steps: 'lrp' is not among the methods",
  ),
  C(
    "explain-param-unknown-name",
    [*EXPLAIN, "--methods", "gradient", "--param", "gradient.steps=4", "--out", "O"],
    "param gradient.steps: 'gradient' takes no 'steps'",
  ),
  C(
    "explain-param-ill-typed",
    [
      *EXPLAIN,
      "--methods",
      "integrated_gradients",
      "--param",
      "integrated_gradients.steps=many",
      "--out",
      "O",
    ],
    "steps",
  ),
  C(
    "explain-param-code-injection",
    [
      *EXPLAIN,
      "--methods",
      "integrated_gradients",
      "--param",
      "integrated_gradients.steps=__import__('os').mkdir('pwned')",
      "--out",
      "O",
    ],
    "steps",
  ),
  # explain: targets, sizes, batches.
  C(
    "explain-target-too-big",
    [*EXPLAIN, "--target", "12", "--out", "O"],
    "target must be a class index in [0, 12); got 12",
  ),
  C(
    "explain-target-negative",
    [*EXPLAIN, "--target", "-1", "--out", "O"],
    "target must be a class index in [0, 12); got -1",
  ),
  C(
    "explain-target-word",
    [*EXPLAIN, "--target", "cat", "--out", "O"],
    "or a class index in [0, 12); got 'cat'",
  ),
  C(
    "explain-target-float",
    [*EXPLAIN, "--target", "1.5", "--out", "O"],
    "or a class index in [0, 12); got '1.5'",
  ),
  C(
    "explain-batch-of-0",
    [*EXPLAIN, "--batch-size", "0", "--out", "O"],
    "batch_size must be a positive integer; got 0",
  ),
  C(
    "explain-batch-not-int",
    [*EXPLAIN, "--batch-size", "two", "--out", "O"],
    "argument --batch-size: invalid int value: 'two'",
  ),
  C(
    "explain-negative-size",
    [*EXPLAIN[:-1], "-3", "--out", "O"],
    "size must be a positive integer; got -3",
  ),
  # explain: outputs.
  C("explain-no-out", [*EXPLAIN], "required: --out"),
  C("explain-out-is-a-file", [*EXPLAIN, "--out", "file.txt"], "out 'file.txt' is an existing file"),
  C("explain-out-not-empty", [*EXPLAIN, "--out", "full"], "out 'full' exists and is not an empty"),
  C(
    "explain-out-under-a-file",
    [*EXPLAIN, "--out", "file.txt/O"],
    "file.txt' is a file, not a folder",
  ),
  C("explain-out-read-only", [*EXPLAIN, "--out", "ro/O"], "ro/O", needs_non_root=True),
  # explain: models.
  C(
    "explain-model-missing",
    ["explain", "img.png", "--model", "nothere", "--out", "O"],
    "model 'nothere' is neither a jaxsal classifier workdir nor ARCH:FILE",
  ),
  C(
    "explain-model-unknown-arch",
    ["explain", "img.png", "--model", "vgg16:junk.safetensors", "--out", "O"],
    "got 'vgg16'",
  ),
  C(
    "explain-model-weights-missing",
    ["explain", "img.png", "--model", "resnet18:none.safetensors", "--out", "O"],
    "weights file 'none.safetensors' does not exist",
  ),
  C(
    "explain-model-weights-junk",
    ["explain", "img.png", "--model", "resnet18:junk.safetensors", "--out", "O"],
    "not a readable safetensors file",
  ),
  C(
    "explain-model-is-a-masker",
    ["explain", "img.png", "--model", "masker", "--out", "O"],
    "model 'masker' is a masker workdir",
  ),
  C(
    "explain-model-without-config",
    ["explain", "img.png", "--model", "empty", "--out", "O"],
    "it has no config.json",
  ),
  C(
    "explain-model-config-not-json",
    ["explain", "img.png", "--model", "nojson", "--out", "O"],
    "its config.json cannot be read",
  ),
  # prepare-data.
  C("prepare-unknown-dataset", ["prepare-data", "--dataset", "mnist"], "unknown dataset 'mnist'"),
  C(
    "prepare-unknown-config",
    ["prepare-data", "--config", "huge", "--data-dir", "D"],
    "unknown config 'huge' of dataset 'cluttered_digits'",
  ),
  C(
    "prepare-unknown-split",
    ["prepare-data", "--config", "small", "--data-dir", "{data}", "--splits", "validation"],
    "unknown split 'validation' of dataset 'cluttered_digits'",
  ),
  C(
    "prepare-no-splits",
    ["prepare-data", "--splits"],
    "argument --splits: expected at least one argument",
  ),
  C(
    "prepare-data-dir-is-a-file",
    ["prepare-data", "--config", "small", "--data-dir", "file.txt"],
    "file.txt",
  ),
  C(
    "prepare-data-dir-read-only",
    ["prepare-data", "--config", "small", "--data-dir", "ro/D"],
    "ro/D",
    needs_non_root=True,
  ),
]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
  """A 12-class torchvision ResNet-18 as a .safetensors file (random weights)."""
  pytest.importorskip("torch")
  from safetensors.numpy import save_file

  spec = importlib.util.spec_from_file_location(
    "_torch_resnet", os.path.join(ROOT, "benchmarks", "_torch_resnet.py")
  )
  tr = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(tr)
  net = tr.build("resnet18", num_classes=12, seed=2)
  path = str(tmp_path_factory.mktemp("w") / "r18.safetensors")
  save_file({k: np.ascontiguousarray(v.numpy()) for k, v in net.state_dict().items()}, path)
  return path


def test_there_are_at_least_60_cases():
  assert len(CASES) >= 60
  assert len({c.id for c in CASES}) == len(CASES)


# Read-only folders do not stop root (CI runs as root), so those cases exist
# only for a user; a skipped test would fail CI.
CASES = [c for c in CASES if not (IS_ROOT and c.id in NEEDS_NON_ROOT)]


@pytest.mark.parametrize("argv,match,allowed", CASES)
def test_bad_input_exits_2_with_one_clear_line_and_writes_nothing(
  argv, match, allowed, tmp_path, monkeypatch, capsys, request
):
  _make_inputs(tmp_path)
  fill = {"tmp": str(tmp_path)}
  if any("{data}" in a for a in argv):
    fill["data"] = request.getfixturevalue("data_dir")
  if any("{weights}" in a for a in argv):
    fill["weights"] = request.getfixturevalue("weights")
  for name, value in fill.items():
    argv = [a.replace("{" + name + "}", value) for a in argv]
  monkeypatch.chdir(tmp_path)
  before = _snapshot(tmp_path)
  try:
    try:
      status = cli.main(argv)
    except SystemExit as e:  # argparse's errors
      status = e.code
    out, err = capsys.readouterr()
  finally:
    (tmp_path / "ro").chmod(stat.S_IRWXU)
  after = _snapshot(tmp_path)
  shown = f"argv: {argv}\nstatus: {status}\nstdout:\n{out}\nstderr:\n{err}"
  assert status == 2, shown
  assert "Traceback" not in out + err, shown
  # A progress bar ends its line with a carriage return, so the line a terminal shows last is
  # the last piece between line ends of either kind.
  lines = [ln for ln in re.split(r"[\r\n]", err) if ln.strip()]
  assert lines, shown
  last = lines[-1]
  prefixes = ("jaxsal: error:", f"jaxsal {argv[0]}: error:" if argv else "jaxsal: error:")
  assert last.startswith(prefixes), shown
  assert match in last, shown
  new = sorted(set(after) - set(before) - set(allowed))
  gone = sorted(set(before) - set(after))
  changed = sorted(p for p in set(before) & set(after) if before[p] != after[p])
  assert not (new or gone or changed), f"new {new}, removed {gone}, changed {changed}\n{shown}"


def test_the_snapshot_sees_a_new_file_and_a_changed_byte(tmp_path):
  (tmp_path / "a").write_bytes(b"x")
  before = _snapshot(tmp_path)
  (tmp_path / "a").write_bytes(b"y")
  (tmp_path / "d").mkdir()
  after = _snapshot(tmp_path)
  assert before["a"] != after["a"] and "d" in after and "d" not in before
  assert json.dumps(sorted(after)) == '["a", "d"]'
