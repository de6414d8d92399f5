#!/usr/bin/env bash
# Soak and chaos: the reliability suite (faults, fuzzed bad input, load, security) in rounds until the
# time is up, the load phase of each round lasting longer as the soak does. Ends with one JSON line.
#   scripts/soak.sh                 one short round (CI-sized, a few minutes)
#   scripts/soak.sh --minutes 60    rounds for an hour (each service loaded 60 s per round)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
minutes=0
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes=$2; shift 2 ;;
    *) echo "usage: scripts/soak.sh [--minutes N]" >&2; exit 2 ;;
  esac
done
export DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false TF_CPP_MIN_LOG_LEVEL=2 MPLBACKEND=Agg
# Seconds of load per service per round: 5 in the short soak, 60 in a long one.
export NIGHTSHIFT_LOAD_S=$([ "$minutes" -ge 10 ] && echo 60 || echo 5)
work=$(mktemp -d -t nightshift-soak-XXXXXX)
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
round=0
status=0
while :; do
  round=$((round + 1))
  .venv/bin/python -m pytest -m reliability tests/reliability -q -s \
    --junitxml="$work/round-$round.xml" >"$work/round-$round.log" 2>&1 || status=1
  grep -E "^(FAILED|ERROR) " "$work/round-$round.log" >&2 || true
  tail -n 1 "$work/round-$round.log" >&2
  [ $(( $(date +%s) - start )) -ge $((minutes * 60)) ] && break
done
.venv/bin/python - "$work" "$start" "$NIGHTSHIFT_LOAD_S" <<'PY'
import json, re, sys, time, xml.etree.ElementTree as ET
from pathlib import Path
work, start, load_s = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
for xml in sorted(work.glob("round-*.xml")):
    suite = ET.parse(xml).getroot().find("testsuite")
    for key in totals:
        totals[key] += int(suite.get(key, 0))
# pytest -s prints the tests' lines after its progress marks: find them anywhere in a line
figures = [json.loads(m) for log in sorted(work.glob("round-*.log")) for m in re.findall(r"(\{\"task\".*\})\s*$", log.read_text(), re.M)]
fuzz = [int(n) for log in work.glob("round-*.log") for n in re.findall(r"\b\w+: (\d+) (?:malformed requests|cases)\b", log.read_text())]
print(json.dumps({"rounds": len(list(work.glob("round-*.xml"))), "wall_s": round(time.time() - start, 1), "load_s_per_service": load_s,
                  **totals, "bad_inputs_tried": sum(fuzz),
                  "load": [f for f in figures if "tiles_per_s" in f], "reload": [f for f in figures if "reload_cycles" in f]}))
PY
exit $status
