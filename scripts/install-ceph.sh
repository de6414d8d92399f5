#!/usr/bin/env bash
# Install the single-node Ceph RADOS gateway that the second object-store test tier runs
# (pytest --s3-server=ceph): Debian 12's radosgw, ceph-mon and ceph-osd, plus curl.
# Idempotent: does nothing when every binary is already on PATH.
set -euo pipefail

binaries=(radosgw ceph-mon ceph-osd radosgw-admin curl)
packages=(radosgw ceph-mon ceph-osd curl)

missing=()
for binary in "${binaries[@]}"; do
  command -v "$binary" >/dev/null 2>&1 || missing+=("$binary")
done
if ((${#missing[@]} == 0)); then
  echo "install-ceph.sh: Ceph RGW already installed"
  exit 0
fi

if ((EUID != 0)); then
  echo "install-ceph.sh: ${missing[*]} not found; run this script as root to install ${packages[*]} with apt-get" >&2
  exit 1
fi

apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}"
echo "install-ceph.sh: installed ${packages[*]}"
