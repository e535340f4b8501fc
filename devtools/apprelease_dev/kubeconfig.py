"""Self-contained kubeconfig files (certificates embedded, so a copied file keeps working)."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import yaml

from apprelease_dev.certs import ClusterPki

CLUSTER_NAME = "apprelease-dev"


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def kubeconfig_document(server: str, pki: ClusterPki, client: str) -> dict[str, Any]:
    """A kubeconfig for `client` (a name in certs.CLIENT_IDENTITIES) talking to `server`."""
    user = f"{CLUSTER_NAME}-{client}"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER_NAME,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": _b64(pki.ca_cert),
                },
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(pki.cert(client)),
                    "client-key-data": _b64(pki.key(client)),
                },
            }
        ],
        "contexts": [{"name": CLUSTER_NAME, "context": {"cluster": CLUSTER_NAME, "user": user}}],
        "current-context": CLUSTER_NAME,
        "preferences": {},
    }


def write_kubeconfig(path: Path, server: str, pki: ClusterPki, client: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # It embeds a private key: create it owner-only from the first byte.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump(kubeconfig_document(server, pki, client), handle, sort_keys=False)
    return path
