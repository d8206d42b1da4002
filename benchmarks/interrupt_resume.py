"""Interrupted training resumes bitwise: SIGKILL and SIGINT at random moments, then a rerun.

What it measures: whether a ``jaxsal train`` run that is killed (``SIGKILL``,
as ``kill -9`` or a pre-empted machine does) or interrupted (``SIGINT``, as
Ctrl-C does) at an arbitrary moment, and then rerun with the same command,
ends with exactly the parameters of a run that was never interrupted.

How: the dataset is prepared once (``jaxsal prepare-data``), so it is not part
of any run. A reference run trains the small CNN uninterrupted
(``small_cnn_digits:test``, ``--steps`` steps with a checkpoint every
``--checkpoint-every``) and its wall time T is measured. Then, for each signal
and each of ``--trials`` trials, the same command starts in a fresh workdir,
the script sleeps a moment drawn uniformly from [0, T] (so the moments fall in
start-up, compilation, training steps, checkpoint saves and the final
evaluation), sends the signal to the run's process group (as a terminal's
Ctrl-C does), waits for it to end, and reruns the same command once,
uninterrupted. Run times vary with the machine's load, so a moment can come
after the run has already ended; such a draw is kept and checked like the
others, and another moment is drawn, until ``--trials`` runs per signal were
really interrupted (at most ``3 * --trials`` draws). The rerun's final parameters and model state
(``jaxsal.train.load_classifier``) are compared leaf by leaf with the
reference's: same dtype, same shape, same bytes (``np.array_equal`` on the
bytes, so -0.0 differs from 0.0 and a NaN is not equal to itself), and the
same final step. The loading happens in one helper process that imports jax;
this process only starts commands, so it stays light.

Each trial also records the interrupted run's exit status (SIGKILL: -9;
SIGINT: 130, or 0 if the run had finished before the signal came), the step
it had reached (the last train record in ``metrics.jsonl``) and its newest
checkpoint, its last line on stderr, and whether its stderr holds a
traceback or a crash (``Traceback``, ``Fatal Python error``, ``Segmentation
fault``, or death by a signal other than the one sent).

Run it from the repository root::

  python benchmarks/interrupt_resume.py                      # 10 trials per signal
  python benchmarks/interrupt_resume.py --trials 2 --seed 1  # a quick look
  python benchmarks/interrupt_resume.py --signals sigint --at 3.2 7.5  # replay moments

The seed and every moment are printed, so a failing trial can be replayed
with ``--signals`` and ``--at``.

Pass: ``--trials`` runs per signal were interrupted, and every trial's rerun
exits 0 and ends bitwise equal to the reference, at the same step; otherwise
the exit status is 1. Interrupts that were not clean
(a SIGINT status other than 130 or 0, a traceback, a crash) are counted and
printed; with ``--strict`` they fail the run too. All trials go to ``--out``
as JSON.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

SIGNALS = {"sigkill": signal.SIGKILL, "sigint": signal.SIGINT}
CRASH_WORDS = ("Traceback", "Fatal Python error", "Segmentation fault")
RERUN_TIMEOUT_S = 900
STOP_TIMEOUT_S = 120


def _train_command(workdir: str, args) -> list[str]:
  return [
    sys.executable,
    "-m",
    "jaxsal.cli",
    "train",
    "--config",
    "small_cnn_digits:test",
    "--workdir",
    workdir,
    "--no-progress",
    "--set",
    f"dataset.data_dir={args.data_dir}",
    "--set",
    f"num_train_steps={args.steps}",
    "--set",
    f"checkpoint.every={args.checkpoint_every}",
  ]


def _start(cmd: list[str], log_prefix: str) -> tuple[subprocess.Popen, float]:
  out = open(log_prefix + ".stdout", "w")  # noqa: SIM115 (closed in _finish)
  err = open(log_prefix + ".stderr", "w")  # noqa: SIM115 (closed in _finish)
  # A session of its own, so that a signal goes to the run's whole process
  # group, as a terminal's Ctrl-C does.
  proc = subprocess.Popen(cmd, stdout=out, stderr=err, start_new_session=True)
  proc._logs = (out, err)  # type: ignore[attr-defined]
  return proc, time.perf_counter()


def _finish(proc: subprocess.Popen, timeout: float) -> tuple[int | None, bool]:
  """Waits for ``proc``; returns ``(exit status, timed out)``, killing it on a timeout."""
  timed_out = False
  try:
    proc.wait(timeout=timeout)
  except subprocess.TimeoutExpired:
    timed_out = True
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
  for f in proc._logs:  # type: ignore[attr-defined]
    f.close()
  return proc.returncode, timed_out


def _read(path: str) -> str:
  try:
    with open(path, errors="replace") as f:
      return f.read()
  except OSError:
    return ""


def _last_line(text: str) -> str:
  lines = [ln for ln in text.replace("\r", "\n").splitlines() if ln.strip()]
  return lines[-1].strip() if lines else ""


def _crash(stderr: str, status: int | None, sent: int | None) -> list[str]:
  """What in a run's stderr and status says it crashed rather than stopped."""
  found = [w for w in CRASH_WORDS if w in stderr]
  if status is not None and status < 0 and -status != (sent or 0):
    found.append(f"killed by {signal.Signals(-status).name}")
  return found


