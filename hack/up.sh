#!/usr/bin/env bash
# `npm run up`: installs what is missing, then runs `berth up` (apiserver on the embedded
# store, controllers and an agent on the local Docker, in one process).
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/ensure-deps.sh
exec node cmd/berth/bin.mjs up "$@"
