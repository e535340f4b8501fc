"""The Nacos client against hostile servers: every failure is classified, none takes longer
than its deadline, a comma-separated serverAddr fails over, and no server page reaches a
message. The servers are real HTTP servers on loopback that misbehave on purpose."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from apprelease.registry.base import (
    RegistryBadResponse,
    RegistryMisconfigured,
    RegistryRefused,
    RegistryUnavailable,
)
from apprelease.registry.nacos import NacosRegistry, NacosSettings

ROW = {"ip": "10.0.0.1", "port": 8080, "healthy": True, "enabled": True, "weight": 1.0,
       "ephemeral": True, "clusterName": "DEFAULT", "metadata": {}}

Behaviour = Callable[[BaseHTTPRequestHandler, str, dict[str, list[str]]], None]


def _json(handler: BaseHTTPRequestHandler, status: int, body: Any) -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def nacos_like(rows: list[Any], *, on_write: Behaviour | None = None) -> Behaviour:
    """Enough of Nacos 2.x's v1 API for the client: state, catalog, instance updates."""

    def behave(handler: BaseHTTPRequestHandler, path: str, query: dict[str, list[str]]) -> None:
        if path.endswith("/v1/console/server/state"):
            _json(handler, 200, {"version": "2.3.2"})
        elif path.endswith("/v1/ns/catalog/instances"):
            _json(handler, 200, {"count": len(rows), "list": rows})
        elif path.endswith("/v1/ns/instance") and handler.command == "PUT":
            if on_write is not None:
                on_write(handler, path, query)
            else:
                handler.send_response(200)
                handler.end_headers()
                handler.wfile.write(b"ok")
        else:
            _json(handler, 404, {"message": "no such path"})

    return behave


@contextmanager
def server(behave: Behaviour) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            # The client giving up on us (a broken pipe) is the point of some tests.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                behave(self, parts.path, parse_qs(parts.query))

        do_GET = do_PUT = do_POST = do_DELETE = _any

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def client(address: str, **overrides: Any) -> NacosRegistry:
    values: dict[str, Any] = {"server_addr": address, "service_name": "shop",
                              "timeout_seconds": 1.5, "call_deadline_seconds": 4.0}
    values.update(overrides)
    return NacosRegistry(NacosSettings(**values))


def unused_address() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


DRIPPED_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: " + b"x" * 400 + b"\r\n\r\n"


@pytest.mark.parametrize("headers_too", [False, True], ids=["body", "headers"])
def test_a_server_that_drips_is_cut_off_at_the_call_deadline(headers_too: bool) -> None:
    """httpx's timeouts are per read: a byte every 0.3 s never trips a 1.5 s read timeout.
    The body was cut off by a check between chunks; headers dripped (the status line and
    headers a byte at a time) held the lane for minutes, and the planner kept the last read
    as current: only a deadline around the whole exchange ends both."""

    def drip(handler: BaseHTTPRequestHandler, path: str, query: dict[str, list[str]]) -> None:
        if headers_too:
            chunks = [bytes([byte]) for byte in DRIPPED_HEAD]
        else:
            handler.wfile.write(DRIPPED_HEAD)
            chunks = [b" "] * 400
        for chunk in chunks:
            handler.wfile.write(chunk)
            handler.wfile.flush()
            time.sleep(0.3)

    with server(drip) as address, client(address) as nacos:
        started = time.monotonic()
        with pytest.raises(RegistryUnavailable, match="no complete answer"):
            nacos.list_instances()
        assert time.monotonic() - started < 4.0 + 1.0


def test_html_from_a_proxy_or_login_page_is_a_bad_response_and_its_body_stays_out() -> None:
    def html(handler: BaseHTTPRequestHandler, path: str, query: dict[str, list[str]]) -> None:
        page = b"<html><body>Please log in. secret-internal-hostname</body></html>"
        handler.send_response(200)
        handler.send_header("Content-Type", "text/html")
        handler.send_header("Content-Length", str(len(page)))
        handler.end_headers()
        handler.wfile.write(page)

    with server(html) as address, client(address) as nacos, pytest.raises(RegistryBadResponse) as caught:
        nacos.list_instances()
    assert "secret-internal-hostname" not in str(caught.value)
    assert caught.value.reason == "RegistryBadResponse"