def _reached(workdir: str) -> dict:
  """The last train step in ``metrics.jsonl``, the newest checkpoint, duplicate records."""
  last, seen, dups = None, set(), 0
  for line in _read(os.path.join(workdir, "metrics.jsonl")).splitlines():
    try:
      rec = json.loads(line)
    except ValueError:
      continue
    key = (rec.get("step"), rec.get("kind"))
    dups += key in seen
    seen.add(key)
    if rec.get("kind") == "train":
      last = rec.get("step") if last is None else max(last, rec.get("step"))
  try:
    steps = [int(n) for n in os.listdir(os.path.join(workdir, "checkpoints")) if n.isdigit()]
  except OSError:
    steps = []
  return {
    "step": last,
    "checkpoint": max(steps) if steps else None,
    "duplicate_records": dups,
  }


class _Loader:
  """A helper process (this file with ``--worker``) that loads classifiers and compares them."""

  def __init__(self, log: str):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    self._err = open(log, "w")  # noqa: SIM115 (closed in close)
    self._proc = subprocess.Popen(
      [sys.executable, os.path.abspath(__file__), "--worker"],
      stdin=subprocess.PIPE,
      stdout=subprocess.PIPE,
      stderr=self._err,
      text=True,
      env=env,
    )

  def ask(self, **request) -> dict:
    self._proc.stdin.write(json.dumps(request) + "\n")
    self._proc.stdin.flush()
    line = self._proc.stdout.readline()
    if not line:
      raise RuntimeError(f"the loader process ended; see {self._err.name}")
    return json.loads(line)

  def close(self) -> None:
    self._proc.stdin.close()
    self._proc.wait()
    self._err.close()


def _worker() -> int:
  """``--worker``: reads JSON requests on stdin, answers one JSON line each."""
  import jax

  from jaxsal.train import load_classifier

  def leaves(workdir: str) -> tuple[dict, int]:
    out = load_classifier(workdir)
    flat, _ = jax.tree_util.tree_flatten_with_path(out["variables"])
    return {jax.tree_util.keystr(p): np.asarray(v) for p, v in flat}, int(out["step"])

  ref, ref_step = None, None
  for line in sys.stdin:
    req = json.loads(line)
    try:
      if "info" in req:
        ans = {"jax": jax.__version__, "backend": jax.default_backend()}
      elif "reference" in req:
        ref, ref_step = leaves(req["reference"])
        ans = {"step": ref_step, "leaves": len(ref), "size": int(sum(v.size for v in ref.values()))}
      else:
        got, step = leaves(req["compare"])
        differ = sorted(
          k
          for k in set(ref) | set(got)
          if k not in ref
          or k not in got
          or ref[k].dtype != got[k].dtype
          or ref[k].shape != got[k].shape
          or not np.array_equal(
            np.frombuffer(ref[k].tobytes(), np.uint8), np.frombuffer(got[k].tobytes(), np.uint8)
          )
        )
        max_diff = max(
          (
            float(np.max(np.abs(ref[k].astype(np.float64) - got[k].astype(np.float64))))
            for k in differ
            if k in ref and k in got and ref[k].shape == got[k].shape and ref[k].size
          ),
          default=0.0,
        )
        ans = {
          "step": step,
          "equal": not differ and step == ref_step,
          "differing_leaves": differ,
          "max_abs_diff": max_diff,
        }
    except Exception as e:  # the parent reports it as a failed trial
      ans = {"error": f"{type(e).__name__}: {e}"}
    print(json.dumps(ans), flush=True)
  return 0


