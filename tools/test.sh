#!/usr/bin/env bash
# Installs everything plop's tests need on a fresh Debian machine, then runs all of them.
# Usage: bash tools/test.sh [pytest args...]   (run as root, or with sudo available, for apt-get)
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: Chromium drives the browser tests (Playwright never downloads a browser
# here); golang-go's `go tool pprof` checks that plop's pprof files read as plop meant them.
NEED=""
[ -x /usr/bin/chromium ] || NEED="$NEED chromium fonts-dejavu-core"
command -v go >/dev/null 2>&1 || NEED="$NEED golang-go"
if [ -n "$NEED" ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $NEED >/dev/null
fi

# The package itself (building its optional C sampler) and the test extra.
python3 -m pip install -q --disable-pip-version-check -e '.[test]'

python3 -m pytest -ra "$@"
