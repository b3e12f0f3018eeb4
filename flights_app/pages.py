"""Generated blocks in the documentation: a page's text between two marker comments, replaced."""

from __future__ import annotations

from pathlib import Path


def replace_between(path: Path, start: str, end: str, body: str) -> None:
    """Write ``body`` between the ``start`` and ``end`` markers of the page at ``path``."""
    path = Path(path)
    page = path.read_text()
    if start not in page or end not in page:
        raise ValueError(f"{path} has no {start} ... {end} block")
    head, rest = page.split(start, 1)
    tail = rest.split(end, 1)[1]
    path.write_text(f"{head}{start}\n{body.rstrip(chr(10))}\n{end}{tail}")
