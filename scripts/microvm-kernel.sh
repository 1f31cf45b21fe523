#!/usr/bin/env bash
# Puts Debian's cloud kernel where the NodeEngine's microvm driver looks for it (default
# /var/cache/oak/microvm-kernel; another directory: the first argument, then pass it to the
# NodeEngine as --microvm-kernel <dir>): `apt-get download` of the linux-image-*-cloud-amd64
# package (else linux-image-amd64's), unpacked with `dpkg-deb -x`. Nothing is installed into the
# host's /boot or /lib/modules. Idempotent: a directory that already has boot/vmlinuz-* is kept.
set -euo pipefail
dir=${1:-/var/cache/oak/microvm-kernel}
if compgen -G "$dir/boot/vmlinuz-*" >/dev/null; then
  echo "microvm kernel: $(basename "$(ls "$dir"/boot/vmlinuz-* | tail -1)") in $dir"
  exit 0
fi
[ "$(uname -m)" = x86_64 ] || { echo "microvm kernel: only x86_64 hosts are supported" >&2; exit 1; }
command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || { echo "microvm kernel: needs apt-get and dpkg-deb (Debian/Ubuntu)" >&2; exit 1; }
pkg=""
for meta in linux-image-cloud-amd64 linux-image-amd64; do
  pkg=$(apt-cache depends "$meta" 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -1)
  [ -n "$pkg" ] && break
done
[ -n "$pkg" ] || { echo "microvm kernel: no linux-image-cloud-amd64 or linux-image-amd64 in the package lists (apt-get update?)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download -q "$pkg" >/dev/null)
mkdir -p "$tmp/x"
dpkg-deb -x "$tmp"/"$pkg"_*.deb "$tmp/x"
mkdir -p "$(dirname "$dir")"
rm -rf "$dir.new"
mv "$tmp/x" "$dir.new"
rm -rf "$dir"
mv "$dir.new" "$dir"
echo "microvm kernel: $pkg unpacked into $dir"
