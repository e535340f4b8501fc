"""`apprelease`, reporting what it holds on SIGUSR1 (for `bench.memory --inspect`).

    python bench/memory_inspect.py WORK_DIR [apprelease arguments ...]

On SIGUSR1 it reads a label from WORK_DIR/inspect-request and writes
WORK_DIR/inspect-<label>.txt: RSS, glibc's heap figures (mallinfo2: in use vs free but kept),
Python's small-object allocator (sys._debugmallocstats), the threads, and the gc-tracked
objects by type. With BENCH_TRACEMALLOC=1 in its environment also tracemalloc's live total
and its largest allocation sites (by line and by call stack); that costs memory and time
(imports alone take ~50 s on the shared machine), so RSS is then not comparable. With
BENCH_SAMPLE_SECONDS=N, every N seconds RSS and the most numerous object types go to
WORK_DIR/inspect-samples.txt (objects frozen by the operator's gc.freeze() are not counted).
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

FRAMES = 8
TOP = 40


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost",
    )]


def _heap() -> str:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        info = libc.mallinfo2()
    except (OSError, AttributeError) as exc:
        return f"mallinfo2 unavailable: {exc}"
    mib = 1024 * 1024
    return (
        f"glibc heap: arena {info.arena / mib:.1f} MiB (in use {info.uordblks / mib:.1f},"
        f" free but kept {info.fordblks / mib:.1f}), mmapped {info.hblkhd / mib:.1f} MiB"
    )


class _GcLog:
    """Collections by generation (count, objects collected, most in one), and every full one."""

    def __init__(self) -> None:
        self.by_generation: dict[int, list[int]] = {0: [0, 0, 0], 1: [0, 0, 0], 2: [0, 0, 0]}
        self.full: list[str] = []
        self._started = 0.0
        self._origin = time.monotonic()

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation, collected = info["generation"], info["collected"]
        totals = self.by_generation[generation]
        totals[0] += 1
        totals[1] += collected
        totals[2] = max(totals[2], collected)
        if generation == 2:
            self.full.append(
                f"t={time.monotonic() - self._origin:.0f}s collected {collected}"
                f" in {(time.perf_counter() - self._started) * 1000:.0f} ms; {_rss()}"
            )

    def lines(self) -> list[str]:
        out = [f"gc generation {g}: {n} collections, {c} objects collected, at most {m} in one"
               for g, (n, c, m) in self.by_generation.items()]
        return out + [f"  full: {line}" for line in self.full]


GC_LOG = _GcLog()


def _rss() -> str:
    lines = Path("/proc/self/status").read_text().splitlines()
    return ", ".join(line for line in lines if line.startswith(("VmRSS", "VmHWM")))


def _pymalloc_summary() -> list[str]:
    """The totals of sys._debugmallocstats(), which writes to the C stderr."""
    with tempfile.TemporaryFile() as capture:
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        text = capture.read().decode(errors="replace")
    keep = ("# arenas", "# bytes in", "Total", "arenas allocated", "arenas reclaimed",
            "arenas highwater", "bytes in allocated blocks", "bytes in available blocks",
            "unused pools", "bytes lost")
    lines = text.splitlines()
    table = [line for line in lines if line[:1] == " " and line.split()[:1] and line.split()[0].isdigit()]
    totals = [line.strip() for line in lines if any(k in line for k in keep)]
    return [f"pymalloc: {line}" for line in totals] + ["pymalloc size classes (class, size, pools, in use, free):"] + table


def _tracemalloc_report() -> list[str]:
    snapshot = tracemalloc.take_snapshot().filter_traces([
        tracemalloc.Filter(False, tracemalloc.__file__),
    ])
    current, peak = tracemalloc.get_traced_memory()
    out = [f"tracemalloc: live {current / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB"]
    out.append("\n## by line")
    out += [str(stat) for stat in snapshot.statistics("lineno")[:TOP]]
    out.append("\n## by file")
    out += [str(stat) for stat in snapshot.statistics("filename")[:TOP]]
    out.append("\n## by call stack")
    for stat in snapshot.statistics("traceback")[:TOP // 2]:
        out.append(f"{stat.size / 1024:.1f} KiB in {stat.count} blocks")
        out += [f"    {line}" for line in stat.traceback.format(limit=FRAMES, most_recent_first=True)]
    return out


def _report(work_dir: Path) -> None:
    label = (work_dir / "inspect-request").read_text().strip()
    started = time.monotonic()
    out = [f"# {label}", _rss(), _heap(), _runtime_state(),
           f"threads: {sorted(t.name for t in threading.enumerate())}"]
    out += GC_LOG.lines()
    out += _pymalloc_summary()
    if tracemalloc.is_tracing():
        out += _tracemalloc_report()
    gc.unfreeze()  # frozen objects are not in get_objects()
    counts = Counter(type(obj).__qualname__ for obj in gc.get_objects())
    out.append("\n## gc-tracked objects by type")
    out += [f"{count:>9} {name}" for name, count in counts.most_common(TOP)]
    out.append(f"\n(report took {time.monotonic() - started:.1f} s)")
    (work_dir / f"inspect-{label}.txt").write_text("\n".join(out) + "\n")


RUNTIMES: list[Any] = []  # the operator's Runtime, once kopf has started it


def _deep_size(root: Any) -> int:
    """Bytes held by a structure of dicts, lists, tuples, sets, strings and bytes (each once)."""
    seen: set[int] = set()
    total, stack = 0, [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        if isinstance(obj, dict):
            stack += [*obj.keys(), *obj.values()]
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack += list(obj)
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            stack.append(vars(obj))
    return total


def _runtime_state() -> str:
    """What the operator's own structures hold (the write overlay, the informers)."""
    if not RUNTIMES:
        return "runtime not started"
    runtime = RUNTIMES[0]
    overlay = dict(runtime.cache._overlay)
    entries = sum(len(named) for named in overlay.values())
    return (f"overlay: {len(overlay)} keys, {entries} objects, {_deep_size(overlay) / 2**20:.1f} MiB;"
            f" informer objects {runtime.informers.object_count()}; queue depth {len(runtime.queue)}")


def _sample(work_dir: Path, every: float) -> None:
    """Every `every` seconds: RSS, the operator's structures, the most numerous young gc-tracked types."""
    origin = time.monotonic()
    with (work_dir / "inspect-samples.txt").open("a") as out:
        while True:
            time.sleep(every)
            counts = Counter(type(obj).__qualname__ for obj in gc.get_objects())
            top = ", ".join(f"{name} {count}" for name, count in counts.most_common(8))
            out.write(f"t={time.monotonic() - origin:.0f}s {_rss()}; {_runtime_state()}; young: {top}\n")
            out.flush()


def _record_runtime() -> None:
    from apprelease.controller import runtime

    original = runtime.Runtime.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        RUNTIMES.append(self)

    runtime.Runtime.__init__ = init  # type: ignore[method-assign]


def main() -> None:
    work_dir = Path(sys.argv[1])
    if os.environ.get("BENCH_TRACEMALLOC") == "1":
        tracemalloc.start(FRAMES)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        _report(work_dir)

    signal.signal(signal.SIGUSR1, on_signal)
    gc.callbacks.append(GC_LOG)
    every = float(os.environ.get("BENCH_SAMPLE_SECONDS") or 0)
    if every:
        threading.Thread(target=_sample, args=(work_dir, every), name="inspect-sampler", daemon=True).start()
    _record_runtime()
    sys.argv = ["apprelease", *sys.argv[2:]]
    from apprelease.cli.main import main as apprelease_main

    apprelease_main()


if __name__ == "__main__":
    main()
