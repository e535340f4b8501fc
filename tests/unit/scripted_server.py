"""A real local HTTP server that answers POSTs from a script, one answer per call, and counts
the calls: for clients whose retries must be counted on the wire, not in a mocked transport."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: Any = b""  # bytes as they are; anything else as JSON
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (a slow server)


@dataclass
class Script:
    """The answers, in order; the last one repeats once the others are used."""

    replies: list[Reply]
    calls: list[float] = field(default_factory=list)  # monotonic time of each call
    bodies: list[bytes] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)  # each call's request headers
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self, body: bytes, headers: dict[str, str] | None = None) -> Reply:
        with self._lock:
            self.calls.append(time.monotonic())
            self.bodies.append(body)
            self.headers.append(headers or {})
            return self.replies[min(len(self.calls), len(self.replies)) - 1]


@contextmanager
def scripted_server(*replies: Reply) -> Iterator[tuple[str, Script]]:
    """``(http://127.0.0.1:PORT, script)`` while the server runs."""
    script = Script(list(replies))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            reply = script.next(self.rfile.read(int(self.headers.get("Content-Length") or 0)), dict(self.headers))
            if reply.delay:
                time.sleep(reply.delay)
            body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
            try:
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:  # the client gave up (a deadline): nothing to answer
                pass

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", script
    finally:
        server.shutdown()
        server.server_close()
