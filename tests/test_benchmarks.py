"""Benchmark scripts run at their smallest size (no timing is asserted)."""

import importlib.util
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(name):
  spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "benchmarks", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_optimized_mask_benchmark_runs_and_both_ways_give_the_same_masks(tmp_path, capsys):
  out = tmp_path / "om.json"
  r = _load("optimized_mask").main(["--batch", "3", "--steps", "2", "--repeats", "1",
                                    "--json", str(out)])
  # Two steps: too few for Adam to amplify the rounding differences.
  assert r["max_abs_mask_difference"] < 1e-5 and r["max_rel_loss_difference"] < 1e-5
  assert json.load(open(out))["batch"] == 3
  assert "one compiled call (batch)" in capsys.readouterr().out
