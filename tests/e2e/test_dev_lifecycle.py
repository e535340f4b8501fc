"""`apprelease dev run` / `dev up` / `dev down` leave no process behind (issue 13): however
`dev run` ends (Ctrl-C, SIGTERM from a process manager, SIGHUP from a closed terminal, or a
SIGKILL it cannot handle), the cluster, KWOK, metrics-server and the operator it started go
away, at once or at the next `dev down`.

Every process of these clusters names the test's own temporary state directory on its
command line, so "a process of the cluster" is found (and, if a test fails, cleaned up) by
that path alone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from apprelease_dev.build import ensure_binaries
from tests.e2e.test_control_plane import _dev_cli, _processes_mentioning
from tests.plugins.cluster import NotYet, wait_for

pytestmark = pytest.mark.e2e

# `dev run` builds nothing here (binaries are ensured first); it starts the cluster, the
# operator and the example.
OPERATOR_START_TIMEOUT = 240.0
EXIT_TIMEOUT = 90.0
# The operator's command line (dev run's own starts `-m apprelease.cli.main dev`).
OPERATOR_COMMAND = "apprelease.cli.main --kubeconfig"


def _pids_mentioning(text: str) -> list[int]:
    return [int(line.split(":", 1)[0]) for line in _processes_mentioning(text)]


def _kill_leftovers(state_dir: Path) -> None:
    """After a failed test: stop what the CLI left, by the state directory in its command."""
    _dev_cli(state_dir, "down", timeout=120)
    for pid in _pids_mentioning(str(state_dir)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _hangup_default() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


@contextlib.contextmanager
def _dev_run(state_dir: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`apprelease dev run` as a process manager would start it (no terminal)."""
    ensure_binaries()
    with log.open("wb") as output:
        process = subprocess.Popen(
            # What `make run` runs (`apprelease dev run`).
            [
                sys.executable,
                "-m",
                "apprelease.cli.main",
                "dev",
                "--state-dir",
                str(state_dir),
                "run",
            ],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=dict(os.environ),
            # As a terminal starts it: under `nohup` (a CI runner's) SIGHUP would be inherited
            # ignored, and dev run rightly keeps an ignored signal ignored.
            preexec_fn=_hangup_default,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        _kill_leftovers(state_dir)


def _operator_running(state_dir: Path, process: subprocess.Popen[bytes], log: Path) -> object:
    if process.poll() is not None:
        raise AssertionError(f"dev run exited with {process.returncode}:\n{log.read_text()}")
    found = [line for line in _processes_mentioning(str(state_dir)) if OPERATOR_COMMAND in line]
    return found or NotYet(log.read_text()[-2000:])


def _wait_for_operator(state_dir: Path, process: subprocess.Popen[bytes], log: Path) -> None:
    wait_for(
        lambda: _operator_running(state_dir, process, log),
        OPERATOR_START_TIMEOUT,
        interval=0.5,
        message="dev run to start the cluster and the operator",
    )
    # The cluster's own processes run too (etcd, apiserver, ..., KWOK).
    assert len(_processes_mentioning(str(state_dir))) >= 6, _processes_mentioning(str(state_dir))


def _none_left(state_dir: Path) -> object:
    left = _processes_mentioning(str(state_dir))
    return True if not left else NotYet(left)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_dev_run_stops_everything_on_a_termination_signal(
    tmp_path: Path, signum: signal.Signals
) -> None:
    state_dir = tmp_path / "dev"
    log = tmp_path / "dev-run.log"
    with _dev_run(state_dir, log) as process:
        _wait_for_operator(state_dir, process, log)

        process.send_signal(signum)

        process.wait(timeout=EXIT_TIMEOUT)
        # It cleaned up before exiting: nothing of its cluster runs any more.
        assert _processes_mentioning(str(state_dir)) == [], log.read_text()[-3000:]
        assert process.returncode == 128 + signum, log.read_text()[-3000:]
        assert not (state_dir / "state.json").exists()


def test_dev_down_stops_what_a_killed_dev_run_started(tmp_path: Path) -> None:
    state_dir = tmp_path / "dev"
    log = tmp_path / "dev-run.log"
    with _dev_run(state_dir, log) as process:
        _wait_for_operator(state_dir, process, log)
        process.kill()  # SIGKILL: no handler runs, the children stay
        process.wait()
        assert _processes_mentioning(str(state_dir)), "the detached children outlive dev run"

        stopped = _dev_cli(state_dir, "down")

        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert _processes_mentioning(str(state_dir)) == [], stopped.stdout


def test_dev_down_after_up_with_nacos_leaves_no_process(tmp_path: Path) -> None:
    state_dir = tmp_path / "dev"
    try:
        started = _dev_cli(state_dir, "up", "--nodes", "1", "--nacos")
        assert started.returncode == 0, started.stdout + started.stderr

        def nacos_and_operator_running() -> object:
            running = _processes_mentioning(str(state_dir))
            nacos_jvm = [line for line in running if "java" in line]
            operator = [line for line in running if OPERATOR_COMMAND in line]
            return (nacos_jvm and operator) or NotYet(running)

        wait_for(nacos_and_operator_running, 120, interval=0.5, message="the Nacos JVM")

        stopped = _dev_cli(state_dir, "down")

        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert _processes_mentioning(str(state_dir)) == [], stopped.stdout
    finally:
        _kill_leftovers(state_dir)
