#!/usr/bin/env bash
# Installs the PostgreSQL server binaries from Debian's packages when this machine has none.
# The tests start and stop their own throw-away cluster on 127.0.0.1; nothing is left running.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "PostgreSQL server binaries are missing; run as root or: sudo apt-get install -y postgresql" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq postgresql >/dev/null
# Debian's package starts a cluster on 5432; the tests use their own, so stop the packaged one.
if command -v pg_ctlcluster >/dev/null 2>&1; then
  for cluster in $(pg_lsclusters -h 2>/dev/null | awk '{print $1"/"$2}'); do
    pg_ctlcluster ${cluster/\// } stop || true
  done
fi
ls /usr/lib/postgresql/*/bin/initdb >/dev/null
