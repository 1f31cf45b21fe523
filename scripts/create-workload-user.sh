#!/bin/sh
# Creates the system user that NodeEngine runs `process` workloads as (default oak-workload, or
# the first argument / $OAK_RUN_AS): no login shell, no home directory, its own group. Idempotent;
# run as root. Called by scripts/install-deps.sh (make up, make test) and by a worker's install.
set -eu
user=${1:-${OAK_RUN_AS:-oak-workload}}
if getent passwd "$user" >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "note: the user $user does not exist; as root: useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin $user" >&2
  exit 0
fi
useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$user"
echo "created the system user $user (process workloads run as it)"
