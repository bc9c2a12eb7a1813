#!/usr/bin/env bash
# `npm test`: installs what is missing, then runs the suite (the longer suites have scripts of
# their own: test:lb, test:faults, test:multi, test:fuzz; .mocharc.cjs says which). The tests start what they need
# themselves (etcd, an apiserver, a dockerd of their own when none is reachable, the multi-host
# topology in network namespaces) on free loopback ports and temporary directories, and stop it
# afterwards.
#
# With no arguments the suite runs in two lanes at once: the multi-host tests (test/hosts: a
# topology of network namespaces with its own etcd cluster, dockerds, apiservers and HAProxy;
# mostly waiting out heartbeat timeouts, leases and partitions; and the Terraform test, which
# needs no Docker and mostly waits on terraform) beside everything else, which shares nothing
# with them. The hosts lane's output follows the other's; the last line counts
# both. With arguments it is plain mocha (`npm test -- test/store/store.test.ts`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/ensure-deps.sh
if [ "$#" -gt 0 ]; then exec npx mocha "$@"; fi

out=$(mktemp -d)
trap 'rm -rf "$out"; [ -n "${hosts_pid:-}" ] && kill "$hosts_pid" 2>/dev/null || true' EXIT
BERTH_TEST_LANE=hosts npx mocha >"$out/hosts.log" 2>&1 &
hosts_pid=$!
rest=0
BERTH_TEST_LANE=rest npx mocha 2>&1 | tee "$out/rest.log" || rest=$?
hosts=0
wait "$hosts_pid" || hosts=$?
hosts_pid=
echo
echo "==== the multi-host lane (test/hosts) ===="
cat "$out/hosts.log"
# the closing line CI reads: both lanes' counts
node -e '
  const fs = require("fs");
  const sum = [0, 0, 0];
  for (const f of process.argv.slice(1)) {
    const m = [...fs.readFileSync(f, "utf8").matchAll(/^(\d+) passed, (\d+) failed, (\d+) skipped$/gm)].pop();
    if (!m) { console.log(`no result line in ${f.endsWith("hosts.log") ? "the hosts lane" : "the other lane"}: it did not finish`); sum[1]++; continue; }
    for (let i = 0; i < 3; i++) sum[i] += Number(m[i + 1]);
  }
  console.log(`\n${sum[0]} passed, ${sum[1]} failed, ${sum[2]} skipped`);
' "$out/rest.log" "$out/hosts.log"
[ "$rest" = 0 ] && [ "$hosts" = 0 ]
