"""A pod's logs on the app page, followed live, read as the user (RBAC `get pods/log`).

The apiserver streams the log from the node's kubelet (in the local cluster: KWOK's server);
each open page holds one followed request on a thread of its own, so a page left open never
takes a thread from the pool the other pages' apiserver calls run on.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from aiohttp_sse import sse_response

from ..k8s.client import ApiError, Kube
from .access import APPRELEASES, POD_LOGS
from .context import Console, console_of, identity_of, page_context
from .metrics import STREAMS_OPEN

TAIL_LINES = 500  # what a page shows first, as `kubectl logs --tail`
MAX_FOLLOWERS = 64  # logs followed at once by the whole console; more get 503
BATCH_SECONDS = 0.1  # lines arriving together are sent as one message
IDLE_CHECK_SECONDS = 15.0
MAX_LINE_CHARS = 16_384  # a runaway line is cut, not a page's memory


class Followers:
    """How many logs are followed at once (each holds a thread and an apiserver request)."""

    def __init__(self, limit: int = MAX_FOLLOWERS):
        self._slots = threading.BoundedSemaphore(limit)

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        if not self._slots.acquire(blocking=False):
            raise web.HTTPServiceUnavailable(text="too many logs are followed at once; try again shortly")
        try:
            yield
        finally:
            self._slots.release()


FOLLOWERS = Followers()


def _key(request: web.Request) -> tuple[str, str]:
    return request.match_info["namespace"], request.match_info["name"]


def _app_pod(console: Console, key: tuple[str, str], pod: str) -> dict[str, Any]:
    """The pod, if it is one of this app's (the page shows this app's pods only)."""
    for candidate in console.watches.pods.of_app(key):
        if (candidate.get("metadata") or {}).get("name") == pod:
            return candidate
    raise web.HTTPNotFound(text=f"pod {pod} is not one of {key[1]}'s pods")


async def _check(console: Console, request: web.Request, namespace: str) -> None:
    identity = identity_of(request)
    may_see, may_read_logs = await asyncio.gather(
        console.access.can(identity, "get", APPRELEASES, namespace),
        console.access.can(identity, "get", POD_LOGS, namespace))
    if not may_see:
        raise web.HTTPForbidden(text=f"you may not read AppReleases in namespace {namespace}")
    if not may_read_logs:
        raise web.HTTPForbidden(text=f"you may not read pod logs (pods/log) in namespace {namespace}")


async def logs_page(request: web.Request) -> web.Response:
    console = console_of(request)
    namespace, name = _key(request)
    await _check(console, request, namespace)
    await console.details_ready()
    pods = sorted((p.get("metadata") or {}).get("name", "") for p in console.watches.pods.of_app((namespace, name)))
    pod = request.query.get("pod") or (pods[0] if pods else "")
    if pod:
        _app_pod(console, (namespace, name), pod)
    html = console.render("logs.html", **await page_context(request), namespace=namespace, name=name,
                          pods=pods, pod=pod, tail=TAIL_LINES)
    return web.Response(text=html, content_type="text/html")


class Follow:
    """One followed log, read on a thread of its own into an asyncio queue (None at its end).
    ``stop`` ends it from the event loop: it closes the response, or, when the request is still
    being opened, makes the thread close it as soon as it is."""

    def __init__(self, kube: Kube, namespace: str, pod: str, loop: asyncio.AbstractEventLoop):
        self.lines: asyncio.Queue[str | BaseException | None] = asyncio.Queue()
        self._kube, self._namespace, self._pod, self._loop = kube, namespace, pod, loop
        self._lock = threading.Lock()
        self._response: Any = None
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=f"logs {namespace}/{pod}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            response = self._response
        if response is not None:
            with contextlib.suppress(Exception):
                response.close()

    def _put(self, item: str | BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is reading
            self._loop.call_soon_threadsafe(self.lines.put_nowait, item)

    def _run(self) -> None:
        try:
            response = self._kube.open_stream(
                f"/api/v1/namespaces/{self._namespace}/pods/{self._pod}/log",
                query={"follow": "true", "tailLines": TAIL_LINES}, resource="pods/log",
                read_timeout=None, accept="text/plain, */*")
            with self._lock:
                self._response = response
                stopped = self._stopped
            if stopped:
                response.close()
                return
            for chunk in response.stream(decode_content=True):  # each chunk as it arrives
                self._put(chunk.decode("utf-8", "replace"))
        except BaseException as exc:  # handed to the page, which says what went wrong
            if not self._stopped:
                self._put(exc)
        finally:
            self._put(None)


def _split(pending: str, chunk: str) -> tuple[list[str], str]:
    text = pending + chunk
    *complete, rest = text.split("\n")
    return [line[:MAX_LINE_CHARS] for line in complete], rest[: MAX_LINE_CHARS * 4]


async def logs_stream(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    namespace, name = _key(request)
    await _check(console, request, namespace)
    await console.details_ready()
    pod = request.query.get("pod", "")
    _app_pod(console, (namespace, name), pod)
    follow = Follow(console.client(identity_of(request)).kube, namespace, pod, asyncio.get_running_loop())
    with FOLLOWERS.slot():
        follow.start()
        STREAMS_OPEN.labels("logs").inc()
        try:
            async with sse_response(request) as response:
                pending = ""
                while response.is_connected():
                    try:  # wake now and then: a page gone while the log is quiet ends here
                        async with asyncio.timeout(IDLE_CHECK_SECONDS):
                            first = await follow.lines.get()
                    except TimeoutError:
                        continue
                    batch: list[str | BaseException | None] = [first]
                    await asyncio.sleep(BATCH_SECONDS)  # let the lines arriving together join
                    while not follow.lines.empty():
                        batch.append(follow.lines.get_nowait())
                    complete: list[str] = []
                    end: str | None = None
                    for part in batch:
                        if isinstance(part, str):
                            found, pending = _split(pending, part)
                            complete += found
                        elif isinstance(part, ApiError):
                            end = f"the apiserver refused the log: {part.message}"
                        elif isinstance(part, BaseException):
                            end = f"the log stream broke: {type(part).__name__}"
                        elif end is None:
                            end = "the log ended (the container stopped or the pod is gone)"
                    if complete:
                        await response.send(console.render("_log_lines.html", lines=complete), event="lines")
                    if end is not None:
                        await response.send(console.render("_log_end.html", text=end), event="end")
                        break
            return response
        except ConnectionResetError:
            raise web.HTTPNoContent() from None
        finally:
            STREAMS_OPEN.labels("logs").dec()
            follow.stop()


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/apps/{namespace}/{name}/logs", logs_page)
    router.add_get("/events/apps/{namespace}/{name}/logs", logs_stream)
