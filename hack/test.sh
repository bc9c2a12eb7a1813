#!/usr/bin/env bash
# `npm test`: installs what is missing, then runs every test. The tests start what they need
# themselves (etcd, an apiserver, a dockerd of their own when none is reachable) on free
# loopback ports and temporary directories, and stop it afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/ensure-deps.sh
exec npx mocha "$@"
