#!/usr/bin/env bash
# The whole test suite against a real TimescaleDB, once per edition this machine has
# (`make test` runs this; arguments go to pytest):
#   - TEST_DATABASE_URL set: one run, on that server (a role that may create databases);
#   - else the local clusters of scripts/local-db.sh, started if needed: the apache edition
#     always, and the timescale edition too when this machine's TimescaleDB build has the
#     Timescale-License features (timescaledb-tsl-*.so); and once more the timescale edition on
#     the PostgreSQL major docker-compose.yml's image runs (timescale-pgN), when that major is
#     installed with such a build and differs from the timescale cluster's. Each run's header
#     names its server, PostgreSQL and edition; the last lines give each run's counts, and a
#     total.
# Exits non-zero when any run fails.
set -uo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}

has_tsl() {  # has_tsl MAJOR: PostgreSQL MAJOR has a TimescaleDB build with the TSL features
  local pg_config=/usr/lib/postgresql/$1/bin/pg_config
  [ -x "$pg_config" ] && compgen -G "$("$pg_config" --pkglibdir)/timescaledb-tsl-*.so" >/dev/null
}
# The PostgreSQL major of the image docker-compose.yml ships (timescale/timescaledb:X-pgN).
compose_major=$(grep -oE 'timescale/timescaledb:[^ ]+-pg[0-9]+' docker-compose.yml | grep -oE '[0-9]+$')

runs=()  # "name|admin URL"
if [ -n "${TEST_DATABASE_URL:-}" ]; then
  runs+=("TEST_DATABASE_URL|$TEST_DATABASE_URL")
else
  url=$(LOCAL_DB_EDITION=apache scripts/local-db.sh start) || exit 1
  runs+=("apache edition|$url")
  major=$(LOCAL_DB_EDITION=timescale scripts/local-db.sh major)
  if has_tsl "$major"; then
    url=$(LOCAL_DB_EDITION=timescale scripts/local-db.sh start) || exit 1
    runs+=("timescale edition, PostgreSQL $major|$url")
  else
    echo "no TimescaleDB build with the Timescale-License features here: testing the apache edition only" >&2
  fi
  if [ "$compose_major" != "$major" ] && has_tsl "$compose_major"; then
    url=$(LOCAL_DB_EDITION=timescale-pg$compose_major scripts/local-db.sh start) || exit 1
    runs+=("timescale edition, PostgreSQL $compose_major (compose's)|$url")
  elif [ "$compose_major" != "$major" ]; then
    echo "PostgreSQL $compose_major (compose's) with TimescaleDB's Timescale-License build is not" \
      "installed here: not tested on it (.ci/run builds it)" >&2
  fi
fi

status=0
summary=()
passed_total=0
failed_total=0
for run in "${runs[@]}"; do
  name=${run%%|*} url=${run#*|}
  echo "=== test run: $name ===" >&2
  log=$(mktemp)
  TEST_DATABASE_URL=$url "$python" -m pytest "$@" 2>&1 | tee "$log"
  code=${PIPESTATUS[0]}
  [ "$code" -eq 0 ] || status=1
  counts=$(grep -E '^=+ .*(passed|failed|error|skipped).* in [0-9.]+s' "$log" | tail -1 | sed -E 's/^=+ //; s/ in [0-9.]+s.*//')
  summary+=("$name: ${counts:-no result (pytest exit $code)}")
  passed_total=$((passed_total + $(grep -oE '[0-9]+ passed' <<<"$counts" | awk '{s += $1} END {print s + 0}')))
  failed_total=$((failed_total + $(grep -oE '[0-9]+ (failed|errors?)' <<<"$counts" | awk '{s += $1} END {print s + 0}')))
  rm -f "$log"
done

echo
echo "test runs, one per edition and PostgreSQL major:"
printf '  %s\n' "${summary[@]}"
echo "total: $passed_total passed, $failed_total failed"
exit $status
