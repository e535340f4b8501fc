"""The state file of a local cluster: what runs where, so `down`/`status` work from any process."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from apprelease_dev.processes import ProcessIdentity

STATE_FILE = "state.json"
STATE_VERSION = 1


@dataclass
class ComponentState:
    name: str
    pid: int
    start_ticks: int
    # The port the component serves on (health checks); None for a component without one.
    port: int | None
    log: str
    command: list[str]

    @property
    def identity(self) -> ProcessIdentity:
        return ProcessIdentity(self.pid, self.start_ticks)


@dataclass
class ClusterState:
    state_dir: str
    kubeconfig: str
    apiserver_url: str
    bin_dir: str
    node_names: list[str]
    started_at: float
    # In start order; stopped in reverse. Besides the control plane, processes started for
    # the cluster by `dev up`/`dev run` (the operator, Nacos), so `down` stops them too.
    components: dict[str, ComponentState] = field(default_factory=dict)
    # CRDs the add-ons installed: the cluster is healthy once they are Established.
    addon_crds: list[str] = field(default_factory=list)
    version: int = STATE_VERSION

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClusterState:
        components = {
            name: ComponentState(**component) for name, component in data["components"].items()
        }
        return cls(**{**data, "components": components})


def state_path(state_dir: Path) -> Path:
    return state_dir / STATE_FILE


def save_state(state: ClusterState) -> None:
    """Write atomically: a concurrent `status` reads the old or the new file, never half."""
    path = state_path(Path(state.state_dir))
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(state.to_json(), indent=2) + "\n")
    os.replace(temporary, path)


def load_state(state_dir: Path) -> ClusterState | None:
    path = state_path(state_dir)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    if data.get("version") != STATE_VERSION:
        raise ValueError(
            f"{path} has state version {data.get('version')}, expected {STATE_VERSION}"
        )
    return ClusterState.from_json(data)


def remove_state(state_dir: Path) -> None:
    state_path(state_dir).unlink(missing_ok=True)
