#!/usr/bin/env bash
# Installs what is missing: Debian packages (when root on Debian/Ubuntu) and npm dependencies.
# Usage: scripts/install-deps.sh [runtime|test]
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-test}

runtime_pkgs=(containerd runc iproute2 nftables util-linux conntrack qemu-system-x86 skopeo umoci cpio busybox-static)
test_pkgs=(containerd runc iproute2 nftables docker-registry apache2-utils busybox-static umoci skopeo mosquitto nats-server golang-github-containerd-containerd-dev iperf3 conntrack qemu-system-x86 gcc binutils chromium cpio curl)
if [ "$mode" = runtime ]; then pkgs=("${runtime_pkgs[@]}"); else pkgs=("${test_pkgs[@]}"); fi

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "note: missing Debian packages (${missing[*]}); run as root to install them, or install them yourself" >&2
  fi
fi

# the microvm driver's guest kernel (Debian's cloud kernel, unpacked into /var/cache/oak/microvm-kernel)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  scripts/microvm-kernel.sh || echo "note: no microvm kernel (see above); the NodeEngine will not offer microvm" >&2
fi

# process workloads run as this system user (NodeEngine --run-as): no login shell, no home
if [ "$(id -u)" = 0 ]; then
  scripts/create-workload-user.sh
fi

if ! command -v node >/dev/null 2>&1; then
  echo "Node.js 20 or newer is required (Debian 13: apt-get install nodejs npm; older releases: a Node 20 package from your vendor)" >&2
  exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "Node.js 20 or newer is required; this is $(node --version)" >&2
  exit 1
fi
stamp=node_modules/.oak-install-stamp
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ] || [ package.json -nt "$stamp" ]; then
  if [ -f package-lock.json ]; then npm ci --no-audit --no-fund --loglevel=error; else npm install --no-audit --no-fund --loglevel=error; fi
  touch "$stamp"
fi
