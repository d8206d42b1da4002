"""The ``jaxsal`` command.

    jaxsal demo                                    # everything, into runs/demo/report.html
    jaxsal train --config small_cnn_digits --workdir runs/small_cnn
    jaxsal train-masker --config masker_digits:ca --workdir runs/masker --set classifier_workdir=runs/small_cnn
    jaxsal grid-pointing --config grid_pointing_digits --workdir runs/small_cnn
    jaxsal sanity --config sanity_digits --workdir runs/small_cnn
    jaxsal localization --config localization_digits --workdir runs/small_cnn
    jaxsal train-generator --config generator_digits --workdir runs/small_cnn/generator
    jaxsal reconstruction --config reconstruction_digits --workdir runs/small_cnn
    jaxsal explain cat.png photos/ --model resnet50:resnet50.safetensors --methods gradient gradcam --out explained
    jaxsal prepare-data --dataset cluttered_digits --config default
    jaxsal configs

Every subcommand checks its arguments before it writes anything; a bad
argument ends with ``jaxsal: error: ...`` and exit status 2. Ctrl-C ends any
command with one line saying what to do next and exit status 130 (a training
run saves a checkpoint at the end of its step first).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

INTERRUPTED = 130


def _experiment_command(module):
  """``args -> exit status``: validate, run and print the summary of an experiment module."""

  def command(args) -> int:
    from jaxsal import configs, parallel

    config = configs.apply_overrides(configs.get_config(args.config), args.set or [])
    parallel.check_same_everywhere(
      "config", {"command": module.COMMAND, "workdir": args.workdir, **config.to_dict()}
    )
    result = module.run(config, args.workdir, progress=not args.no_progress)
    print(module.summary(result), flush=True)
    return 0

  return command


def _experiment_modules() -> list:
  """The subcommands' modules: ``jaxsal.demo`` first, then every experiment in its order."""
  import importlib

  from jaxsal import experiments

  names = ["jaxsal.demo"] + [f"jaxsal.experiments.{n}" for n in experiments.EXPERIMENTS]
  return [importlib.import_module(n) for n in names]


def _cmd_explain(args) -> int:
  from jaxsal import explain

  res = explain.explain(
    args.images,
    args.model,
    args.methods,
    out=args.out,
    target=args.target,
    size=args.size,
    batch_size=args.batch_size,
    seed=args.seed,
    params=args.param,
    progress=not args.no_progress,
  )
  for im in res["images"]:
    explained = im["explained"]
    if explained != "all":
      explained = f"class {explained} ({im['explained_name']})"
    print(
      f"jaxsal explain: {im['name']}: predicted {im['predicted_name']} "
      f"(p={im['probability']:.3f}); explained {explained}"
    )
  print(
    f"jaxsal: explained {len(res['images'])} images with {len(res['methods'])} methods in "
    f"{res['seconds']:.1f}s; wrote {len(res['files'])} files to {res['out']} "
    f"(maps as .npy, figures as .png, summary in explain.json)",
    flush=True,
  )
  return 0


def _cmd_prepare_data(args) -> int:
  from jaxsal import data

  t0 = time.perf_counter()
  for split in args.splits:
    src = data.load_source(args.dataset, split, config=args.config, data_dir=args.data_dir)
    print(f"jaxsal: {args.dataset}/{args.config or 'default'} {split}: {len(src)} examples")
  print(f"jaxsal: prepared in {time.perf_counter() - t0:.1f}s", flush=True)
  return 0


