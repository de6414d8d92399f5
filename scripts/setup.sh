#!/usr/bin/env bash
# Set up the development environment; idempotent and quick when nothing changed.
#   .venv/                 Python 3.11 virtual environment with every package of the repository
#                          installed editable (core, each service, the orchestration) with pinned versions
#   node_modules/.bin/buf  buf, to lint the contract
#   postgresql             Debian's package, when missing (as root): the local persistent Prefect server
#   chromium               Debian's package, when missing (as root): the report's headless browser test
# Sourced by scripts/night.sh and scripts/test.sh; run it alone to prepare a checkout.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# One setup at a time: concurrent test and night runs share the .venv.
exec 9<scripts/setup.sh
flock 9

python=${PYTHON:-$(command -v python3.11 || command -v python3)}
if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))'; then
  echo "setup: Python 3.11 or newer is needed, found $("$python" --version 2>&1)" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv

# Debian packages, installed when missing (as root); without them only the tests that need them skip.
apt_if_missing() {  # apt_if_missing PACKAGE WHAT-SKIPS-WITHOUT-IT COMMAND-THAT-FINDS-IT...
  local package=$1 skips=$2
  shift 2
  "$@" && return 0
  if ((EUID == 0)) && command -v apt-get >/dev/null; then
    echo "setup: installing $package (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" >/dev/null
  else
    echo "setup: $package not found and not root: $skips (install Debian's $package)" >&2
  fi
}
postgres_found() { compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null; }
chromium_found() { command -v chromium >/dev/null; }
# the local persistent Prefect server: `nightshift night --prefect-server` and its tests
apt_if_missing postgresql "the Prefect-server tests will skip" postgres_found
# headless rendering of the night's HTML report in its test
apt_if_missing chromium "the report's browser test will skip" chromium_found

# Every installable package of the repository: the shared core first, then services and orchestration.
packages=(core)
for dir in services/*/ orchestration/; do
  [ -f "$dir/pyproject.toml" ] && packages+=("${dir%/}")
done

stamp=.venv/.nightshift-setup
want=$(cat constraints.txt requirements-dev.txt "${packages[@]/%//pyproject.toml}" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing ${packages[*]} into .venv"
  editable=(-e "core[test]")
  for pkg in "${packages[@]:1}"; do editable+=(-e "$pkg[test]"); done
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --progress-bar off \
    -c constraints.txt -r requirements-dev.txt "${editable[@]}" 2> >(grep -v "^WARNING: Location" >&2)
  echo "$want" > "$stamp"
fi

if [ ! -x node_modules/.bin/buf ]; then
  echo "setup: installing buf (npm)"
  npm ci --silent --no-audit --no-fund >/dev/null
fi
