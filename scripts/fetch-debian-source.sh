#!/usr/bin/env bash
# Downloads a source package of a Debian suite's main into a directory, leaving apt as it was:
# the deb-src entry, the source index it reads (trixie main's Sources is about 10.5 MB) and its
# lock live in a temporary directory removed on exit. /etc/apt and apt's own lists and caches
# are read, never written. Run as root; scripts/install-timescaledb.sh (trixie's timescaledb)
# and scripts/build-postgresql.sh (a newer suite's postgresql-N) call it.
#
#   scripts/fetch-debian-source.sh SUITE PACKAGE DIRECTORY   # .dsc and files into DIRECTORY
#
# The mirror is the machine's own Debian mirror, the first one its apt sources name.
set -euo pipefail

say() { echo "fetch-debian-source: $*" >&2; }
[ $# -eq 3 ] || { echo "usage: $0 SUITE PACKAGE DIRECTORY" >&2; exit 2; }
suite=$1
package=$2
destination=$(cd "$3" && pwd)

apt_dir=${APT_DIR:-/etc/apt}  # another for tests only (tests/unit/test_quick_start.py)
mirror=$(grep -hoE '^URIs: *\S+/debian/?$' "$apt_dir"/sources.list.d/*.sources 2>/dev/null | head -1 | awk '{print $2}')
[ -n "$mirror" ] || mirror=$(grep -hoE '^deb +\S+/debian/? ' "$apt_dir"/sources.list 2>/dev/null | head -1 | awk '{print $2}')
[ -n "$mirror" ] || { say "cannot find a Debian mirror in the apt sources"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# apt downloads as the user _apt, which must be able to write where the files go.
chmod 755 "$work"
mkdir -p "$work/sources.list.d" "$work/lists/partial" "$work/download"
if [ "$(id -u)" -eq 0 ] && id _apt >/dev/null 2>&1; then chown _apt "$work/lists/partial" "$work/download"; fi
cat > "$work/sources.list.d/$suite-src.sources" <<SRC
Types: deb-src
URIs: $mirror
Suites: $suite
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
# Only this entry, lists kept in $work, no package cache written.
apt=(apt-get -q -o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$work/sources.list.d"
  -o "Dir::State::Lists=$work/lists" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=)

say "reading the source index of Debian $suite main from $mirror into $work (apt's own sources and lists untouched)"
"${apt[@]}" update
say "downloading $package's source package from $suite into $destination"
# -qq: without the notice that the packaging is kept in a version control system.
(cd "$work/download" && "${apt[@]}" -qq source --download-only "$package")
mv "$work/download"/* "$destination"/
