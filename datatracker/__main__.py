"""`python -m datatracker migrate`: bring DATABASE_URL's schema to this version (safe to repeat).

`initdb` is another name for `migrate`. Run it as the role that owns the database.
"""

import argparse
import sys

import psycopg

from datatracker.database import redact_dsn
from datatracker.schema import migrate
from datatracker.settings import load_settings


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m datatracker", description=__doc__)
    parser.add_argument("command", choices=["migrate", "initdb"])
    parser.parse_args(argv)
    settings = load_settings()
    try:
        applied = migrate(settings.database_url, settings)
    except psycopg.Error as error:
        print(f"migrate failed: {redact_dsn(str(error).strip())}", file=sys.stderr)
        return 1
    done = ", ".join(applied) if applied else "none, the schema was up to date"
    print(f"migrations applied: {done}; storage settings applied", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
