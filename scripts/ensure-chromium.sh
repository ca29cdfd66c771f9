#!/usr/bin/env bash
# Installs Debian's Chromium for the console's browser tests when this machine has none. Playwright drives it as
# it is (/usr/bin/chromium): Playwright's own browser download is never used (it cannot work offline).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "Chromium is missing; run as root or: sudo apt-get install -y chromium" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
/usr/bin/chromium --version
