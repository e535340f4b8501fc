"""Start kopf with our handlers and options."""

from __future__ import annotations

import logging

import kopf

from .settings import RunOptions


def run_operator(options: RunOptions, *, liveness: str | None, verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
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

    kopf.run(
        clusterwide=options.clusterwide,
        namespaces=list(options.namespaces),
        standalone=options.peering is None,
        peering_name=options.peering,
        liveness_endpoint=liveness,
        memo=kopf.Memo(options=options),
    )
