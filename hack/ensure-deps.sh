#!/usr/bin/env bash
# Installs what berth and its tests need on a fresh Debian machine, and nothing that is
# already there: Debian packages (etcd, dockerd, a static busybox for the local test image,
# iproute2; kubectl's fallback; haproxy (berth-lb's data plane, and the multi-host tests), iptables, openssl and curl for the multi-host tests; strace for a durability test; chromium for the web console's browser tests), the npm packages of package-lock.json and the web console's bundle.
# Idempotent and quiet when everything is present. Needs root for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
# busybox-static ships /bin/busybox linked statically; the dynamic one is no use in an image
if ! { [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; }; then missing+=(busybox-static); fi
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
# the multi-host tests: HAProxy in front of the apiservers, nsenter (util-linux) and iptables in the host namespaces
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
command -v nsenter >/dev/null 2>&1 || missing+=(util-linux)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# the fault suite: an agent's introspection API read inside its host's namespace, ss -K to cut connections, unshare for a host's own hostname
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v ss >/dev/null 2>&1 || missing+=(iproute2)
command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
# the embedded store's durability test traces its fsyncs
command -v strace >/dev/null 2>&1 || missing+=(strace)
# the web console's browser tests: Debian's Chromium, driven by playwright-core (no browser is ever downloaded)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# the secrets test pulls from a private registry with repositoryCredentials (htpasswd auth)
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || missing+=(apache2-utils)

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "berth: missing Debian packages: ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "berth: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm packages: install when node_modules is absent or older than the lock file
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "berth: installing npm packages (npm ci)" >&2
  # better-sqlite3 compiles from source when its prebuilt binary cannot be fetched: against the
  # headers of Debian's nodejs when they are there, so node-gyp need not download them either
  if [ -z "${npm_config_nodedir:-}" ] && [ -f /usr/include/node/node.h ]; then export npm_config_nodedir=/usr; fi
  npm ci --no-audit --no-fund --loglevel=error >&2
fi

# the web console's bundle (pkg/console/dist), rebuilt only when its sources changed
node --import tsx hack/build-console.ts 2>/dev/null || echo "berth: could not build the web console bundle (the apiserver builds it on first use)" >&2
# the binaries' bundles (dist/, esbuild): rebuilt when missing or older than any source they are
# built from (hack/dist.mjs decides, with one stat per source file), so that `npx berth`,
# `npm run up`, the tests and the systemd units start on plain node
node hack/build.mjs --if-stale