def _trial(name: str, index: int, moment: float, base: str, loader: _Loader, args) -> dict:
  sig = SIGNALS[name]
  workdir = os.path.join(base, f"{name}_{index:02d}")
  cmd = _train_command(workdir, args)
  proc, t0 = _start(cmd, workdir + "_run")
  time.sleep(max(0.0, moment - (time.perf_counter() - t0)))
  finished_before = proc.poll() is not None
  sent_at = time.perf_counter() - t0
  if not finished_before:
    try:
      os.killpg(proc.pid, sig)
    except ProcessLookupError:
      finished_before = True
  status, hung = _finish(proc, STOP_TIMEOUT_S)
  stopped_after = time.perf_counter() - t0 - sent_at
  err = _read(workdir + "_run.stderr")
  reached = _reached(workdir)

  rerun, t1 = _start(cmd, workdir + "_rerun")
  rerun_status, rerun_hung = _finish(rerun, RERUN_TIMEOUT_S)
  rerun_s = time.perf_counter() - t1
  rerun_out, rerun_err = _read(workdir + "_rerun.stdout"), _read(workdir + "_rerun.stderr")
  if rerun_status == 0:
    compared = loader.ask(compare=workdir)
  else:
    compared = {"error": "rerun timed out" if rerun_hung else "rerun failed"}
  after = _reached(workdir)

  expected = {-signal.SIGKILL} if sig == signal.SIGKILL else {130}
  if finished_before:
    expected = {0}
  crash = _crash(err, status, None if finished_before else int(sig))
  rerun_crash = _crash(rerun_err, rerun_status, None)
  rec = {
    "signal": signal.Signals(sig).name,
    "trial": index,
    "moment_s": round(moment, 3),
    "sent_at_s": round(sent_at, 3),
    "finished_before_signal": finished_before,
    "status": status,
    "expected_status": sorted(expected),
    "hung": hung,
    "stopped_after_s": round(stopped_after, 3),
    "reached_step": reached["step"],
    "checkpoint_step": reached["checkpoint"],
    "stderr_last_line": _last_line(err),
    "traceback": crash,
    "rerun_status": rerun_status,
    "rerun_s": round(rerun_s, 2),
    "rerun_stdout_last_line": _last_line(rerun_out),
    "rerun_stderr_last_line": _last_line(rerun_err),
    "rerun_traceback": rerun_crash,
    "duplicate_records": after["duplicate_records"],
    "final_step": compared.get("step"),
    "bitwise_equal": bool(compared.get("equal", False)),
    "differing_leaves": compared.get("differing_leaves", []),
    "max_abs_diff": compared.get("max_abs_diff"),
    "error": compared.get("error"),
    "workdir": workdir,
  }
  rec["clean"] = status in expected and not crash and not hung
  rec["passed"] = rec["bitwise_equal"] and rerun_status == 0
  if rec["passed"] and rec["clean"] and not args.keep:
    shutil.rmtree(workdir, ignore_errors=True)
  return rec


