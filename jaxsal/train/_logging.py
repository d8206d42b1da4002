"""Metrics as JSON lines, one record per line, with the step in each."""

from __future__ import annotations

import contextlib
import json
import os
import time
from typing import Any

import numpy as np


def _plain(v: Any) -> Any:
  if isinstance(v, (np.generic, np.ndarray)) or hasattr(v, "__array__"):
    a = np.asarray(v)
    return a.item() if a.ndim == 0 else a.tolist()
  return v


class MetricWriter:
  """Appends ``{"step": ..., "kind": ..., ...}`` records to ``path``.

  On resume, ``truncate_after(step)`` drops records past the restored
  checkpoint, so the file reads as one uninterrupted run.
  """

  def __init__(self, path: str, *, enabled: bool = True):
    self.path = path
    self.enabled = enabled

  def write(self, step: int, kind: str, metrics: dict) -> dict:
    record = {
      "step": int(step),
      "kind": kind,
      "time": time.time(),
      **{k: _plain(v) for k, v in metrics.items()},
    }
    if self.enabled:
      with open(self.path, "a") as f:
        f.write(json.dumps(record) + "\n")
    return record

  def read(self) -> list[dict]:
    if not os.path.exists(self.path):
      return []
    out = []
    with open(self.path) as f:
      for line in f:
        line = line.strip()
        if line:
          with contextlib.suppress(json.JSONDecodeError):  # a line cut short by a kill
            out.append(json.loads(line))
    return out

  def truncate_after(self, step: int) -> None:
    if not self.enabled or not os.path.exists(self.path):
      return
    keep = [r for r in self.read() if r.get("step", 0) <= step]
    tmp = self.path + ".tmp"
    with open(tmp, "w") as f:
      for r in keep:
        f.write(json.dumps(r) + "\n")
    os.replace(tmp, self.path)
