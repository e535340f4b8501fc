"""Start detached component processes and stop them again, from this or any later process.

Each component runs in its own session (so its own process group): it survives the command
that started it, a Ctrl-C in that terminal does not reach it, and stopping the group also
stops anything it forked. A PID is only ever signalled after checking its start time against
the one recorded at launch, so a PID reused by an unrelated process is never killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_STOP_GRACE_SECONDS = 10.0
KILL_WAIT_SECONDS = 5.0
POLL_SECONDS = 0.05


@dataclass(frozen=True)
class ProcessIdentity:
    pid: int
    # Start time in clock ticks since boot (/proc/<pid>/stat field 22): PID + this is unique.
    start_ticks: int


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports (all held open at once so the OS cannot repeat one)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _read_stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its last ")".
    after_name = raw[raw.rindex(")") + 2 :].split()
    return after_name  # [0] = state (field 3), [2] = pgrp (field 5), [19] = starttime (field 22)


def start_ticks_of(pid: int) -> int | None:
    fields = _read_stat(pid)
    return int(fields[19]) if fields else None


def is_running(identity: ProcessIdentity) -> bool:
    """True if that very process (not a PID reuse) exists and is not a zombie."""
    _reap_if_our_child(identity.pid)
    fields = _read_stat(identity.pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return int(fields[19]) == identity.start_ticks


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _read_stat(int(entry.name))
        if fields and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def start_detached(
    command: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> tuple[subprocess.Popen[bytes], ProcessIdentity]:
    """Launch `command` in a new session with stdout+stderr appended to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            start_new_session=True,
            close_fds=True,
        )
    ticks = start_ticks_of(process.pid)
    if ticks is None:  # exited before we could look: report it like any early death
        ticks = -1
    return process, ProcessIdentity(process.pid, ticks)


def _reap_if_our_child(pid: int) -> None:
    """Collect the exit status if `pid` is our own exited child, so it stops being a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _still_ours(identity: ProcessIdentity) -> bool:
    """Is the leader ours, or gone leaving members of its group behind?

    A different process now holding the leader's PID means the PID was reused: that process
    and any group it leads are someone else's.
    """
    if is_running(identity):
        return True
    fields = _read_stat(identity.pid)
    if fields is not None and fields[0] not in ("Z", "X"):
        return False
    return bool(group_members(identity.pid))


def _wait_until_group_gone(identity: ProcessIdentity, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if not is_running(identity) and not group_members(identity.pid):
            return True
        time.sleep(POLL_SECONDS)
    return not is_running(identity) and not group_members(identity.pid)


def stop_groups(
    identities: Sequence[ProcessIdentity], grace_seconds: float = DEFAULT_STOP_GRACE_SECONDS
) -> list[int]:
    """Stop process groups one after the other, in the given order: SIGTERM, then SIGKILL
    if the group outlives the grace. Returns PIDs still alive at the end (normally none).

    One at a time because order matters: a kube-apiserver whose etcd is already gone hangs
    in its graceful shutdown, while with etcd still there it exits in about a second.
    """
    still_alive: list[int] = []
    for identity in identities:
        if not _still_ours(identity):
            continue
        _signal_group(identity.pid, signal.SIGTERM)
        if not _wait_until_group_gone(identity, time.monotonic() + grace_seconds):
            _signal_group(identity.pid, signal.SIGKILL)
            _wait_until_group_gone(identity, time.monotonic() + KILL_WAIT_SECONDS)
        if is_running(identity):
            still_alive.append(identity.pid)
        still_alive += [pid for pid in group_members(identity.pid) if pid != identity.pid]
    return still_alive


# A closed terminal sends SIGHUP, a process manager or `kill` SIGTERM.
TERMINATION_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def exit_on_termination_signals() -> Iterator[None]:
    """Within this block, SIGTERM and SIGHUP raise SystemExit(128 + signal) in the main
    thread, so `finally` blocks and context managers stop what this process started, as
    Ctrl-C does; their default action would end the process at once and leave its detached
    children running. A signal the caller ignores (nohup) stays ignored.
    """
    handled = [sig for sig in TERMINATION_SIGNALS if signal.getsignal(sig) is not signal.SIG_IGN]

    def terminate(signum: int, frame: object) -> None:
        for sig in handled:  # a repeated signal must not cut the clean-up short
            signal.signal(sig, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, terminate) for sig in handled}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
