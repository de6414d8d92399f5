#!/bin/bash
# The object store's bucket, one MinIO user per service and for the flows, and the policy limiting each
# to its prefixes (<user>.json, else science.json with TASK = the user). Idempotent: re-running after a
# credential or policy change updates them. Bash only (the mc image has no sed or grep).
set -euo pipefail
# MinIO serves HTTPS with the namespace CA: mc, a Go program, trusts the roots in the file SSL_CERT_FILE names.
export SSL_CERT_FILE=$NIGHTSHIFT_S3_CA_BUNDLE
mc() { command mc --config-dir /tmp/mc "$@"; }
mc alias set store "$NIGHTSHIFT_S3_ENDPOINT" "$NIGHTSHIFT_S3_ACCESS_KEY" "$NIGHTSHIFT_S3_SECRET_KEY" >/dev/null
mc mb --ignore-existing "store/$NIGHTSHIFT_S3_BUCKET"
for credentials in /credentials/*; do
  user=${credentials##*/}
  template=/etc/nightshift/object-store-users/$user.json
  [[ -f $template ]] || template=/etc/nightshift/object-store-users/science.json
  policy=$(<"$template")
  printf '%s\n' "${policy//TASK/$user}" > "/tmp/$user.json"
  key=$(<"$credentials/access-key")
  mc admin user add store "$key" "$(<"$credentials/secret-key")" >/dev/null
  mc admin policy create store "nightshift-$user" "/tmp/$user.json" >/dev/null
  # attach fails when the policy is attached already: then the user's record must name it
  if ! mc admin policy attach store "nightshift-$user" --user "$key" >/dev/null 2>&1; then
    [[ $(mc admin user info store "$key") == *"nightshift-$user"* ]]
  fi
  echo "$user: user $key with policy nightshift-$user"
done
