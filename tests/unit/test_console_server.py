"""The console's server as an attacker meets it: real HTTP requests to `apprelease console`
running on loopback (its middleware, sessions, CSRF, handlers and client), in front of a
scripted apiserver (tests/unit/fake_apiserver.py).

DNS rebinding: a page on any website can point its own name at 127.0.0.1 and then talk to
the console with ``Host: its-name:7070`` and a matching ``Origin``, as the kubeconfig's
user. Locally the console answers only to loopback names (as `kubectl proxy` does), before
any page, session or token; ``X-Forwarded-Host`` counts only behind a proxy.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from apprelease.console import csrf
from apprelease.console.context import Settings
from apprelease.console.server import serve
from tests.unit.fake_apiserver import FakeApiserver, Served, serving

APPS = "/apis/apprelease.io/v1alpha1/appreleases"
SHOP = {"apiVersion": "apprelease.io/v1alpha1", "kind": "AppRelease",
        "metadata": {"name": "shop", "namespace": "shop", "resourceVersion": "7", "generation": 1,
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"image": "registry.local/shop:v1", "replicas": 1},
        "status": {"phase": "Healthy", "observedGeneration": 1}}
EVIL = "evil.example"


@dataclass
class RunningConsole:
    served: Served
    port: int

    @property
    def apiserver(self) -> FakeApiserver:
        return self.served.apiserver

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str, **headers: str) -> httpx.Response:
        return httpx.get(self.url(path), headers=headers, timeout=10)

    def post(self, path: str, *, cookies: dict[str, str] | None = None, **headers: str) -> httpx.Response:
        with httpx.Client(cookies=cookies, timeout=10) as client:
            return client.post(self.url(path), headers=headers)

    def session(self, host: str) -> tuple[dict[str, str], str]:
        """What a page served to ``host`` hands out: its session cookie and CSRF token."""
        page = self.get("/", Host=host)
        assert page.status_code == 200, page.text
        token = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page.text)
        assert token is not None and csrf.SESSION_COOKIE in page.cookies
        return {csrf.SESSION_COOKIE: page.cookies[csrf.SESSION_COOKIE]}, token.group(1)

    def patches(self) -> list[str]:
        return [w.path for w in self.apiserver.writes if w.method == "PATCH"]


StartConsole = Callable[..., RunningConsole]


@pytest.fixture
def start_console(tmp_path: Path) -> Iterator[StartConsole]:
    apiserver = FakeApiserver(objects={APPS: [SHOP]})
    with serving(apiserver) as served:
        tasks: list[asyncio.Task[None]] = []

        def start(**settings: Any) -> RunningConsole:
            ready: asyncio.Future[str] = served.loop.create_future()

            async def begin() -> None:
                config = Settings(port=0, kubeconfig=str(served.kubeconfig(tmp_path)), **settings)
                tasks.append(asyncio.create_task(serve(config, ready.set_result)))

            served.run(begin())
            url = served.run(asyncio.wait_for(asyncio.shield(ready), 30))
            port = int(url.rstrip("/").rsplit(":", 1)[1])
            console = RunningConsole(served, port)
            return console

        yield start

        async def end() -> None:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        served.run(end())


@pytest.fixture
def local(start_console: StartConsole) -> RunningConsole:
    return start_console()


def test_loopback_names_are_served(local: RunningConsole) -> None:
    for host in (f"127.0.0.1:{local.port}", f"localhost:{local.port}", f"[::1]:{local.port}"):
        page = local.get("/", Host=host)
        assert page.status_code == 200, (host, page.text)
        assert csrf.SESSION_COOKIE in page.cookies
    assert local.get("/apps/shop/shop", Host=f"localhost:{local.port}").status_code == 200


@pytest.mark.parametrize("path", ["/", "/apps/shop/shop", "/apps/shop/shop/edit", "/new", "/events/overview",
                                  "/events/apps/shop/shop", "/metrics", "/healthz"])
def test_a_rebound_name_gets_no_page_no_session_and_no_token(local: RunningConsole, path: str) -> None:
    for host in (f"{EVIL}:{local.port}", EVIL, f"{EVIL}.127.0.0.1.nip.io:{local.port}"):
        answer = local.get(path, Host=host, Origin=f"http://{host}")
        assert answer.status_code == 403, (host, answer.status_code, answer.text[:200])
        assert "set-cookie" not in answer.headers
        assert "csrf-token" not in answer.text and "shop" not in answer.text


def test_a_rebound_name_cannot_act_even_with_a_session_and_token(local: RunningConsole) -> None:
    cookies, token = local.session(f"127.0.0.1:{local.port}")
    # The worst case: the attacker somehow holds a valid session and token. Its requests still
    # come with its own name as Host (and Origin), which is what gives it away.
    evil = f"{EVIL}:{local.port}"
    refused = local.post("/apps/shop/shop/actions/promote", cookies=cookies, Host=evil,
                         Origin=f"http://{evil}", **{csrf.TOKEN_HEADER: token})
    assert refused.status_code == 403
    assert local.patches() == []
    # The same request from the console's own page is accepted (the control).
    accepted = local.post("/apps/shop/shop/actions/promote", cookies=cookies, Host=f"127.0.0.1:{local.port}",
                          Origin=f"http://127.0.0.1:{local.port}", **{csrf.TOKEN_HEADER: token})
    assert accepted.status_code == 200, accepted.text
    assert local.patches() == [f"{APPS.replace('/appreleases', '/namespaces/shop/appreleases')}/shop"]


def test_x_forwarded_host_is_not_trusted_locally(local: RunningConsole) -> None:
    cookies, token = local.session(f"127.0.0.1:{local.port}")
    evil = f"{EVIL}:{local.port}"
    spoofed = local.post("/apps/shop/shop/actions/promote", cookies=cookies, Host=f"127.0.0.1:{local.port}",
                         Origin=f"http://{evil}", **{"X-Forwarded-Host": evil, csrf.TOKEN_HEADER: token})
    assert spoofed.status_code == 403
    assert local.patches() == []
    # Nor does it make a rebound name acceptable.
    page = local.get("/", Host=evil, **{"X-Forwarded-Host": f"127.0.0.1:{local.port}"})
    assert page.status_code == 403 and "set-cookie" not in page.headers


def test_a_name_without_a_port_is_judged_by_the_name(local: RunningConsole) -> None:
    # As `kubectl proxy --accept-hosts` judges it: the name, whatever the port (an
    # `ssh -L 8080:localhost:7070` tunnel arrives as localhost:8080).
    assert local.get("/", Host="localhost").status_code == 200
    assert local.get("/", Host=f"localhost:{local.port + 1}").status_code == 200
    assert local.get("/", Host="").status_code == 403


def test_behind_a_proxy_the_forwarded_host_is_the_origin_to_match(start_console: StartConsole) -> None:
    proxied = start_console(auth="impersonation")
    user = {"X-Forwarded-User": "alice@example.com"}
    site = "console.company.example"
    page = proxied.get("/", Host="10.0.0.7:7070", **user, **{"X-Forwarded-Host": site})
    assert page.status_code == 200, page.text
    token = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page.text)
    assert token is not None
    cookies = {csrf.SESSION_COOKIE: page.cookies[csrf.SESSION_COOKIE]}
    accepted = proxied.post("/apps/shop/shop/actions/pause", cookies=cookies, Host="10.0.0.7:7070",
                            Origin=f"https://{site}", **user,
                            **{"X-Forwarded-Host": site, csrf.TOKEN_HEADER: token.group(1)})
    assert accepted.status_code == 200, accepted.text
    forged = proxied.post("/apps/shop/shop/actions/pause", cookies=cookies, Host="10.0.0.7:7070",
                          Origin=f"https://{EVIL}", **user,
                          **{"X-Forwarded-Host": site, csrf.TOKEN_HEADER: token.group(1)})
    assert forged.status_code == 403
    assert len(proxied.patches()) == 1
