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
argument ends with ``jaxsal: error: ...`` and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def _config(args):
  from jaxsal import configs

  return configs.apply_overrides(configs.get_config(args.config), args.set or [])


def _cmd_train(args) -> int:
  from jaxsal import train

  config = _config(args)
  t0 = time.perf_counter()
  out = train.train_and_evaluate(config, args.workdir, progress=not args.no_progress)
  ev = out["eval"]
  print(
    f"jaxsal: trained {config.model.name} on {config.dataset.name} to step "
    f"{int(out['state'].step)} in {time.perf_counter() - t0:.1f}s; "
    f"eval accuracy {ev['eval_accuracy']:.4f} on {ev['eval_count']} images; "
    f"workdir {out['workdir']}",
    flush=True,
  )
  return 0


def _cmd_train_masker(args) -> int:
  from jaxsal import train

  config = _config(args)
  t0 = time.perf_counter()
  out = train.train_masker(config, args.workdir, progress=not args.no_progress)
  ev = out["eval"]
  if not ev.get("count"):
    print(
      f"jaxsal: trained a {config.mode.upper()} masker to step {int(out['state'].step)} in "
      f"{time.perf_counter() - t0:.1f}s; the dataset has no boxes or masks, so it was not "
      f"evaluated; workdir {out['workdir']}",
      flush=True,
    )
    return 0
  print(
    f"jaxsal: trained a {config.mode.upper()} masker ({config.objective.name}) to step "
    f"{int(out['state'].step)} in {time.perf_counter() - t0:.1f}s; on {ev['count']} test "
    f"images: LE {ev['le']:.3f} OM {ev['om']:.3f} F1 {ev['f1']:.3f} SM {ev['sm']:.3f} "
    f"PxAP {ev['pxap']:.3f} mean mask {ev['area']:.3f}; workdir {out['workdir']}",
    flush=True,
  )
  return 0


def _cmd_grid_pointing(args) -> int:
  from jaxsal.experiments import grid_pointing

  config = _config(args)
  t0 = time.perf_counter()
  results = grid_pointing.run(config, args.workdir, progress=not args.no_progress)
  print(grid_pointing.format_table(results))
  print(
    f"jaxsal: grid pointing game (mean ± standard error over maps; "
    f"{config.num_grids} grids per size) in {time.perf_counter() - t0:.1f}s; "
    f"results in {results['path']}",
    flush=True,
  )
  return 0


def _cmd_sanity(args) -> int:
  from jaxsal.experiments import sanity_checks

  config = _config(args)
  t0 = time.perf_counter()
  res = sanity_checks.run(config, args.workdir, progress=not args.no_progress)
  for mode in res["results"]:
    print(sanity_checks.format_table(res, mode=mode))
  if res.get("data_randomization"):
    print(sanity_checks.format_data_table(res))
  print(
    f"jaxsal: sanity checks on {res['num_images']} images in "
    f"{time.perf_counter() - t0:.1f}s; results in {res['paths']['json']}, figures beside it",
    flush=True,
  )
  return 0


def _cmd_localization(args) -> int:
  from jaxsal.experiments import localization

  config = _config(args)
  t0 = time.perf_counter()
  res = localization.run(config, args.workdir, progress=not args.no_progress)
  print(localization.format_table(res))
  print(
    f"jaxsal: localisation of {len(res['rows'])} maps on {res['num_images']} test images "
    f"(lower is better for LE, OM, SM) in {time.perf_counter() - t0:.1f}s; results in "
    f"{res['path']}",
    flush=True,
  )
  return 0


def _cmd_train_generator(args) -> int:
  from jaxsal import train

  config = _config(args)
  t0 = time.perf_counter()
  out = train.train_generator(config, args.workdir, progress=not args.no_progress)
  ev = out["eval"]
  print(
    f"jaxsal: trained the inpainting VAE to step {int(out['state'].step)} in "
    f"{time.perf_counter() - t0:.1f}s; on {ev['count']} test images with random masks: "
    f"-ELBO {ev['loss']:.1f} nats/image (NLL {ev['nll']:.1f}, KL {ev['kl']:.1f}); "
    f"workdir {out['workdir']}",
    flush=True,
  )
  return 0


def _cmd_reconstruction(args) -> int:
  from jaxsal.experiments import reconstruction

  config = _config(args)
  t0 = time.perf_counter()
  res = reconstruction.run(config, args.workdir, progress=not args.no_progress)
  print(reconstruction.format_table(res))
  print(
    f"jaxsal: reconstructions of {res['num_images']} test images ({res['num_samples']} "
    f"samples each, {len(res['seeds'])} seeds; the classifier's decision kept, mean ± std "
    f"over seeds, %) in {time.perf_counter() - t0:.1f}s; results in {res['path']}",
    flush=True,
  )
  return 0


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


