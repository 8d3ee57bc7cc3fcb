"""Loads named SQL blocks (`-- name: <name>`) from a `.sql` file into a dict."""

import re
from pathlib import Path
from typing import LiteralString, cast

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def load_queries(path: Path) -> dict[str, LiteralString]:
    """Each block runs from its `-- name:` line to the next one; the file is trusted SQL."""
    parts = _NAME.split(path.read_text())
    named = zip(parts[1::2], parts[2::2], strict=True)
    return {name: cast(LiteralString, body.strip()) for name, body in named}
