"""What every benchmark shares: timing with warm-up and interleaved providers, percentiles, the
description of the machine and the code, and the JSON-lines results file."""
from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import time
import uuid
from typing import Callable, Dict, List, Optional, Sequence

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100])."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary_ms(seconds: Sequence[float]) -> Dict[str, float]:
    ms = [s * 1e3 for s in seconds]
    return {"median_ms": percentile(ms, 50), "p20_ms": percentile(ms, 20), "p80_ms": percentile(ms, 80)}


class Timer:
    """Times a callable on a device: perf_counter on CPU, CUDA events (after a synchronize) on CUDA."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def __call__(self, fn: Callable[[], None], before: Optional[Callable[[], None]] = None) -> float:
        """Seconds taken by fn(); before() runs first, untimed."""
        if before is not None:
            before()
        if self.cuda:
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start


def interleaved(providers: Dict[str, Callable[[], float]], repeats: int) -> Dict[str, List[float]]:
    """Each provider's one-call timings, taking turns (rotating the order every round), so a
    drifting machine affects them alike."""
    names = list(providers)
    times: Dict[str, List[float]] = {name: [] for name in names}
    for r in range(repeats):
        for k in range(len(names)):
            name = names[(r + k) % len(names)]
            times[name].append(providers[name]())
    return times


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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


def environment(device: torch.device) -> Dict[str, object]:
    """Where and on what the numbers were taken; stored with every row."""
    import alwa_ext

    env = {
        "run_id": datetime.datetime.now().strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6],
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "cpu_isa": alwa_ext.cpu.isa(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "alwa_ext": alwa_ext.__version__,
        "commit": git_commit(),
        "load_avg_start": load_average(),
    }
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
    return env


def append_rows(path: str, rows: List[Dict[str, object]]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")
