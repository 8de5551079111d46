"""What every benchmark shares: one timing helper and one results format.

Timing (:func:`time_interleaved`): untimed warm-up calls first, then rounds in which every
provider is called once, in an order that rotates from round to round, so a machine whose
speed drifts (other jobs, clocks, caches) affects every provider alike. On the CPU each call is
timed with ``perf_counter``; on CUDA with a pair of events around it, synchronizing once per
round, so the time of a call is that of its kernels, or of its launches when the host is the
slower side. :func:`summary_ms` gives the median and the 20th/80th percentiles,
:func:`peak_memory_mb` the CUDA memory one call allocates at its peak, :func:`peak_rss_mb` the
host memory (resident set) one call adds at its peak.

Results: JSON lines, one row per (case, provider), each carrying :func:`environment` (run id,
date, device and its name, the host CPU, alwa_ext's CPU path, threads, torch, CUDA, commit,
load average) and appended with :func:`append_rows`; :func:`read_rows` reads them back.
benchmarks.plot turns them into charts and markdown tables.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import re
import subprocess
import time
import uuid
from typing import Callable, Dict, List, Optional, Sequence

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")


# --------------------------------------------------------------------------- timing


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100])."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary_ms(seconds: Sequence[float]) -> Dict[str, float]:
    """Median and 20th/80th percentiles, in milliseconds."""
    ms = [s * 1e3 for s in seconds]
    return {"median_ms": percentile(ms, 50), "p20_ms": percentile(ms, 20), "p80_ms": percentile(ms, 80)}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(
    calls: Dict[str, Callable],
    *,
    repeats: int,
    warmup: int = 3,
    device: torch.device = torch.device("cpu"),
    prepare: Optional[Dict[str, Callable[[], object]]] = None,
) -> Dict[str, List[float]]:
    """Seconds per call of each provider: ``repeats`` timed calls after ``warmup`` untimed ones,
    the providers taking turns in a rotating order.

    ``prepare[name]``, where given, runs untimed before each call of ``calls[name]``, which then
    receives its result (a backward timed without its forward: prepare the loss, time
    ``loss.backward()``).
    """
    device = torch.device(device)
    names = list(calls)
    prepare = prepare or {}

    def arguments(name):
        return (prepare[name](),) if name in prepare else ()

    for _ in range(warmup):
        for name in names:
            calls[name](*arguments(name))
    synchronize(device)
    times: Dict[str, List[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        if device.type == "cuda":
            events = []
            for name in order:
                args = arguments(name)
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                calls[name](*args)
                end.record()
                events.append((name, start, end))
            torch.cuda.synchronize(device)
            for name, start, end in events:
                times[name].append(start.elapsed_time(end) / 1e3)
        else:
            for name in order:
                args = arguments(name)
                start = time.perf_counter()
                calls[name](*args)
                times[name].append(time.perf_counter() - start)
    return times


def peak_memory_mb(call: Callable[[], object], device: torch.device) -> Optional[float]:
    """CUDA memory allocated at the peak of one call, above what was allocated before it
    (None on the CPU)."""
    if torch.device(device).type != "cuda":
        return None
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    result = call()
    torch.cuda.synchronize(device)
    del result
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def peak_rss_mb(call: Callable[[], object]) -> Optional[float]:
    """Host memory one call adds at its peak: the process's resident-set high-water mark, reset
    just before the call (Linux: /proc/self/clear_refs), above the resident set at its start.
    Counts every page the call touches (tensors, its outputs, allocator slack); None where
    Linux's counters are not there."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current VmRSS
        before = _status_kb("VmRSS")
        result = call()
        peak = _status_kb("VmHWM")
    except OSError:
        return None
    del result
    return (peak - before) / 1024


def keep_compiled_graphs(limit: int = 1024) -> None:
    """Every (kind, N, grad mode) is its own static torch.compile graph: raise dynamo's cache
    limits so a whole grid stays compiled."""
    for name in ("cache_size_limit", "recompile_limit", "accumulated_cache_size_limit", "accumulated_recompile_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(getattr(torch._dynamo.config, name), limit))


# --------------------------------------------------------------------------- inputs


def make_boxes(n: int, dtype: torch.dtype = torch.float32, device="cpu", seed: int = 0):
    """(pred, target): predictions near their targets, like matched anchors after some
    training; xyxy, positive sizes, coordinates up to ~640."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 512
    wh = torch.rand(n, 2, generator=g) * 128 + 4
    target = torch.cat([xy, xy + wh], 1)
    pred = target + torch.randn(n, 4, generator=g) * 0.15 * wh.repeat(1, 2)
    return pred.to(device=device, dtype=dtype), target.to(device=device, dtype=dtype)


# --------------------------------------------------------------------------- results


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_slug(name: str) -> str:
    """A short file-name form of a GPU's name ("NVIDIA H200" -> "h200")."""
    match = re.search(r"\b([A-Z]\d{2,4}[A-Z]?)\b", name.upper())
    slug = match.group(1) if match else name
    return re.sub(r"[^a-z0-9]+", "-", slug.lower()).strip("-")


def git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        # Changes to the results themselves do not make the code dirty.
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results"],
                               cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load_average() -> Optional[List[float]]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def environment(device) -> Dict[str, object]:
    """Where and on what the numbers were taken; stored with every row."""
    import alwa_ext  # here, so that gpu_slug and the timing helpers work before a build

    device = torch.device(device)
    env = {
        "run_id": datetime.datetime.now().strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6],
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "host_cpu": cpu_name(),
        "cpu_isa": alwa_ext.cpu.isa(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "alwa_ext": alwa_ext.__version__,
        "commit": git_commit(),
        "load_avg_start": load_average(),
    }
    return env


def describe(env: Dict[str, object]) -> str:
    """The first line a benchmark prints: what it runs on."""
    return (f"# {env['device_name']} | {env['device']} | isa {env['cpu_isa']} | {env['threads']} threads | "
            f"torch {env['torch']} | commit {env['commit']} | load {env['load_avg_start']}")


def append_rows(path: str, rows: List[Dict[str, object]]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")
    print(f"# {len(rows)} rows appended to {os.path.relpath(path)}", flush=True)


def finish_run(rows: List[Dict[str, object]], path: Optional[str]) -> None:
    """Stamps the load average at the end of the run on every row, then appends the rows to
    ``path`` (None: print only)."""
    end = load_average()
    for row in rows:
        row["load_avg_end"] = end
    print(f"# load average at the end: {end}", flush=True)
    if path is not None:
        append_rows(path, rows)


def read_rows(path: str, run_id: Optional[str] = None) -> List[Dict[str, object]]:
    """The rows of one run (the last one in the file unless ``run_id`` says)."""
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    if not rows:
        raise SystemExit(f"{path}: no rows")
    run_id = run_id or rows[-1]["run_id"]
    rows = [r for r in rows if r["run_id"] == run_id]
    if not rows:
        raise SystemExit(f"{path}: no run {run_id}")
    return rows
