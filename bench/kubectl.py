"""kubectl, the baseline client and our way to create things in bulk."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_TIMEOUT_SECONDS = 120.0


class KubectlError(RuntimeError):
    pass


@dataclass(frozen=True)
class Kubectl:
    binary: Path
    kubeconfig: Path

    def run(
        self, *args: str, input: str | None = None, timeout: float = DEFAULT_TIMEOUT_SECONDS
    ) -> str:
        command = [str(self.binary), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(
            command, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            raise KubectlError(
                f"kubectl {' '.join(args)} exited with {result.returncode}: "
                f"{(result.stderr or result.stdout)[-2000:]}"
            )
        return result.stdout

    def apply_server_side(
        self, manifest: Path, *, timeout: float = DEFAULT_TIMEOUT_SECONDS
    ) -> None:
        self.run("apply", "--server-side", "-f", str(manifest), timeout=timeout)

    def apply_documents(self, documents: list[dict[str, Any]]) -> None:
        self.run(
            "apply", "--server-side", "--force-conflicts", "-f", "-",
            input=json.dumps(as_list(documents)),
        )


def as_list(documents: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "List", "items": documents}


def write_manifest(path: Path, documents: list[dict[str, Any]]) -> Path:
    """JSON, not YAML: PyYAML leaves strings such as the hash 21978643e1 unquoted, and
    kubectl (YAML 1.2) reads them back as numbers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(as_list(documents)))
    return path
