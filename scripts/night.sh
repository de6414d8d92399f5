#!/usr/bin/env bash
# The main job (README quick start): sets itself up, then runs the night on the embedded default:
# a local S3 server, local services, a small simulated night. Arguments go to the command.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
scripts/setup.sh
export DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false TF_CPP_MIN_LOG_LEVEL=2 MPLBACKEND=Agg
exec .venv/bin/nightshift night "$@"