def _cmd_configs(args) -> int:
  from jaxsal import configs

  for name in configs.list_configs():
    print(name)
  return 0


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="jaxsal", description=__doc__.split("\n")[0])
  sub = parser.add_subparsers(dest="command", required=True)

  for module in _experiment_modules():
    p = sub.add_parser(module.COMMAND, help=module.HELP)
    default = module.DEFAULT_CONFIG
    p.add_argument("--config", required=default is None, default=default, help=module.CONFIG_HELP)
    default = getattr(module, "DEFAULT_WORKDIR", None)
    p.add_argument("--workdir", required=default is None, default=default, help=module.WORKDIR_HELP)
    p.add_argument(
      "--set",
      action="append",
      metavar="KEY=VALUE",
      help=f"override a config entry, e.g. --set {module.SET_EXAMPLE} (repeatable)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_experiment_command(module))

  from jaxsal.explain import known_methods

  p = sub.add_parser("explain", help="saliency maps of a classifier on image files or folders")
  p.add_argument("images", nargs="+", help="PNG/JPEG files, or folders of them")
  p.add_argument(
    "--model",
    required=True,
    help="a jaxsal classifier workdir, or ARCH:FILE with torchvision ResNet weights "
    "(resnet18|resnet34|resnet50, .safetensors or a weights-only .pth)",
  )
  p.add_argument(
    "--methods",
    nargs="+",
    default=["gradient", "integrated_gradients", "gradcam"],
    metavar="METHOD",
    help=f"one or more of: {', '.join(known_methods())}",
  )
  p.add_argument(
    "--target",
    default="pred",
    help="'pred' (the predicted class, default), a class index, or 'all'",
  )
  p.add_argument("--out", required=True, help="output folder (new or empty)")
  p.add_argument("--size", type=int, default=224, help="input side for torchvision weights")
  p.add_argument("--batch-size", type=int, default=8)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument(
    "--param",
    action="append",
    default=[],
    metavar="METHOD.NAME=VALUE",
    help="a method's hyperparameter over its default, e.g. "
    "integrated_gradients.steps=64 or gradcam.layer=l3 (repeatable)",
  )
  p.add_argument("--no-progress", action="store_true", help="no line per method")
  p.set_defaults(func=_cmd_explain)

  p = sub.add_parser("prepare-data", help="build an offline dataset (no network needed)")
  p.add_argument("--dataset", default="cluttered_digits")
  p.add_argument("--config", default=None, help="the builder config, e.g. default or small")
  p.add_argument("--data-dir", default=None, help="default: $JAXSAL_DATA_DIR or ~/.cache/jaxsal")
  p.add_argument("--splits", nargs="+", default=["train", "test"])
  p.set_defaults(func=_cmd_prepare_data)

  p = sub.add_parser("configs", help="list the configs that ship with jaxsal")
  p.set_defaults(func=_cmd_configs)
  return parser


def _latest_step(workdir: str | None) -> int | None:
  """The newest finished checkpoint step in ``<workdir>/checkpoints``, or None."""
  path = os.path.join(os.path.expanduser(workdir or ""), "checkpoints")
  try:
    steps = [int(n) for n in os.listdir(path) if n.isdigit()]
  except OSError:
    return None
  return max(steps) if steps else None


def _advice(argv: list[str]) -> str:
  """What to do after a Ctrl-C in the command ``argv``, as the rest of one line."""
  command = next((a for a in argv if not a.startswith("-")), "")
  if command == "explain":
    return "nothing was written; rerun the command"
  if command == "prepare-data":
    return "rerun the same command to prepare the data"
  if command in ("configs", ""):
    return "rerun the command"
  workdir = None
  for i, a in enumerate(argv):
    if a == "--workdir" and i + 1 < len(argv):
      workdir = argv[i + 1]
    elif a.startswith("--workdir="):
      workdir = a.split("=", 1)[1]
  step = _latest_step(workdir)
  if step is None:
    return "rerun the same command to resume (no checkpoint of this run was saved yet)"
  return f"rerun the same command to resume from step {step}"


def _interrupted_at_start(signum, frame) -> None:
  os.write(2, f"jaxsal: interrupted; {_advice(sys.argv[1:])}\n".encode())
  os._exit(INTERRUPTED)


def main(argv: list[str] | None = None) -> int:
  """Runs the command line; returns the exit status.

  Under the ``jaxsal`` command (``argv`` None), Ctrl-C is handled by
  ``jaxsal.train._interrupt``: a training loop saves a checkpoint at the end
  of its step and the command returns 130; anywhere else the process prints
  one line and exits with 130 at once.
  """
  if argv is None:
    # Until the handler below is in place (the imports take seconds): one
    # line and exit 130, no KeyboardInterrupt raised inside an import.
    signal.signal(signal.SIGINT, _interrupted_at_start)
  parser = build_parser()
  args = parser.parse_args(argv)
  from jaxsal.train import CheckpointError
  from jaxsal.train import _interrupt as interrupt

  if argv is None:
    words = sys.argv[1:]
    interrupt.install(lambda: _advice(words))
  try:
    # A process of a multi-process job (JAXSAL_* or a cluster's environment)
    # joins it before anything touches a device.
    from jaxsal import parallel

    parallel.initialize("auto")
    return args.func(args)
  except (ValueError, KeyError, FileNotFoundError, CheckpointError, FloatingPointError) as e:
    message = e.args[0] if isinstance(e, KeyError) and e.args else e
    print(f"jaxsal: error: {message}", file=sys.stderr)
    return 2
  except OSError as e:  # a path that is a file, not writable, a full disk: the user's to fix
    where = f"{e.filename!r}: " if e.filename else ""
    print(f"jaxsal: error: {where}{e.strerror or e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt as e:
    line = str(e) if isinstance(e, interrupt.RunInterrupted) else ""
    print(
      line or f"jaxsal: interrupted; {_advice(sys.argv[1:] if argv is None else argv)}",
      file=sys.stderr,
      flush=True,
    )
    return INTERRUPTED


if __name__ == "__main__":
  sys.exit(main())
