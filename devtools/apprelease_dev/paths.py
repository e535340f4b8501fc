"""Where the dev tooling keeps its files (overridable through the environment)."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_DIR_ENV = "APPRELEASE_CACHE_DIR"
DEV_DIR_ENV = "APPRELEASE_DEV_DIR"


def cache_root() -> Path:
    """Root of all cached artefacts: `$APPRELEASE_CACHE_DIR` or `~/.cache/apprelease`."""
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    return Path.home() / ".cache" / "apprelease"


def default_state_dir() -> Path:
    """State of the default dev cluster: `$APPRELEASE_DEV_DIR` or `<cache>/dev/default`."""
    configured = os.environ.get(DEV_DIR_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    return cache_root() / "dev" / "default"