@pytest.mark.parametrize("row", [{**ROW, "port": None}, {"ip": "10.0.0.1"}, "not-a-row", {**ROW, "port": "x"}])
def test_a_row_without_a_valid_ip_or_port_is_a_bad_response(row: Any) -> None:
    with server(nacos_like([row])) as address, client(address) as nacos, pytest.raises(
        RegistryBadResponse, match="instance row"
    ):
        nacos.list_instances()


def test_readable_but_refusing_writes_is_refused() -> None:
    def forbid(handler: BaseHTTPRequestHandler, path: str, query: dict[str, list[str]]) -> None:
        _json(handler, 403, {"message": "user nacos has no permission, token=abc"})

    with server(nacos_like([ROW], on_write=forbid)) as address, client(address) as nacos:
        assert [i.ip for i in nacos.list_instances()] == ["10.0.0.1"]
        with pytest.raises(RegistryRefused) as caught:
            nacos.set_enabled("10.0.0.1", 8080, False)
    assert caught.value.reason == "RegistryRefused" and "HTTP 403" in str(caught.value)


def test_comma_separated_servers_fail_over_and_stick_to_the_one_that_answers() -> None:
    with server(nacos_like([ROW])) as address:
        dead = unused_address()
        with client(f"{dead},{address}") as nacos:
            assert [i.ip for i in nacos.list_instances()] == ["10.0.0.1"]
            started = time.monotonic()
            nacos.list_instances()  # goes straight to the server that answered
            assert time.monotonic() - started < 0.5


def test_every_server_down_names_them_all_within_the_deadline() -> None:
    first, second = unused_address(), unused_address()
    with client(f"{first},{second}") as nacos:
        started = time.monotonic()
        with pytest.raises(RegistryUnavailable) as caught:
            nacos.list_instances()
    assert time.monotonic() - started < 4.0 + 1.0
    assert first in str(caught.value) and second in str(caught.value)


@pytest.mark.parametrize("address", ["not a host", "nacos:99999", "ftp://nacos:8848", "nacos:8848,,:", "http://[::1"])
def test_an_unusable_server_address_is_misconfigured_before_any_connection(address: str) -> None:
    with pytest.raises(RegistryMisconfigured):
        client(address)


def test_credentials_in_the_address_never_reach_messages() -> None:
    with client("http://admin:hunter2@127.0.0.1:1") as nacos:
        with pytest.raises(RegistryUnavailable) as caught:
            nacos.list_instances()
        assert "hunter2" not in str(caught.value) and "hunter2" not in repr(nacos)


