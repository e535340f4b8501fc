"""Start kopf with our handlers and options."""

from __future__ import annotations

import logging
import sys

import kopf

from .logs import configure as configure_logs
from .settings import OperatorStop, RunOptions


def run_operator(options: RunOptions, *, liveness: str | None, verbose: bool, log_format: str = "text") -> None:
    configure_logs(verbose=verbose, log_format=log_format)
    if not verbose:
        # kopf logs every handler call at INFO: one line per watch event, noise at scale.
        logging.getLogger("kopf").setLevel(logging.WARNING)
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per registry poll
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    from . import handlers  # noqa: F401  (registers the handlers)
    from .gc_pauses import install as install_gc_pauses
    from .kopf_adapter import install as install_kopf_adapter

    install_gc_pauses()  # short full collections once the caches are loaded
    install_kopf_adapter()  # O(1) index gating, slim watch events; refuses an unchecked kopf

    stop = OperatorStop()
    kopf.run(
        clusterwide=options.clusterwide,
        namespaces=list(options.namespaces),
        # No kopf peering: our Lease election (controller/leader_election.py) fences writes.
        standalone=True,
        liveness_endpoint=liveness,
        stop_flag=stop.flag,
        memo=kopf.Memo(options=options, stop=stop),
    )
    if stop.reason is not None:
        # Non-zero: the container restarts as a fresh standby (client-go's controllers do the same).
        sys.exit(f"apprelease: {stop.reason}")
