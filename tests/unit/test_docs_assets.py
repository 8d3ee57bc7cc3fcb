"""Redoc's and Swagger UI's files under api/schema-assets are the releases its README names:
each file's SHA-256 matches the one recorded there, and no file is there unrecorded."""

import hashlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "api" / "schema-assets"


def recorded_checksums() -> dict[str, str]:
    """The `sha256  path` lines of api/schema-assets/README.md, by path."""
    lines = re.findall(r"^([0-9a-f]{64})  (\S+)$", (STATIC / "README.md").read_text(), re.M)
    return {path: digest for digest, path in lines}


def test_each_asset_is_the_release_its_readme_records() -> None:
    """Every file beside the README has the SHA-256 recorded for it, and each has a licence
    beside it."""
    files = sorted(path for path in STATIC.glob("*/*") if path.is_file())
    actual = {
        str(path.relative_to(STATIC)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in files
    }

    assert recorded_checksums() == actual
    assert {"redoc", "swagger-ui"} == {path.parent.name for path in files}
    assert all((path.parent / "LICENSE").is_file() for path in files)