def test_a_ca_that_is_not_pem_is_misconfigured(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_bytes(b"\xff\xfe not a certificate")
    with pytest.raises(RegistryMisconfigured, match="PEM"):
        client("nacos:8848", tls=True, tls_ca_file=str(ca))


def test_a_refused_login_is_refused_not_unreachable() -> None:
    def behave(handler: BaseHTTPRequestHandler, path: str, query: dict[str, list[str]]) -> None:
        if path.endswith("/v1/auth/login"):
            _json(handler, 403, {"message": "unknown user!"})
        else:
            nacos_like([ROW])(handler, path, query)

    with server(behave) as address, client(address, username="u", password="p4ss") as nacos, pytest.raises(
        RegistryRefused, match="check the username and password"
    ) as caught:
        nacos.list_instances()
    assert "p4ss" not in str(caught.value)


def test_a_cluster_whose_last_instance_left_lists_as_empty_and_can_be_written_ahead() -> None:
    """Nacos 2.3.2 still names the cluster in the service for a moment after its last
    instance left, and the catalog then answers 500 with a plain-text "cluster DEFAULT is not
    found!": no instances, not an outage (a recreate's new pods must still join disabled)."""
    writes: list[dict[str, list[str]]] = []

    def emptied(handler: BaseHTTPRequestHandler, path: str, query: dict[str, list[str]]) -> None:
        if path.endswith("/v1/console/server/state"):
            _json(handler, 200, {"version": "2.3.2"})
        elif path.endswith("/v1/ns/service"):
            _json(handler, 200, {"name": "shop", "clusters": [{"name": "DEFAULT"}]})
        elif path.endswith("/v1/ns/catalog/instances"):
            text = b"caused: cluster DEFAULT is not found!;"
            handler.send_response(500)
            handler.send_header("Content-Type", "text/html;charset=UTF-8")
            handler.send_header("Content-Length", str(len(text)))
            handler.end_headers()
            handler.wfile.write(text)
        elif path.endswith("/v1/ns/instance") and handler.command == "PUT":
            writes.append(query)
            handler.send_response(200)
            handler.end_headers()
            handler.wfile.write(b"ok")

    with server(emptied) as address, client(address) as nacos:
        assert nacos.list_instances() == []
        nacos.update_instance("10.0.0.9", 8080, enabled=False, weight=1.0, metadata={}, must_exist=False)
    assert [(w["ip"], w["enabled"]) for w in writes] == [(["10.0.0.9"], ["false"])]


def test_nacos_3_says_an_unknown_service_is_not_found_in_data_not_in_message() -> None:
    """Nacos 3.1 answers the v3 instance list of an unknown service with HTTP 404 and JSON
    whose `message` is only "server error"; "service not found" is in `data`."""

    def unknown(handler: BaseHTTPRequestHandler, path: str, query: dict[str, list[str]]) -> None:
        if path.endswith("/v1/console/server/state"):
            _json(handler, 200, {"version": "3.1.0-bugfix"})
        elif path.endswith("/v3/admin/ns/instance/list"):
            _json(handler, 404, {"message": "server error",
                                 "data": "service not found, namespace: public, serviceName: DEFAULT_GROUP@@shop"})
        else:
            _json(handler, 500, {"code": 30000, "message": "server error", "data": "unexpected"})

    with server(unknown) as address, client(address) as nacos:
        assert nacos.list_instances() == []


def test_a_404_that_is_not_about_the_service_is_an_outage() -> None:
    def elsewhere(handler: BaseHTTPRequestHandler, path: str, query: dict[str, list[str]]) -> None:
        if path.endswith("/v1/console/server/state"):
            _json(handler, 200, {"version": "3.1.0"})
        else:
            _json(handler, 404, {"code": 404, "message": "server error", "data": "no handler for this path"})

    with server(elsewhere) as address, client(address) as nacos, pytest.raises(RegistryUnavailable, match="HTTP 404"):
        nacos.list_instances()


def _text(handler: BaseHTTPRequestHandler, status: int, text: str) -> None:
    data = text.encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "text/plain;charset=UTF-8")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def service_to_be(write_answer: str, *, create_status: int = 200) -> tuple[Behaviour, list[tuple[str, str]]]:
    """Nacos 2.3.2 before a service exists: the instance write answers HTTP 500 with
    `write_answer` until the service is created (v2 API); every request is recorded."""
    calls: list[tuple[str, str]] = []
    created: list[dict[str, list[str]]] = []

    def behave(handler: BaseHTTPRequestHandler, path: str, query: dict[str, list[str]]) -> None:
        calls.append((handler.command, path.removeprefix("/nacos")))
        if path.endswith("/v1/console/server/state"):
            _json(handler, 200, {"version": "2.3.2"})
        elif path.endswith("/v1/ns/catalog/instances"):
            _text(handler, 500, "caused: service not found, namespace: public, service: shop;")
        elif path.endswith("/v2/ns/service") and handler.command == "POST":
            assert query["ephemeral"] == ["true"] and query["serviceName"] == ["shop"]
            created.append(query)
            if create_status == 200:
                _json(handler, 200, {"code": 0, "message": "success", "data": "ok"})
            else:
                _json(handler, create_status, {"code": 21007, "message": "service already exist",
                                               "data": "specified service DEFAULT_GROUP@@shop already exists!"})
        elif path.endswith("/v1/ns/instance") and handler.command == "PUT":
            if created:  # by us, or by someone else a moment before (create_status 400)
                _text(handler, 200, "ok")
            else:
                _text(handler, 500, write_answer)
        else:
            _json(handler, 404, {"message": "no such path"})

    return behave, calls


