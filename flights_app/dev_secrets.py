"""A development set of the deployment's secrets: ``flights-app dev-secrets`` (``make secrets``).

    secrets/web-token              the worker web server's bearer token (FLIGHTS_WEB_TOKEN_FILE)
    secrets/dashboard-users.json   the dashboard's login, {"ops": "<password>"} (FLIGHTS_DASHBOARD_AUTH_FILE)

Each is random, readable by its owner only, and never printed. An existing file is kept (a rotation
removes it first, see docs/deploy.md), so running it again changes nothing. None is committed: the
directory is in .gitignore, and docker-compose.yml mounts the files as compose secrets.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path

#: The dashboard's user in the development set.
DASHBOARD_USER = "ops"

FILES: dict[str, Callable[[], str]] = {
    "web-token": lambda: secrets.token_urlsafe(32) + "\n",
    "dashboard-users.json": lambda: json.dumps({DASHBOARD_USER: secrets.token_urlsafe(18)}) + "\n",
}


def write(directory: Path) -> list[tuple[Path, bool]]:
    """Write every missing file of the set into ``directory``; (path, written now) for each."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for name, make in FILES.items():
        path = directory / name
        if path.exists():
            out.append((path, False))
            continue
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(make())
        out.append((path, True))
    return out
