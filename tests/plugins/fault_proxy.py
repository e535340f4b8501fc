"""An HTTP proxy in front of a real Nacos server that misbehaves on command, for
fault-injection tests: the operator talks to Nacos through it, the apps talk to Nacos directly.

Modes: "pass" (a plain reverse proxy), "down" (nothing listens: connections are refused),
"refuse-writes" (403 for every write but the login), "drip" (a 200 whose body arrives a
byte every two seconds), "drip-headers" (the status line and headers themselves a byte every
two seconds: each read returns well within a per-read timeout), "html" (a 200 login page
instead of JSON).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import aiohttp
from aiohttp import web

Mode = Literal["pass", "down", "refuse-writes", "drip", "drip-headers", "html"]
DRIPPED_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: " + b"x" * 300 + b"\r\n\r\n"
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
               "proxy-authorization", "proxy-authenticate", "host", "content-length"}


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        """``upstream``: the Nacos base URL without the context path (http://host:port)."""
        self.upstream = upstream.rstrip("/")
        self.mode: Mode = "pass"
        self.port = 0
        self.requests = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        self._call(self._start())

    def stop(self) -> None:
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def set_mode(self, mode: Mode) -> None:
        """Switch behaviour; "down" closes the listening socket, leaving it reopens it."""
        if mode == "down" and self.mode != "down":
            self._call(self._close_site())
        elif mode != "down" and self.mode == "down":
            self._call(self._open_site())
        self.mode = mode

    def _call(self, coroutine: object) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)  # type: ignore[arg-type]

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await self._open_site()

    async def _open_site(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()
        if not self.port:
            server = self._site._server  # the first start picks a free port; later ones reuse it
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _close_site(self) -> None:
        if self._site is not None:
            await self._site.stop()
            self._site = None

    async def _stop(self) -> None:
        await self._close_site()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        mode = self.mode
        if mode == "down":
            # The listening socket is closed, but a client's keep-alive connection would still
            # be served: a server that went down drops those too.
            if request.transport is not None:
                request.transport.abort()
            raise web.HTTPServiceUnavailable()
        if mode == "html":
            return web.Response(text="<html><body>Sign in to continue</body></html>", content_type="text/html")
        if mode == "drip":
            response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
            await response.prepare(request)
            for _ in range(300):
                await response.write(b" ")
                await asyncio.sleep(2)
            return response
        if mode == "drip-headers":
            transport = request.transport
            for byte in DRIPPED_HEAD:
                if transport is None or transport.is_closing():
                    break  # the client gave up
                transport.write(bytes([byte]))
                await asyncio.sleep(2)
            if transport is not None:
                transport.abort()
            raise web.HTTPServiceUnavailable()  # never sent: the connection is gone
        if mode == "refuse-writes" and request.method != "GET" and not request.path.endswith("/login"):
            return web.json_response({"code": 403, "message": "no write permission"}, status=403)
        return await self._forward(request)

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        body = await request.read()
        async with self._session.request(
            request.method, self.upstream + request.path_qs, headers=headers, data=body or None,
        ) as upstream:
            data = await upstream.read()
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP | {"content-encoding"}}
            return web.Response(status=upstream.status, body=data, headers=out)


@contextmanager
def fault_proxy(upstream: str) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