NOT_FOUND_2_3_2 = ("caused: service not found, namespace: public, service: Service{namespace=&#39;public&#39;, "
                   "group=&#39;DEFAULT_GROUP&#39;, name=&#39;shop&#39;, ephemeral=true, revision=0};")


def test_a_write_ahead_for_a_service_nacos_does_not_know_creates_it_ephemeral_then_writes_again() -> None:
    behave, calls = service_to_be(NOT_FOUND_2_3_2)
    with server(behave) as address, client(address) as nacos:
        nacos.update_instance("10.0.0.9", 8080, enabled=False, weight=1.0, metadata={}, must_exist=False)
    writes = [c for c in calls if c[0] in ("PUT", "POST")]
    assert writes == [("PUT", "/v1/ns/instance"), ("POST", "/v2/ns/service"), ("PUT", "/v1/ns/instance")]


def test_a_service_created_meanwhile_by_someone_else_is_as_good() -> None:
    behave, calls = service_to_be(NOT_FOUND_2_3_2, create_status=400)
    with server(behave) as address, client(address) as nacos:
        nacos.update_instance("10.0.0.9", 8080, enabled=False, weight=1.0, metadata={}, must_exist=False)
    writes = [c for c in calls if c[0] in ("PUT", "POST")]
    assert writes == [("PUT", "/v1/ns/instance"), ("POST", "/v2/ns/service"), ("PUT", "/v1/ns/instance")]


def test_another_500_on_a_write_ahead_stays_an_outage_and_creates_nothing() -> None:
    behave, calls = service_to_be("caused: java.lang.NullPointerException;")
    with server(behave) as address, client(address) as nacos, pytest.raises(RegistryUnavailable, match="HTTP 500"):
        nacos.update_instance("10.0.0.9", 8080, enabled=False, weight=1.0, metadata={}, must_exist=False)
    assert ("POST", "/v2/ns/service") not in calls


def test_a_call_on_a_closed_client_is_an_outage_not_a_crash() -> None:
    """The registry lane may still be reading with a client that was just replaced and
    closed (an edit of serverAddr): httpx raises RuntimeError, which reached the lane's
    'unexpected error' traceback."""
    with server(nacos_like([ROW])) as address, client(address) as nacos:
        nacos.list_instances()
        nacos.close()
        with pytest.raises(RegistryUnavailable, match="client closed"):
            nacos.list_instances()


@pytest.mark.parametrize("weight", ["NaN", "Infinity", "-Infinity", "1e999", float("nan")])
def test_a_weight_that_is_not_a_number_is_a_bad_response_never_a_status_value(weight: Any) -> None:
    """Python's json reads NaN and Infinity; the status write carrying them was rejected by the
    apiserver and reported as a spec error."""
    row = {**ROW, "weight": weight}

    def behave(handler: BaseHTTPRequestHandler, path: str, query: dict[str, list[str]]) -> None:
        if path.endswith("/v1/ns/catalog/instances"):
            data = json.dumps({"count": 1, "list": [row]}).encode()  # NaN/Infinity as JSON literals
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        else:
            nacos_like([])(handler, path, query)

    with server(behave) as address, client(address) as nacos, pytest.raises(RegistryBadResponse, match="weight"):
        nacos.list_instances()
