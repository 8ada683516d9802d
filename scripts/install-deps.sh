#!/usr/bin/env bash
# Installs what the test-suite needs: Debian packages for the real servers the
# tests launch (only those missing), then the npm workspace dependencies.
#
#   bash scripts/install-deps.sh
#   EXTRA_APT_PACKAGES="python3-oslo.messaging chromium" bash scripts/install-deps.sh
#
# The system services are never started: the tests run their own private
# servers (test/src/harness/launcher.ts).
set -euo pipefail

# Debian packages required by the tests. Add new ones here (or, ad hoc, via
# EXTRA_APT_PACKAGES, a space-separated list).
APT_PACKAGES=(
  rabbitmq-server
  redis-server
  python3-oslo.messaging         # interop tests of the rabbit driver against real Python oslo.messaging
  openssl                        # certificates for the rabbit driver's TLS test
  chromium                       # renders the bench HTML report headless (test/src/bench-report.test.ts)
  libqpid-proton11-dev-examples  # the Qpid Proton example brokers the AMQP 1.0 tests start (harness/proton-broker.ts)
  python3-qpid-proton            # runs the Python example broker; with pyngus, oslo.messaging's amqp1 driver
  python3-pyngus                 # oslo.messaging's amqp1 driver, for the Python interop peer over amqp://
  libqpid-proton-cpp12-dev       # headers and library the C++ example broker is compiled against
  g++                            # compiles the C++ example broker (once per source, cached under the temp dir)
  etcd-server                    # etcd 3.4 for the etcd:// name service tests (harness/etcd.ts starts private nodes/clusters)
  iproute2                       # `ip`: loopback multicast inside the network namespace the multicast tests make
  util-linux                     # `unshare -n`: that namespace (test/src/zmq-multicast.test.ts)
)
read -r -a _extra_apt_packages <<<"${EXTRA_APT_PACKAGES:-}"
APT_PACKAGES+=("${_extra_apt_packages[@]}")

cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf 'install-deps: %s\n' "$*"; }
die() { printf 'install-deps: error: %s\n' "$*" >&2; exit 1; }

# --- Debian packages ---------------------------------------------------------
if ! command -v dpkg-query >/dev/null 2>&1; then
  log "not a Debian-based system (no dpkg-query); make sure these are installed: ${APT_PACKAGES[*]}"
else
  missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed'; then
      missing+=("$pkg")
    fi
  done

  if ((${#missing[@]} == 0)); then
    log "apt packages already installed: ${APT_PACKAGES[*]}"
  else
    SUDO=()
    if [[ $(id -u) -ne 0 ]]; then
      command -v sudo >/dev/null 2>&1 ||
        die "need root to install ${missing[*]} (run as root, install sudo, or install them yourself)"
      SUDO=(sudo)
    fi

    # Keep apt from starting rabbitmq-server/redis-server as system services.
    policy=/usr/sbin/policy-rc.d
    if [[ ! -e $policy ]]; then
      printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
      "${SUDO[@]}" chmod 0755 "$policy"
      # shellcheck disable=SC2064  # expand now: SUDO/policy are fixed
      trap "${SUDO[*]} rm -f '$policy'" EXIT
    fi

    log "apt-get update"
    "${SUDO[@]}" apt-get update -qq
    log "apt-get install ${missing[*]}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi

# --- npm workspace dependencies ----------------------------------------------
if [[ -f package-lock.json ]]; then
  log "npm ci"
  npm ci --no-audit --no-fund
else
  log "npm install (no package-lock.json)"
  npm install --no-audit --no-fund
fi
