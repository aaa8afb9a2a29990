"""What runs used, as the views show it: CPU time, peak memory and GPU memory per run (run.json's `resources`),
and for Slurm jobs what they requested against what they used, with the mem_gb and timeout_min that would do."""

from __future__ import annotations

import math
from typing import Iterable

from ..records import RunRecord

COLUMNS = ("cpu_s", "peak_mem_bytes", "gpu_mem_bytes")  # the views' columns, as figures() names them
SIZES = ("peak_mem_bytes", "gpu_mem_bytes")  # shown as sizes
GB = 1 << 30  # Slurm's G, as mem_gb is given to it
MEMORY_MARGIN = 1.25  # a suggested request: the largest peak and a quarter more
TIME_MARGIN = 1.5  # a suggested time limit: the longest run and half again


def figures(resources: dict | None) -> dict:
    """A run's CPU time (seconds), peak memory of its process tree and largest peak of one GPU (bytes): the
    launcher's own measures, or where it has none (a task Slurm ended), Slurm's. Absent where neither says."""
    resources = resources or {}
    slurm = resources.get("slurm") or {}
    out = {}
    if "cpu_user_s" in resources and "cpu_system_s" in resources:
        out["cpu_s"] = round(resources["cpu_user_s"] + resources["cpu_system_s"], 3)
    elif "total_cpu_s" in slurm:
        out["cpu_s"] = slurm["total_cpu_s"]
    peak = resources.get("peak_rss_bytes", resources.get("max_process_rss_bytes", slurm.get("max_rss_bytes")))
    if peak is not None:
        out["peak_mem_bytes"] = peak
    gpus = [gpu["peak_memory_bytes"] for gpu in resources.get("gpus") or () if "peak_memory_bytes" in gpu]
    if gpus or "max_gpu_memory_bytes" in slurm:
        out["gpu_mem_bytes"] = max(gpus) if gpus else slurm["max_gpu_memory_bytes"]
    return out


def size_text(value: float) -> str:
    """Bytes as a short size: 545 MiB, 3.1 GiB."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= scale:
            amount = value / scale
            return f"{amount:.1f} {unit}" if amount < 10 else f"{amount:.0f} {unit}"
    return f"{value:.0f} B"


def _minutes_text(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 600 else f"{seconds / 60:.0f} min"


def sizing(records: Iterable[RunRecord | None]) -> list[str]:
    """For jobs that Slurm accounted for: the largest memory and the longest time used against what was requested,
    and the mem_gb and timeout_min that would do with a margin; nothing when no job has Slurm's figures."""
    used = [r.resources["slurm"] for r in records if r is not None and (r.resources or {}).get("slurm")]
    lines = []
    memory = [(u["max_rss_bytes"], u["req_mem_bytes"]) for u in used if "max_rss_bytes" in u and "req_mem_bytes" in u]
    if memory:
        peak, requested = max(m[0] for m in memory), max(m[1] for m in memory)
        enough = max(1, math.ceil(peak * MEMORY_MARGIN / GB))
        advice = ("mem_gb=" + str(enough) + (" would do" if enough * GB <= requested else " or more is needed"))
        lines.append(f"memory: peak {size_text(peak)} of {size_text(requested)} requested: {advice}")
    times = [(u["elapsed_s"], u["timelimit_s"]) for u in used if "elapsed_s" in u and "timelimit_s" in u]
    if times:
        longest, limit = max(t[0] for t in times), max(t[1] for t in times)
        enough = max(1, math.ceil(longest * TIME_MARGIN / 60))
        advice = ("timeout_min=" + str(enough) + (" would do" if enough * 60 <= limit else " or more is needed"))
        lines.append(f"time: longest {_minutes_text(longest)} of {_minutes_text(limit)} allowed: {advice}")
    return lines
