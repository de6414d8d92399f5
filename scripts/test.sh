#!/usr/bin/env bash
# The test command (README quick start; .ci/run calls it). Sets itself up, then runs:
#   tier 1  every test suite against rclone's S3 server: the core, the system tests and the
#           orchestration in one pytest process, then each service's suite in a process of its own
#           (a service is its own package; and TensorFlow loaded before torch crashes torch's import)
#   tier 2  the object-store tests again against a real Ceph RADOS gateway, so nothing relies on
#           rclone's quirks (Ceph installed from Debian by scripts/install-ceph.sh)
# Arguments go to one pytest run instead, for a quick focused run:
#   scripts/test.sh core/tests/test_server.py -k drain
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
scripts/setup.sh
export DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false TF_CPP_MIN_LOG_LEVEL=2 MPLBACKEND=Agg

if [ $# -gt 0 ]; then
  exec .venv/bin/python -m pytest "$@"
fi

failed=()
run_suite() {  # run_suite NAME PYTEST_ARGS...: run one pytest process, remember a failure, go on
  local name=$1; shift
  echo "== tier 1: $name (S3 = rclone)"
  .venv/bin/python -m pytest "$@" || failed+=("$name")
}
suites=(core/tests tests)
[ -d orchestration/tests ] && suites+=(orchestration/tests)
run_suite "core, system, orchestration" "${suites[@]}"
for service_tests in services/*/tests; do
  run_suite "$(basename "$(dirname "$service_tests")")" "$service_tests"
done

echo "== tier 2: object-store suites (S3 = Ceph RGW)"
scripts/install-ceph.sh
.venv/bin/python -m pytest --s3-server=ceph core/tests/test_store.py core/tests/test_codec.py core/tests/test_registry.py \
  || failed+=("object store on Ceph")

if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED suites: ${failed[*]}" >&2
  exit 1
fi
echo "all suites passed"
