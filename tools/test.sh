#!/usr/bin/env bash
# Installs everything plop's tests need on a fresh Debian machine, then runs all of them.
# Usage: bash tools/test.sh [pytest args...]   (run as root, or with sudo available, for apt-get)
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's Chromium drives the browser tests (Playwright never downloads a browser here).
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
fi

# The package itself (building its optional C sampler) and the test extra.
python3 -m pip install -q --disable-pip-version-check -e '.[test]'

python3 -m pytest -ra "$@"
