#!/usr/bin/env bash
# The test command (README quick start; .ci/run calls it). Sets itself up, then runs:
#   tier 1  every test suite (core, system, services, orchestration) against rclone's S3 server
#   tier 2  the object-store tests again against a real Ceph RADOS gateway, so nothing relies on
#           rclone's quirks (Ceph installed from Debian by scripts/install-ceph.sh)
# Arguments go to pytest for tier 1 and skip tier 2, for a quick focused run:
#   scripts/test.sh core/tests/test_server.py -k drain
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
scripts/setup.sh
export DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false TF_CPP_MIN_LOG_LEVEL=2 MPLBACKEND=Agg

echo "== tier 1: all suites, S3 = rclone"
.venv/bin/python -m pytest "$@"
[ $# -eq 0 ] || exit 0

echo "== tier 2: object-store suites, S3 = Ceph RGW"
scripts/install-ceph.sh
.venv/bin/python -m pytest --s3-server=ceph core/tests/test_store.py core/tests/test_codec.py core/tests/test_registry.py
