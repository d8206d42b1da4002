"""Benchmark scripts run at their smallest size (no timing is asserted)."""

import importlib.util
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(name):
  spec = importlib.util.spec_from_file_location(
    name, os.path.join(ROOT, "benchmarks", f"{name}.py")
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_optimized_mask_benchmark_runs_and_both_ways_give_the_same_masks(tmp_path, capsys):
  out = tmp_path / "om.json"
  r = _load("optimized_mask").main(
    ["--batch", "3", "--steps", "2", "--repeats", "1", "--json", str(out)]
  )
  # Two steps: too few for Adam to amplify the rounding differences.
  assert r["max_abs_mask_difference"] < 1e-5 and r["max_rel_loss_difference"] < 1e-5
  assert json.load(open(out))["batch"] == 3
  assert "one compiled call (batch)" in capsys.readouterr().out


def test_peers_benchmark_runs_every_part_and_compares_equal_computations(tmp_path, capsys):
  import pytest

  pytest.importorskip("captum")
  pytest.importorskip("saliency")
  out = tmp_path / "peers.json"
  r = _load("peers").main(
    [
      "--setups",
      "small_cnn:16:2",
      "--pair-setups",
      "small_cnn:16:2",
      "--class-setups",
      "small_cnn:16:2",
      "--ig-steps",
      "4",
      "--sg-samples",
      "2",
      "--chunk",
      "2",
      "--repeats",
      "1",
      "--masker-models",
      "small_cnn",
      "--masker-small-size",
      "16",
      "--masker-small-batch",
      "2",
      "--memory-setup",
      "small_cnn:16:2",
      "--memory-steps",
      "4",
      "8",
      "--json",
      str(out),
    ]
  )
  rows = r["rows"]
  by_part = {}
  for row in rows:
    by_part.setdefault(row["part"], []).append(row)
  assert {row["method"].split(" (")[0] for row in by_part["captum"]} == {
    "gradient",
    "gradient_x_input",
    "integrated_gradients",
    "smoothgrad",
    "guided_backprop",
    "gradcam",
    "occlusion",
  }
  assert len(by_part["pair"]) == 2 and len(by_part["classes"]) == 6
  assert [row["method"] for row in by_part["masker"]] == ["classifier", "masker FIX", "masker CA"]
  # The timed functions compute what their peers compute, on the same weights and inputs.
  for row in by_part["captum"] + by_part["classes"]:
    if row["check"] is not None:
      assert row["check"] < 1e-4, row
  for row in rows:
    if row["part"] != "memory":
      assert row["jaxsal_s"] > 0 and row["peer_s"] > 0
      assert abs(row["ratio"] - row["jaxsal_s"] / row["peer_s"]) < 1e-9
  # Chunks of 2 steps need less memory than 8 steps at once.
  assert by_part["memory"][-1]["ratio"] < 1
  assert json.load(open(out))["rows"] == json.loads(json.dumps(rows))
  assert "ratio = jaxsal / peer" in capsys.readouterr().out
  # The README's table is printed from the JSON: one line per row, two of header.
  _load("peers").main(["--markdown", str(out)])
  table = capsys.readouterr().out.strip().splitlines()
  assert len(table) == len(rows) + 2 and table[0].startswith("| part | setup |")