def _line(rec: dict) -> str:
  if rec["reached_step"] is None:
    reached = "before step 1"
  else:
    reached = f"step {rec['reached_step']}"
  ckpt = "-" if rec["checkpoint_step"] is None else rec["checkpoint_step"]
  status = f"{rec['status']}" + (
    " (finished before the signal)" if rec["finished_before_signal"] else ""
  )
  if rec["hung"]:
    status += " (did not stop; killed)"
  crash = (
    "yes: " + ", ".join(rec["traceback"] + rec["rerun_traceback"])
    if (rec["traceback"] or rec["rerun_traceback"])
    else "no"
  )
  text = (
    f"{rec['signal']:7s} #{rec['trial']:<2d} at {rec['sent_at_s']:6.2f} s  exit {status:>4s}  "
    f"reached {reached:>13s} (checkpoint {ckpt:>2})  rerun exit {rec['rerun_status']} "
    f"in {rec['rerun_s']:5.1f} s  bitwise equal: {rec['bitwise_equal']}  traceback seen: {crash}"
  )
  if not rec["clean"]:
    text += f"  [unclean: expected exit {'/'.join(map(str, rec['expected_status']))}]"
  if rec["error"]:
    text += f"  [{rec['error']}]"
  if rec["differing_leaves"]:
    text += (
      f"  [{len(rec['differing_leaves'])} leaves differ, max |diff| {rec['max_abs_diff']:.3g}]"
    )
  if rec["signal"] == "SIGINT" and rec["stderr_last_line"]:
    text += f"\n    its last line: {rec['stderr_last_line']}"
  return text


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--trials", type=int, default=10, help="trials per signal (default 10)")
  parser.add_argument("--seed", type=int, default=0, help="seed of the random moments")
  parser.add_argument(
    "--signals", nargs="+", choices=sorted(SIGNALS), default=["sigkill", "sigint"]
  )
  parser.add_argument(
    "--at", type=float, nargs="+", help="moments in seconds to use instead of random ones"
  )
  parser.add_argument("--steps", type=int, default=40, help="num_train_steps (default 40)")
  parser.add_argument("--checkpoint-every", type=int, default=5, help="checkpoint.every")
  parser.add_argument("--data-dir", default=None, help="dataset folder (default: a temp folder)")
  parser.add_argument("--workdir", default=None, help="folder for the runs (default: a temp one)")
  parser.add_argument("--keep", action="store_true", help="keep the workdirs of passing trials")
  parser.add_argument("--strict", action="store_true", help="also fail on unclean interrupts")
  parser.add_argument("--out", default="benchmarks/results/interrupt_resume.json")
  parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    return _worker()

  # Children inherit an ignored SIGINT (e.g. from `nohup` or a shell's `&`),
  # which would make every SIGINT trial a no-op; a handler here is reset to the
  # default in the children when they start.
  signal.signal(signal.SIGINT, signal.default_int_handler)
  t_start = time.perf_counter()
  base = args.workdir or tempfile.mkdtemp(prefix="jaxsal_interrupt_")
  os.makedirs(base, exist_ok=True)
  args.data_dir = os.path.abspath(args.data_dir or os.path.join(base, "data"))
  moments = args.at
  print(
    f"interrupt_resume: seed {args.seed}, {args.trials} trials per signal "
    f"({', '.join(s.upper() for s in args.signals)}), {args.steps} steps, checkpoint every "
    f"{args.checkpoint_every}; runs in {base}",
    flush=True,
  )
  print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")

  subprocess.run(
    [sys.executable, "-m", "jaxsal.cli", "prepare-data", "--dataset", "cluttered_digits"]
    + ["--config", "small", "--data-dir", args.data_dir],
    check=True,
    capture_output=True,
  )
  loader = _Loader(os.path.join(base, "loader.stderr"))
  info = loader.ask(info=True)
  print(f"jax {info['jax']}, backend of the loader: {info['backend']}")

  ref_dir = os.path.join(base, "reference")
  cmd = _train_command(ref_dir, args)
  print("command: " + " ".join(cmd[1:]).replace(ref_dir, "WORKDIR"), flush=True)
  proc, t0 = _start(cmd, ref_dir + "_run")
  status, _ = _finish(proc, RERUN_TIMEOUT_S)
  ref_s = time.perf_counter() - t0
  if status != 0:
    print(f"the reference run failed (exit {status}); see {ref_dir}_run.stderr")
    return 1
  ref = loader.ask(reference=ref_dir)
  if "error" in ref:
    print(f"cannot load the reference: {ref['error']}")
    return 1
  print(
    f"reference: exit 0 in {ref_s:.2f} s, step {ref['step']}, {ref['leaves']} leaves "
    f"({ref['size']} numbers): {_last_line(_read(ref_dir + '_run.stdout'))}",
    flush=True,
  )

  rng = random.Random(args.seed)
  records = []
  for name in args.signals:
    # A draw that comes after the run has ended interrupts nothing (run times
    # vary with the machine's load); it is kept and checked, and another
    # moment is drawn, until --trials runs were interrupted (at most 3x draws).
    attempt, interrupted = 0, 0
    while (
      (attempt < len(moments))
      if moments
      else (interrupted < args.trials and attempt < 3 * args.trials)
    ):
      moment = moments[attempt] if moments else rng.uniform(0.0, ref_s)
      attempt += 1
      rec = _trial(name, attempt, moment, base, loader, args)
      interrupted += not rec["finished_before_signal"]
      records.append(rec)
      print(_line(rec), flush=True)
  loader.close()

  summary = {}
  for name in args.signals:
    recs = [r for r in records if r["signal"] == signal.Signals(SIGNALS[name]).name]
    hit = [r for r in recs if not r["finished_before_signal"]]
    late = [r for r in recs if r["finished_before_signal"]]
    statuses = collections.Counter(str(r["status"]) for r in recs)
    summary[name.upper()] = s = {
      "draws": len(recs),
      "interrupted": len(hit),
      "interrupted_bitwise_equal": sum(r["bitwise_equal"] for r in hit),
      "finished_before_signal": len(late),
      "finished_before_signal_bitwise_equal": sum(r["bitwise_equal"] for r in late),
      "reruns_ok": sum(r["rerun_status"] == 0 for r in recs),
      "clean": sum(r["clean"] for r in recs),
      "tracebacks": sum(bool(r["traceback"] or r["rerun_traceback"]) for r in recs),
      "statuses": dict(statuses),
    }
    print(
      f"{name.upper()}: {s['interrupted_bitwise_equal']}/{s['interrupted']} bitwise equal "
      f"(interrupted runs); {s['finished_before_signal']} more draws came after the run "
      f"had ended ({s['finished_before_signal_bitwise_equal']}/{s['finished_before_signal']} "
      f"equal); {s['reruns_ok']}/{s['draws']} reruns exit 0, {s['clean']}/{s['draws']} clean "
      f"interrupts, {s['tracebacks']} with a traceback or crash; exit statuses "
      + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))
    )
  failed = [r for r in records if not r["passed"]]
  unclean = [r for r in records if not r["clean"]]
  short = [k for k, v in summary.items() if not args.at and v["interrupted"] < args.trials]
  for k in short:
    print(f"{k}: only {summary[k]['interrupted']} of {args.trials} draws interrupted a run")
  ok = not failed and not short and not (args.strict and unclean)
  total_s = time.perf_counter() - t_start
  print(f"total {total_s:.0f} s; {'PASS' if ok else 'FAIL'}", flush=True)
  for r in failed + unclean:
    print(f"  kept for inspection: {r['workdir']}")

  result = {
    "command": "python benchmarks/interrupt_resume.py " + " ".join(sys.argv[1:]),
    "train_command": " ".join(cmd[1:]).replace(ref_dir, "WORKDIR"),
    "seed": args.seed,
    "machine": {
      "machine": platform.machine(),
      "cpus": os.cpu_count(),
      "python": platform.python_version(),
      **info,
    },
    "reference": {"seconds": round(ref_s, 2), **ref},
    "summary": summary,
    "trials": records,
    "passed": ok,
    "total_s": round(total_s, 1),
  }
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  tmp = args.out + ".tmp"
  with open(tmp, "w") as f:
    json.dump(result, f, indent=2)
  os.replace(tmp, args.out)
  if not failed and not unclean and not args.keep and not args.workdir:
    shutil.rmtree(base, ignore_errors=True)
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
