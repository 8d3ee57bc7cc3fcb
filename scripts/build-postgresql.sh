#!/usr/bin/env bash
# Builds and installs PostgreSQL PG_MAJOR from Debian's source package (postgresql-PG_MAJOR of
# the Debian suite PG_SUITE), for a Debian 12 machine whose release ships no package of that
# major. Run as root.
#
#   PG_MAJOR=18 PG_SUITE=forky scripts/build-postgresql.sh
#
# Installs into PREFIX (default /usr/lib/postgresql/PG_MAJOR, where Debian's cluster tools
# look for a major: pg_createcluster PG_MAJOR … then works), self-contained: its own libpq and
# headers there, so the machine's libpq and postgresql-server-dev-* stay as they are. DESTDIR
# stages the installation elsewhere (the build is relocatable: run PREFIX's bin from the stage).
# The source comes through a temporary apt configuration (a deb-src entry for PG_SUITE in a
# throw-away directory): /etc/apt is not changed. Idempotent: does nothing when PREFIX already
# holds this major's server.
set -euo pipefail

say() { echo "build-postgresql: $*" >&2; }

major=${PG_MAJOR:?set PG_MAJOR, e.g. PG_MAJOR=18}
suite=${PG_SUITE:?set PG_SUITE, the Debian suite whose source has postgresql-PG_MAJOR, e.g. forky}
prefix=${PREFIX:-/usr/lib/postgresql/$major}
destdir=${DESTDIR:-}
if [ -x "$destdir$prefix/bin/postgres" ]; then
  say "PostgreSQL $("$destdir$prefix/bin/postgres" --version | awk '{print $3}') already in $destdir$prefix: nothing to do"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
# What configure needs below; each checked with dpkg -s, installed without upgrading anything.
missing=()
for package in build-essential dpkg-dev bison flex perl pkg-config libicu-dev libreadline-dev \
  zlib1g-dev libssl-dev; do
  dpkg -s "$package" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing the build tools that are missing: ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-upgrade --no-install-recommends "${missing[@]}" >/dev/null
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The source through a temporary apt configuration (scripts/fetch-debian-source.sh).
"$(dirname "$0")/fetch-debian-source.sh" "$suite" "postgresql-$major" "$work"
cd "$work"
dpkg-source -x --no-check postgresql-"$major"_*.dsc src >/dev/null  # Debian's patches applied
cd src
say "building PostgreSQL $(dpkg-parsechangelog -S Version) for $prefix on $(nproc) cores"
# Debian's defaults where they matter to a server: the socket in /var/run/postgresql (a Debian
# patch), OpenSSL, ICU; nothing the tests do not use (no LLVM JIT, no PL languages but plpgsql).
./configure --prefix="$prefix" --with-openssl --with-icu --with-system-tzdata=/usr/share/zoneinfo \
  --with-extra-version=" (Debian $(dpkg-parsechangelog -S Version) source)" >configure.log 2>&1 ||
  { tail -20 configure.log >&2; exit 1; }
make -s -j"$(nproc)" world-bin >make.log 2>&1 || { tail -30 make.log >&2; exit 1; }
make -s install-world-bin DESTDIR="$destdir" >>make.log 2>&1 || { tail -30 make.log >&2; exit 1; }
say "installed $("$destdir$prefix/bin/postgres" --version) in $destdir$prefix"
