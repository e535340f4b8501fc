"""Run the `go` tool: capture its output, report progress on long steps, fail with context."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

Progress = Callable[[str], None]

# Lines of go's output kept for error messages; build failures print the cause last.
OUTPUT_TAIL_LINES = 40
# How often a long step says it is still alive.
HEARTBEAT_SECONDS = 15.0


class BuildError(RuntimeError):
    """A build step failed; the message names the step and ends with the tail of go's output."""

    def __init__(self, step: str, detail: str) -> None:
        super().__init__(f"{step} failed: {detail}")
        self.step = step
        self.detail = detail


def find_go() -> str:
    go = shutil.which("go")
    if go is None:
        raise BuildError(
            "locating the Go toolchain",
            "`go` is not on PATH; install Go (see the version in the generated go.mod)",
        )
    return go


def go_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment (module proxy settings stay as configured) plus our pins."""
    env = dict(os.environ)
    # Never let `go` fetch another toolchain: a too-old local Go must fail loudly instead.
    env["GOTOOLCHAIN"] = "local"
    # Static binaries: nothing on the machine (libc version, cgo headers) can break them.
    env["CGO_ENABLED"] = "0"
    if extra:
        env.update(extra)
    return env


def capture_go(args: Sequence[str], *, step: str, cwd: Path) -> str:
    """Run a quick `go` query and return its stdout alone (stderr may carry download notes)."""
    result = subprocess.run(
        [find_go(), *args],
        cwd=cwd,
        env=go_environment(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )
    if result.returncode != 0:
        tail = "\n".join(result.stderr.splitlines()[-OUTPUT_TAIL_LINES:]) or "(no output)"
        raise BuildError(step, f"`go {' '.join(args)}` exited with {result.returncode}:\n{tail}")
    return result.stdout


def run_go(
    args: Sequence[str],
    *,
    step: str,
    cwd: Path,
    progress: Progress,
    env: Mapping[str, str] | None = None,
    heartbeat_seconds: float = HEARTBEAT_SECONDS,
) -> str:
    """Run `go <args>` in `cwd`; return its stdout+stderr or raise BuildError with the tail.

    While it runs, `progress` gets a "still ... N s" line every `heartbeat_seconds`, with the
    number of output lines (go's -v prints one per compiled package) and the latest one.
    """
    command = [find_go(), *args]
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=go_environment(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    lines: list[str] = []
    tail: collections.deque[str] = collections.deque(maxlen=OUTPUT_TAIL_LINES)

    def drain() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            tail.append(line)

    reader = threading.Thread(target=drain, name=f"go-output-{step}", daemon=True)
    reader.start()
    next_heartbeat = started + heartbeat_seconds
    try:
        while process.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=0.5)
            now = time.monotonic()
            if now >= next_heartbeat:
                seen = f", latest: {tail[-1]}" if tail else " (all cached so far: linking)"
                progress(
                    f"  still {step}... {now - started:.0f} s, {len(lines)} lines of output{seen}"
                )
                next_heartbeat = now + heartbeat_seconds
    except BaseException:
        # Interrupted (Ctrl-C): do not leave a compiler running in the background.
        process.kill()
        process.wait()
        raise
    reader.join(timeout=5)
    if process.returncode != 0:
        shown = "\n".join(tail) or "(no output)"
        raise BuildError(
            step,
            f"`go {' '.join(args[:2])} ...` exited with {process.returncode}; "
            f"last lines of its output:\n{shown}",
        )
    return "\n".join(lines)


def download_modules(modules: Mapping[str, str], *, cwd: Path) -> dict[str, Path]:
    """Fetch `{module: version}` into the Go module cache (through the configured module
    proxy, checksum-verified) and return each module's extracted, read-only directory.

    One `go mod download` for all of them; a module already in the cache costs no network.
    """
    requested = [f"{module}@{version}" for module, version in modules.items()]
    step = f"downloading Go modules {', '.join(requested)}"
    output = capture_go(["mod", "download", "-json", *requested], step=step, cwd=cwd)
    found: dict[str, Path] = {}
    decoder = json.JSONDecoder()
    position = 0
    while position < len(output):  # one JSON object per module, concatenated
        if output[position].isspace():
            position += 1
            continue
        record, position = decoder.raw_decode(output, position)
        if record.get("Error"):
            raise BuildError(step, str(record["Error"]))
        found[record["Path"]] = Path(record["Dir"])
    missing = sorted(set(modules) - set(found))
    if missing:
        raise BuildError(step, f"no directory reported for {missing}")
    return found
