#!/usr/bin/env bash
# Builds and installs TimescaleDB (Apache-2 edition) for the machine's PostgreSQL
# from Debian's source package, for hosts whose release ships no binary package
# (Debian 12). Idempotent: does nothing when the extension is already installed.
#
# The source comes from Debian 13 (trixie): a deb-src entry is derived from the
# machine's own apt sources, so whichever mirror the host uses is used here too.
set -euo pipefail

pg_major=${PG_MAJOR:-15}
pg_config=/usr/lib/postgresql/$pg_major/bin/pg_config
[ -x "$pg_config" ] || pg_config=$(command -v pg_config)

if [ -f "$($pg_config --sharedir)/extension/timescaledb.control" ]; then
  echo "timescaledb already installed for PostgreSQL $pg_major"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
mirror=$(grep -hoE '^URIs: *\S+/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | awk '{print $2}')
[ -n "$mirror" ] || mirror=$(grep -hoE '^deb +\S+/debian/? ' /etc/apt/sources.list 2>/dev/null | head -1 | awk '{print $2}')
[ -n "$mirror" ] || { echo "cannot find a Debian mirror in the apt sources" >&2; exit 1; }

cat > /etc/apt/sources.list.d/timescaledb-src.sources <<SRC
Types: deb-src
URIs: $mirror
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC

apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  "postgresql-server-dev-$pg_major" cmake build-essential dpkg-dev libssl-dev >/dev/null

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
apt-get source -qq --download-only timescaledb >/dev/null
dpkg-source -x --no-check timescaledb_*.dsc src >/dev/null
cd src
./bootstrap -DAPACHE_ONLY=1 -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DPG_CONFIG="$pg_config" >/dev/null
make -s -C build -j"$(nproc)" install >/dev/null
echo "timescaledb $(grep -oE "default_version *= *'[^']+'" "$($pg_config --sharedir)/extension/timescaledb.control") installed for PostgreSQL $pg_major"
