#!/usr/bin/env bash
# Runs one etcd for development in the foreground: hack/etcd.sh [PORT] [DATA_DIR]
# berth's batch binding writes more than etcd's default 128 ops per txn: --max-txn-ops.
# No --auto-compaction: berth-apiserver compacts etcd itself (--compaction-interval,
# --compaction-retention; one apiserver at a time), keeping 5 minutes of history.
set -euo pipefail
port=${1:-2379}
dir=${2:-./.berth/etcd}
peer=$((port + 1))
exec etcd --name default --data-dir "$dir" \
  --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
  --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
  --initial-cluster "default=http://127.0.0.1:$peer" --max-txn-ops 10000
