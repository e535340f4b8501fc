"""Kubernetes Events on the AppRelease, for every transition and every error."""

from __future__ import annotations

import logging
import os
import socket
from datetime import UTC, datetime
from typing import Any

from ..api.spec import API_VERSION, KIND
from ..k8s.client import ApiError, Kube
from ..rollout.outcome import Event
from ..rollout.timefmt import format_time

log = logging.getLogger("apprelease.events")
COMPONENT = "apprelease"
MAX_MESSAGE = 1024


class EventRecorder:
    def __init__(self, kube: Kube):
        self.kube = kube
        self.instance = os.environ.get("POD_NAME") or socket.gethostname()

    def post(self, body: dict[str, Any], event: Event) -> None:
        """An Event about ``body`` (an AppRelease, or any object carrying its apiVersion/kind)."""
        meta = body["metadata"]
        now = format_time(datetime.now(UTC))
        obj = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": body.get("apiVersion", API_VERSION),
                "kind": body.get("kind", KIND),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": event.reason,
            "message": event.message[:MAX_MESSAGE],
            "type": event.type,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        log_fn = log.warning if event.type == "Warning" else log.info
        log_fn("%s/%s %s: %s", meta["namespace"], meta["name"], event.reason, event.message)
        try:
            self.kube.create(obj)
        except ApiError as exc:  # an Event is never worth failing a reconcile for
            if exc.namespace_terminating:
                return
            log.warning("could not post event %s: %s", event.reason, exc)
