"""`python -m datatracker initdb`: apply db/init.sql to DATABASE_URL (safe to repeat)."""

import argparse
import sys

import psycopg

from datatracker.schema import SCHEMA_FILE, apply_schema, schema_settings
from datatracker.settings import load_settings


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m datatracker", description=__doc__)
    parser.add_argument("command", choices=["initdb"])
    parser.parse_args(argv)
    settings = load_settings()
    try:
        apply_schema(settings.database_url, schema_settings(settings))
    except psycopg.Error as error:
        print(f"initdb failed: {str(error).strip()}", file=sys.stderr)
        return 1
    print(f"schema applied from {SCHEMA_FILE.name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
