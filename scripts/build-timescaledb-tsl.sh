#!/usr/bin/env bash
# Builds and installs TimescaleDB WITH its Timescale-License features for the PostgreSQL whose
# pg_config is PG_CONFIG, from an unmodified upstream source tarball (timescaledb-X.tar.gz, as
# CI has beside its checkout). For a PostgreSQL built by scripts/build-postgresql.sh: it has its
# own headers, so no postgresql-server-dev package is needed. Run as root.
#
#   PG_CONFIG=/usr/lib/postgresql/18/bin/pg_config scripts/build-timescaledb-tsl.sh timescaledb-2.28.3.tar.gz
#
# The same build options as CI's build for the distribution's PostgreSQL. Idempotent: does
# nothing when that version's two libraries are already in pg_config's pkglibdir.
set -euo pipefail

say() { echo "build-timescaledb-tsl: $*" >&2; }

tarball=$(realpath "${1:?usage: PG_CONFIG=… $0 timescaledb-X.tar.gz}")
pg_config=${PG_CONFIG:?set PG_CONFIG to the pg_config of the PostgreSQL to build for}
version=$(basename "$tarball" .tar.gz); version=${version#timescaledb-}
libdir=$("$pg_config" --pkglibdir)
if [ -f "$libdir/timescaledb-$version.so" ] && [ -f "$libdir/timescaledb-tsl-$version.so" ]; then
  say "TimescaleDB $version (Timescale License) already in $libdir: nothing to do"
  exit 0
fi
missing=()
for package in cmake build-essential libssl-dev; do
  dpkg -s "$package" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing the build tools that are missing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-upgrade --no-install-recommends "${missing[@]}" >/dev/null
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xzf "$tarball" -C "$work"
cd "$work/timescaledb-$version"
say "building TimescaleDB $version (Timescale License) for $("$pg_config" --version) on $(nproc) cores"
./bootstrap -DPG_CONFIG="$pg_config" -DCMAKE_BUILD_TYPE=Release -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF \
  -DWARNINGS_AS_ERRORS=OFF -DLINTER=OFF >bootstrap.log 2>&1 || { tail -20 bootstrap.log >&2; exit 1; }
make -s -C build -j"$(nproc)" install >make.log 2>&1 || { tail -30 make.log >&2; exit 1; }
say "installed TimescaleDB $version (Timescale License) in $libdir"