def _cmd_demo(args) -> int:
  from jaxsal import demo

  config = _config(args)
  res = demo.run(config, args.workdir, progress=not args.no_progress)
  m = res["metrics"]
  rows = m["localization"]["rows"]
  masker = next((r for k, r in rows.items() if k.startswith("masker")), None)
  sanity = m["sanity"]["fully_randomized"]
  summary = [f"classifier test accuracy {m['classifier']['test_accuracy']:.4f}"]
  if masker:
    summary.append(f"masker LE {masker['le']:.3f} PxAP {masker['pxap']:.3f}")
  if "gradient" in sanity:
    summary.append(
      f"gradient's rank correlation after full randomisation "
      f"{sanity['gradient']['spearman_abs']:.2f}"
    )
  rec = m["reconstruction"]
  area = str(rec["areas"][0])
  kept = {k: r[area]["kept_mean"] for k, r in rec["rows"].items()}
  if "optimized_mask" in kept and "random_pixels" in kept:
    summary.append(
      f"reconstructions from the optimised mask's top {float(area):.0%} keep the "
      f"decision {kept['optimized_mask']:.0%} of the time (random pixels "
      f"{kept['random_pixels']:.0%})"
    )
  print(
    f"jaxsal: demo done in {m['seconds']['total']:.0f}s ({'; '.join(summary)}); "
    f"{len(m['gallery']['methods'])} methods on {m['gallery']['num_images']} images"
  )
  print(
    f"jaxsal: report: {os.path.abspath(res['paths']['report'])} "
    f"(numbers in {os.path.abspath(res['paths']['metrics'])})",
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

  def config_command(
    name,
    func,
    *,
    help,
    config_help,
    workdir_help,
    example,
    default=None,
    progress_help="no progress bars",
    default_workdir=None,
  ):
    p = sub.add_parser(name, help=help)
    p.add_argument("--config", required=default is None, default=default, help=config_help)
    p.add_argument(
      "--workdir", required=default_workdir is None, default=default_workdir, help=workdir_help
    )
    p.add_argument(
      "--set",
      action="append",
      metavar="KEY=VALUE",
      help=f"override a config entry, e.g. --set {example} (repeatable)",
    )
    p.add_argument("--no-progress", action="store_true", help=progress_help)
    p.set_defaults(func=func)

  config_command(
    "demo",
    _cmd_demo,
    default="demo_digits",
    default_workdir="runs/demo",
    help="train a classifier and a masker on cluttered_digits, run every method, the "
    "localisation metrics, the grid pointing game and a sanity check; write report.html",
    config_help="a demo config (demo_digits[:test]) or a .py path",
    workdir_help="models, results, figures, report.html and metrics.json go here (default "
    "runs/demo); models trained there are reused",
    example="gallery.num_images=4",
  )
  config_command(
    "train-masker",
    _cmd_train_masker,
    default="masker_digits",
    help="train a masking model (FIX or CA) on a classifier's taps",
    config_help="a masker config (masker_digits[:ca|fix|ca_in|ca_out|ca_fewshot|fix_fewshot|"
    "ca_pool|test], masker_resnet50_imagenet[:ca|fix|cpu]) or a .py path",
    workdir_help="the masker's checkpoints and metrics go here (rerun to resume); the "
    "classifier is read from classifier_workdir, by default <workdir>/classifier",
    example="classifier_workdir=runs/small_cnn",
  )
  experiment_workdir = "the classifier's workdir: trained there if it holds no checkpoint"
  config_command(
    "train",
    _cmd_train,
    help="train a classifier from a config",
    config_help="a config name with an optional variant (small_cnn_digits:cpu) or a .py path",
    workdir_help="checkpoints, metrics.jsonl and config.json go here; rerun to resume",
    example="num_train_steps=100",
    progress_help="no progress bar",
  )
  config_command(
    "grid-pointing",
    _cmd_grid_pointing,
    default="grid_pointing_digits",
    help="the grid pointing game: methods alone, with CGI and with VAR",
    config_help="an experiment config (grid_pointing_digits[:test]) or a .py path",
    workdir_help=experiment_workdir,
    example="num_grids=50",
  )
  config_command(
    "sanity",
    _cmd_sanity,
    default="sanity_digits",
    help="model- and data-randomisation sanity checks of attribution methods",
    config_help="an experiment config (sanity_digits[:test]) or a .py path",
    workdir_help=experiment_workdir,
    example="num_images=16",
  )

  config_command(
    "localization",
    _cmd_localization,
    default="localization_digits",
    help="localisation metrics (LE, OM, F1, SM, PxAP) of maskers, the centre box and "
    "gradient methods",
    config_help="an experiment config (localization_digits[:test]) or a .py path",
    workdir_help=experiment_workdir + "; maskers are trained (or reused) in <workdir>/maskers",
    example="num_images=500",
  )

  config_command(
    "train-generator",
    _cmd_train_generator,
    default="generator_digits",
    help="train the inpainting VAE that reconstructions of salient inputs sample from",
    config_help="a generator config (generator_digits[:test]) or a .py path",
    workdir_help="checkpoints, metrics.jsonl and generator.json go here; rerun to resume "
    "(the reconstruction experiment reads <classifier workdir>/generator)",
    example="num_train_steps=500",
  )
  config_command(
    "reconstruction",
    _cmd_reconstruction,
    default="reconstruction_digits",
    help="keep each explanation's top pixels, sample the rest, count kept decisions "
    "(our reading of Thakur & Fischmeister 2020)",
    config_help="an experiment config (reconstruction_digits[:test]) or a .py path",
    workdir_help=experiment_workdir + "; the generator is read from <workdir>/generator "
    "(train it first with jaxsal train-generator), the masker from "
    "<workdir>/maskers/<variant>",
    example="num_images=100",
  )

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


def main(argv: list[str] | None = None) -> int:
  """Runs the command line; returns the exit status."""
  parser = build_parser()
  args = parser.parse_args(argv)
  from jaxsal.train import CheckpointError

  try:
    return args.func(args)
  except (ValueError, KeyError, FileNotFoundError, CheckpointError) as e:
    message = e.args[0] if isinstance(e, KeyError) and e.args else e
    print(f"jaxsal: error: {message}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print(
      "jaxsal: interrupted; rerun the same command to resume from the last checkpoint",
      file=sys.stderr,
    )
    return 130


if __name__ == "__main__":
  sys.exit(main())
