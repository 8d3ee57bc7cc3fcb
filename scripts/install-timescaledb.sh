#!/usr/bin/env bash
# Builds and installs TimescaleDB (Apache-2 edition) for the machine's PostgreSQL from Debian's
# source package, for hosts whose release ships no binary package (Debian 12). Run as root;
# scripts/local-db.sh calls it. Does nothing when the extension is already installed.
#
# What it changes, only when TimescaleDB is missing, saying each step as it goes:
#   1. apt-get update (package lists of the machine's own sources).
#   2. The build tools that are missing (postgresql-server-dev-N, cmake, build-essential,
#      dpkg-dev, libssl-dev), each checked with dpkg -s. Never an upgrade: an installed package
#      stays at its version (apt-get install --no-upgrade), and if installing one would
#      upgrade another (a newer postgresql-server-dev needing a newer libpq), the script stops
#      and says which, before changing anything.
#   3. TimescaleDB built from Debian 13 (trixie)'s source package, fetched by
#      scripts/fetch-debian-source.sh with a deb-src entry and source index of its own in a
#      temporary directory (nothing added to /etc/apt, nothing installed from trixie), and
#      installed into PostgreSQL N's directories.
set -euo pipefail

say() { echo "install-timescaledb: $*" >&2; }

pg_major=${PG_MAJOR:-15}
pg_config=/usr/lib/postgresql/$pg_major/bin/pg_config
[ -x "$pg_config" ] || pg_config=$(command -v pg_config)

if [ -f "$($pg_config --sharedir)/extension/timescaledb.control" ]; then
  say "TimescaleDB already installed for PostgreSQL $pg_major: nothing to do"
  exit 0
fi
say "TimescaleDB is not installed for PostgreSQL $pg_major: building it from Debian's source"

export DEBIAN_FRONTEND=noninteractive
here=$(cd "$(dirname "$0")" && pwd)

say "apt-get update (package lists)"
apt-get update -q

missing=()
for package in "postgresql-server-dev-$pg_major" cmake build-essential dpkg-dev libssl-dev; do
  if dpkg -s "$package" 2>/dev/null | grep -q '^Status: install ok installed'; then
    say "$package is installed: kept as it is"
  else
    missing+=("$package")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  install=(apt-get install -y --no-upgrade --no-install-recommends "${missing[@]}")
  # An `Inst name [installed version] (new version …)` line of the simulation is an upgrade.
  upgrades=$("${install[@]}" --simulate | sed -nE 's/^Inst (\S+) \[([^]]+)\] \((\S+).*/\1 \2 -> \3/p')
  if [ -n "$upgrades" ]; then
    say "installing ${missing[*]} would upgrade installed packages; stopping, nothing changed:"
    echo "$upgrades" | sed 's/^/  /' >&2
    say "upgrade them yourself first (apt-get upgrade), then run this again"
    exit 1
  fi
  say "installing what is missing: ${missing[*]}"
  "${install[@]}"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
"$here/fetch-debian-source.sh" trixie timescaledb "$work"
dpkg-source -x --no-check timescaledb_*.dsc src
cd src
say "building TimescaleDB (Apache-2 edition) for $($pg_config --version) on $(nproc) cores"
./bootstrap -DAPACHE_ONLY=1 -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DPG_CONFIG="$pg_config"
make -C build -j"$(nproc)" install
say "installed $(grep -oE "default_version *= *'[^']+'" "$($pg_config --sharedir)/extension/timescaledb.control") for PostgreSQL $pg_major"
