#!/usr/bin/env bash
# deb.sh - build the Debian package from this checkout, outside it.
#
#   scripts/deb.sh [OUTDIR]     (also: make deb)
#
# Copies the working tree (uncommitted changes included; build*/, .run/ and
# autotools caches left out) to a scratch directory, runs
# `dpkg-buildpackage -b -us -uc` there, then lintian.  OUTDIR (default: the
# current directory) receives herald_<version>_<arch>.deb, the .buildinfo,
# .changes and lintian.txt.  The checkout itself is not written to.
# Exit status: non-zero when the build fails or lintian reports an error.
# HERALD_DEB_SCRATCH: the scratch directory (default: a new one in $TMPDIR,
# removed at the end); DEB_BUILD_OPTIONS is passed on (nocheck, parallel=N).
# Needs: dpkg-dev, debhelper, fakeroot (not used: Rules-Requires-Root: no),
# lintian, and the Build-Depends of debian/control.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$(mkdir -p "${1:-.}" && cd "${1:-.}" && pwd)
say() { printf 'deb.sh: %s\n' "$*" >&2; }

for t in dpkg-buildpackage dh lintian; do
	command -v "$t" >/dev/null 2>&1 || { say "$t not found: apt-get install dpkg-dev debhelper lintian"; exit 1; }
done
if ! missing=$(cd "$top" && dpkg-checkbuilddeps 2>&1); then
	say "$missing"
	exit 1
fi

if [ -n "${HERALD_DEB_SCRATCH:-}" ]; then
	scratch=$HERALD_DEB_SCRATCH
	rm -rf "$scratch"
	mkdir -p "$scratch"
else
	scratch=$(mktemp -d "${TMPDIR:-/tmp}/herald-deb.XXXXXX")
	trap 'rm -rf "$scratch"' EXIT
fi
src=$scratch/herald
mkdir -p "$src"
# The working tree as it is, without build trees and generated caches; the
# package's own debhelper leftovers of an earlier in-tree build are left out
# too, so the copy builds from clean.
excl=()
for d in "$top"/build*; do
	case ${d##*/} in build-aux) ;; *) excl+=("--exclude=./${d##*/}") ;; esac
done
(cd "$top" && tar -cf - "${excl[@]}" --exclude=./.run --exclude=./.git \
	--exclude=./autom4te.cache --exclude='./debian/.debhelper' --exclude='./debian/herald' \
	--exclude='./debian/tmp' --exclude='./debian/files' --exclude='./debian/*.substvars' \
	--exclude='./debian/*.log' --exclude='./debian/debhelper-build-stamp' \
	--exclude='./tests/browser/node' --exclude='./tests/browser/artifacts' .) |
	(cd "$src" && tar -xf -)

say "dpkg-buildpackage -b -us -uc in $src (log: $out/dpkg-buildpackage.log)"
if ! (cd "$src" && dpkg-buildpackage -b -us -uc) >"$out/dpkg-buildpackage.log" 2>&1; then
	tail -40 "$out/dpkg-buildpackage.log" >&2
	say "dpkg-buildpackage failed"
	exit 1
fi
version=$(cd "$src" && dpkg-parsechangelog -S Version)
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
changes=$scratch/herald_${version}_${arch}.changes
for f in "$scratch"/herald_"$version"_*; do
	cp "$f" "$out/"
done
say "built $out/herald_${version}_${arch}.deb"

# lintian: errors fail the build; warnings are shown.
lintian --fail-on error --display-info "$changes" >"$out/lintian.txt" 2>&1 && rc=0 || rc=$?
if [ -s "$out/lintian.txt" ]; then
	sed 's/^/lintian: /' "$out/lintian.txt" >&2
else
	say "lintian: no tags"
fi
[ "$rc" -eq 0 ] || { say "lintian reported errors"; exit 1; }
