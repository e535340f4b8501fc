"""The local Nacos of `apprelease dev up --nacos` keeps working across restarts of its workdir.

Nacos keeps instance overrides (enabled/weight) in a JRaft group whose only peer is
127.0.0.1:<main port - 1000>. Restarted on another port with the old Raft data, the group
never elects a leader and every enable/disable answers HTTP 500 "The Raft Group
[naming_instance_metadata] did not find the Leader node" (what a new user met after
`dev down` + `dev up --nacos`). start_nacos now restarts a workdir on its port, or resets the
Raft data when it has to move.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from apprelease_dev.nacos import NacosServer, ensure_nacos, start_nacos
from tests.plugins.nacos import AppInstanceSimulator, NacosEndpoint, wait_until

pytestmark = pytest.mark.nacos

IP, PORT = "10.77.0.1", 8080


def _endpoint(server: NacosServer) -> NacosEndpoint:
    return NacosEndpoint(server.base_url, server.username, server.password, server.major, server.version)


def _disable_and_enable(endpoint: NacosEndpoint, start_app: Callable[..., AppInstanceSimulator]) -> None:
    """Register over gRPC, then take the instance out of traffic and back (JRaft writes)."""
    app = start_app(endpoint, service_name="restarts", ip=IP, port=PORT)
    with endpoint.registry("restarts") as registry:
        wait_until(lambda: registry.list_instances(), message="the instance registered")
        registry.set_enabled(IP, PORT, False)
        wait_until(
            lambda: [i for i in registry.list_instances() if not i.enabled],
            message="the instance disabled",
        )
        registry.set_enabled(IP, PORT, True)
    app.stop()


def test_a_restarted_workdir_keeps_a_raft_leader_on_its_port_or_on_a_new_one(
    tmp_path: Path, app_instances: Callable[..., AppInstanceSimulator]
) -> None:
    distribution = ensure_nacos(os.environ.get("APPRELEASE_TEST_NACOS_VERSION", "2"))
    workdir = tmp_path / "nacos"

    def quiet(line: str) -> None:
        pass

    with start_nacos(distribution, workdir, progress=quiet) as first:
        _disable_and_enable(_endpoint(first), app_instances)
        first_port = first.port

    with start_nacos(distribution, workdir, progress=quiet) as again:
        assert again.port == first_port, "a restart should keep the port its Raft data needs"
        _disable_and_enable(_endpoint(again), app_instances)

    # The port is taken meanwhile: the server moves, and its Raft data cannot follow.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
        squatter.bind(("0.0.0.0", first_port))
        squatter.listen()
        moves: list[str] = []
        with start_nacos(distribution, workdir, progress=moves.append) as moved:
            assert moved.port != first_port
            assert any("resetting its Raft data" in line for line in moves), moves
            _disable_and_enable(_endpoint(moved), app_instances)
