# Targets named in README.md. Python is the project's venv (.venv, made by the README's
# `python3 -m venv .venv`) when there is one, whether activated or not; else python3.
PYTHON ?= $(firstword $(wildcard .venv/bin/python) python3)

.PHONY: install db db-remove initdb local test lint format bench soak

install:  ## install datatracker with development tools, at the pinned versions
	$(PYTHON) -m pip install -c constraints.txt -e '.[dev]'

db:  ## start a local TimescaleDB (Debian/Ubuntu; installs what is missing) and print its URL
	scripts/local-db.sh start

db-remove:  ## drop the local clusters (databases and configuration); PostgreSQL and TimescaleDB stay installed
	LOCAL_DB_EDITION=apache scripts/local-db.sh remove
	LOCAL_DB_EDITION=timescale scripts/local-db.sh remove
	LOCAL_DB_EDITION=timescale-pg18 scripts/local-db.sh remove

initdb:  ## apply the schema's migrations to DATABASE_URL (as its owner)
	$(PYTHON) -m datatracker migrate

local:  ## no Docker: local TimescaleDB, schema and roles, 24 h of simulated history, collector + API
	PYTHON=$(PYTHON) scripts/run-local.sh

test:  ## the whole suite on each TimescaleDB edition this machine has (scripts/test.sh)
	PYTHON=$(PYTHON) scripts/test.sh

lint:  ## ruff and mypy, as CI runs them
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy

bench:  ## benchmarks against the local cluster (bench/README.md); results in bench/results/
	$(PYTHON) -m bench.generate --pairs 10000 --days 1 --original
	$(PYTHON) -m bench.write_path --output bench/results/write.json
	$(PYTHON) -m bench.read_path --label 1d --output bench/results/read-1d.json
	$(PYTHON) -m bench.footprint --original-url postgresql://datatracker:datatracker@127.0.0.1:5433/bench_tracker --output bench/results/footprint.json

soak:  ## 200 clients on /prices and /rankings for 60 s while the collector writes (bench/README.md)
	$(PYTHON) -m bench.soak --output bench/results/soak.json

format:
	$(PYTHON) -m ruff check --fix .
	$(PYTHON) -m ruff format .
