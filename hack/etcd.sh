#!/usr/bin/env bash
# Runs one etcd for development in the foreground: hack/etcd.sh [PORT] [DATA_DIR]
# berth works within etcd's default 128 ops per txn; with --max-txn-ops 10000 here, give
# berth-apiserver --max-txn-ops 10000 too and large binding calls take fewer txns.
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
