#!/usr/bin/env bash
# A throw-away single-node Ceph (one monitor, one in-memory OSD, one RADOS gateway) on 127.0.0.1,
# without systemd or cephx, for the object-store test tier that must not depend on rclone's quirks.
# Needs Debian's radosgw, ceph-mon and ceph-osd (scripts/install-ceph.sh).
# Usage: ceph_rgw.sh DIR PORT ACCESS_KEY SECRET_KEY     Stop: kill $(cat DIR/run/*.pid)
set -euo pipefail
dir=${1:?data directory}; port=${2:?rgw port}; access=${3:?access key}; secret=${4:?secret key}
mon_port=${NIGHTSHIFT_CEPH_MON_PORT:-3300}

rm -rf "$dir"
mkdir -p "$dir"/{mon-a,osd-0,run,log,rgw}
conf="$dir/ceph.conf"
fsid=$(cat /proc/sys/kernel/random/uuid)
cat > "$conf" <<CONF
[global]
fsid = $fsid
mon_host = v2:127.0.0.1:$mon_port/0
public_addr = 127.0.0.1
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
# Without "crc secure" radosgw waits 300 s for the monitor under auth none.
ms_mon_client_mode = crc secure
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
mon_warn_on_pool_no_redundancy = false
mon_data_avail_warn = 1
run_dir = $dir/run
log_file = $dir/log/\$name.log
admin_socket = $dir/run/\$name.asok
pid_file = $dir/run/\$name.pid
[mon]
mon_data = $dir/mon-\$id
[osd]
osd_data = $dir/osd-\$id
osd_objectstore = memstore
memstore_device_bytes = 2147483648
[client.rgw.a]
rgw_frontends = beast endpoint=127.0.0.1:$port
rgw_data = $dir/rgw
CONF

wait_for() {  # wait_for SECONDS COMMAND...: poll COMMAND every 0.25 s until it succeeds
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then echo "ceph_rgw.sh: timed out waiting for: $*" >&2; return 1; fi
    sleep 0.25
  done
}
osd_up() { timeout 5 ceph -c "$conf" osd stat 2>/dev/null | grep -q '1 up'; }
rgw_answers() { curl -s -m 1 -o /dev/null "http://127.0.0.1:$port"; }

monmaptool --create --addv a "[v2:127.0.0.1:$mon_port]" --fsid "$fsid" "$dir/monmap" >/dev/null
ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap"
ceph-mon -c "$conf" -i a
osd_uuid=$(cat /proc/sys/kernel/random/uuid)
osd_id=$(timeout 30 ceph -c "$conf" osd new "$osd_uuid")
ceph-osd -c "$conf" -i "$osd_id" --mkfs --osd-uuid "$osd_uuid" 2>/dev/null
ceph-osd -c "$conf" -i "$osd_id" 2>/dev/null
wait_for 30 osd_up
timeout 60 radosgw-admin -c "$conf" user create --uid=nightshift --display-name=nightshift \
  --access-key="$access" --secret-key="$secret" >/dev/null
radosgw -c "$conf" -n client.rgw.a
wait_for 60 rgw_answers
echo "ceph rgw ready on 127.0.0.1:$port"
