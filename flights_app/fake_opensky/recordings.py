"""Loading recorded ``/states/all`` responses: one file (JSON, gzipped or not),
a directory of them, or a zip of them (as in ``../shared/data``)."""

from __future__ import annotations

import gzip
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path


class RecordingError(ValueError):
    """The path holds no usable recording; the message says why."""


@dataclass(frozen=True)
class RecordedPoll:
    name: str
    time: int
    states: list | None


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _decode(name: str, data: bytes) -> RecordedPoll:
    if name.endswith(".gz"):
        data = gzip.decompress(data)
    try:
        document = json.loads(data)
    except ValueError as error:
        raise RecordingError(f"{name}: not JSON ({error})") from None
    if not isinstance(document, dict) or not isinstance(document.get("time"), int):
        raise RecordingError(f"{name}: not a /states/all response (no integer 'time')")
    states = document.get("states")
    if states is not None and not isinstance(states, list):
        raise RecordingError(f"{name}: 'states' is not a list")
    return RecordedPoll(name, document["time"], states)


def _is_response_file(name: str) -> bool:
    return name.endswith((".json", ".json.gz")) and not Path(name).name.startswith(".")


def load_recording(path: str | Path) -> list[RecordedPoll]:
    """Every poll in ``path``, in file-name order (data-2 before data-10)."""
    path = Path(path)
    if not path.exists():
        raise RecordingError(f"{path}: no such file or directory")
    if path.is_dir():
        files = sorted((p for p in path.rglob("*") if p.is_file() and _is_response_file(p.name)),
                       key=lambda p: _natural_key(str(p.relative_to(path))))
        polls = [_decode(str(p), p.read_bytes()) for p in files]
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = sorted((n for n in archive.namelist() if _is_response_file(n)), key=_natural_key)
            polls = [_decode(n, archive.read(n)) for n in names]
    else:
        polls = [_decode(path.name, path.read_bytes())]
    if not polls:
        raise RecordingError(f"{path}: holds no .json or .json.gz responses")
    return polls
