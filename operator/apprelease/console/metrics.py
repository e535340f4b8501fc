"""The console's own metrics (GET /metrics): watches by kind, live pages, updates sent.

A registry of its own, so the console's figures never mix with the operator's.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

REGISTRY = CollectorRegistry(auto_describe=True)

WATCH_REQUESTS = Counter(
    "apprelease_console_watch_requests", "LIST and WATCH requests of the shared caches, by kind.",
    ["kind", "verb"], registry=REGISTRY)
WATCHES_OPEN = Gauge(
    "apprelease_console_watches_open", "Watch streams open now, by kind.", ["kind"], registry=REGISTRY)
WATCH_EVENTS = Counter(
    "apprelease_console_watch_events", "Watch events received, by kind.", ["kind"], registry=REGISTRY)
STREAMS_OPEN = Gauge(
    "apprelease_console_streams_open", "Browser pages connected for live updates.", ["page"], registry=REGISTRY)
UPDATES_SENT = Counter(
    "apprelease_console_updates_sent", "Live updates sent to browsers.", ["page"], registry=REGISTRY)
ACTIONS = Counter(
    "apprelease_console_actions", "Actions requested, by action and outcome.", ["action", "outcome"],
    registry=REGISTRY)
