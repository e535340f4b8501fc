"""The web hook client over real sockets: a local HTTP server plays the gate. The connection
goes to the checked address while the Host header keeps the URL's name."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from apprelease.analysis import webhook
from apprelease.analysis.errors import AddressNotAllowed, MeasurementInconclusive
from apprelease.domain import Policy

LOOPBACK_ALLOWED = Policy(registry_networks_allowed=("127.0.0.0/8",))


class Gate(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Gate.received.append({"path": self.path, "host": self.headers["Host"], "body": body})
        status = 200 if self.path.startswith("/pass") else 412
        answer = b"go ahead" if status == 200 else b"error rate 7% above 1%"
        self.send_response(status)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def gate() -> Iterator[str]:
    Gate.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Gate)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def call(url: str, policy: Policy = LOOPBACK_ALLOWED, timeout: float = 5.0) -> webhook.WebhookResult:
    payload = webhook.context_payload(name="shop", namespace="team-a", phase="Progressing", revision=3,
                                      canary_hash="c4n4ry", stable_hash="st4bl3")
    return asyncio.run(webhook.call(url, payload, timeout=timeout, policy=policy))


def test_the_gate_passes_or_fails_the_step(gate: str) -> None:
    port = gate.rsplit(":", 1)[1]
    assert call(f"http://localhost:{port}/pass?token=t0k3n") == webhook.WebhookResult(True, 200, "go ahead")
    assert call(f"http://{gate}/check") == webhook.WebhookResult(False, 412, "error rate 7% above 1%")
    first = Gate.received[0]
    # Connected to the checked 127.0.0.1; the gate still sees the name it was given.
    assert first["host"] == f"localhost:{port}" and first["path"] == "/pass?token=t0k3n"
    assert first["body"]["name"] == "shop" and first["body"]["canaryHash"] == "c4n4ry"


def test_a_gate_that_is_down_is_inconclusive(gate: str) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(MeasurementInconclusive, match=r"cannot connect"):
        call(f"http://127.0.0.1:{port}/pass", timeout=2)


def test_a_gate_on_loopback_is_refused_by_default(gate: str) -> None:
    with pytest.raises(AddressNotAllowed, match=r"the web hook address .* is a loopback address"):
        call(f"http://{gate}/pass", policy=Policy())
    assert Gate.received == []
