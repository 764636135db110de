#!/usr/bin/env bash
# TigerBeetle for the build and the tests. Source it, then:
#   tigerbeetle_env            Zig 0.14.1 from PyPI; exports ZIG_PATH (the client wrapper), TB_*.
#   tigerbeetle_build_bg       builds the host's client library, then the server, into the cache
#                              outside the clone (keyed by version), in the background.
#   tigerbeetle_start          waits for that build, formats and starts a 1-replica and a 3-replica
#                              cluster on loopback, exports their addresses.
#   tigerbeetle_stop           stops the clusters and removes their data files.
# (`. .ci/tigerbeetle.sh start` does all of it and stops the clusters when the shell exits.)
#
# The server must match the client exactly (a newer client is evicted by an older cluster): the
# `tigerbeetle-unofficial =0.14.28+0.16.78` client is built from the source bundled in
# `tigerbeetle-unofficial-sys`, and so is this server, with Zig 0.14.1 from PyPI. Cargo's build
# of the client goes through `.ci/zig-client.sh`, which answers it from the same cache.
TB_VERSION=0.16.78
TB_SYS_CRATE="tigerbeetle-unofficial-sys-0.14.28+${TB_VERSION}"
TB_COMMIT=c3d9b09dc88e94dde9ac915c6e94a4c650332080
TB_CACHE="${CITYCARD_CACHE:-$HOME/.cache/citycard}/tigerbeetle-${TB_VERSION}"
TB_BIN="${TB_CACHE}/tigerbeetle"
TB_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TB_BUILD_PID=""

tigerbeetle_env() {
  if ! python3 -c 'import ziglang' 2>/dev/null; then
    if ! python3 -m pip --version >/dev/null 2>&1; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null
    fi
    # Debian marks its Python as externally managed (PEP 668); Zig is a self-contained wheel.
    python3 -m pip install --quiet ziglang==0.14.1 2>/dev/null \
      || python3 -m pip install --quiet --break-system-packages ziglang==0.14.1
  fi
  TB_REAL_ZIG="$(python3 -c 'import ziglang, os; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))')"
  # bindgen needs libclang.
  if [ -z "${LIBCLANG_PATH:-}" ] && ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1; then
    echo "== installing libclang-dev from Debian's packages (bindgen for the TigerBeetle client)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libclang-dev >/dev/null \
      || { echo "libclang is missing: install libclang-dev for the TigerBeetle client's bindgen" >&2; return 1; }
  fi
  mkdir -p "${TB_CACHE}"
  export TB_REAL_ZIG TB_CACHE ZIG_PATH="${TB_SCRIPTS}/zig-client.sh"
  # The client in release mode for every profile: one cached library serves check, test and bench.
  export TB_CLIENT_DEBUG=false
}

# A private copy of the bundled TigerBeetle source (the registry's copy stays read-only).
tigerbeetle_source() {
  cargo fetch --quiet || return 1
  local src
  src="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"${TB_SYS_CRATE}"/tigerbeetle 2>/dev/null | head -1)"
  if [ -z "${src}" ]; then echo "no ${TB_SYS_CRATE} source after cargo fetch" >&2; return 1; fi
  local work
  work="$(mktemp -d "${TMPDIR:-/tmp}/citycard-tb-src.XXXXXX")"
  cp -r "${src}/." "${work}/"
  echo "${work}"
}

tigerbeetle_host() {
  case "$(uname -m)" in
    x86_64) echo x86_64-linux ;;
    aarch64) echo aarch64-linux ;;
    *) echo "no TigerBeetle client for $(uname -m)" >&2; return 1 ;;
  esac
}

# Both binaries into the cache, if missing: the client first (cargo waits for it), then the server.
tigerbeetle_build() {
  local work host
  host="$(tigerbeetle_host)" || return 1
  if [ -f "${TB_CACHE}/client-release/${host}-gnu.2.27/libtb_client.a" ] && [ -x "${TB_BIN}" ]; then
    return 0
  fi
  work="$(tigerbeetle_source)" || return 1
  local started=${SECONDS}
  (cd "${work}" && "${ZIG_PATH}" build clients:c -Drelease -Dtarget="${host}" \
      -Dconfig-release="${TB_VERSION}" -Dconfig-release-client-min="${TB_VERSION}" \
      -Dgit-commit="${TB_COMMIT}") || { rm -rf "${work}"; return 1; }
  echo "== TigerBeetle ${TB_VERSION} client library ready ($((SECONDS - started)) s)"
  if [ ! -x "${TB_BIN}" ]; then
    started=${SECONDS}
    (cd "${work}" && "${TB_REAL_ZIG}" build -Drelease \
        -Dconfig-release="${TB_VERSION}" -Dconfig-release-client-min="${TB_VERSION}" \
        -Dgit-commit="${TB_COMMIT}") || { rm -rf "${work}"; return 1; }
    cp "${work}/tigerbeetle" "${TB_BIN}.tmp" && mv "${TB_BIN}.tmp" "${TB_BIN}"
    echo "== TigerBeetle ${TB_VERSION} server built ($((SECONDS - started)) s)"
  fi
  rm -rf "${work}"
}

tigerbeetle_build_bg() {
  tigerbeetle_env || return 1
  tigerbeetle_build &
  TB_BUILD_PID=$!
}

# A free loopback port: the kernel picks one, we release it and hand it to the replica.
tigerbeetle_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

TB_DATA=""
# `--development` allows data files without Direct IO, but also shrinks a request to 32 KiB
# (255 transfers); the card system and the benchmark send batches of 8,190, so ask for 1 MiB.
TB_START_FLAGS="--development --experimental --limit-request=1MiB"

# Formats and starts one cluster: $1 = replica count, $2 = cluster id. Sets TB_ADDRESSES.
# Each replica's pid is in ${TB_DATA}/pid_<cluster>_<replica> (the kill -9 test restarts one).
tigerbeetle_cluster() {
  local count=$1 cluster=$2 r port
  TB_ADDRESSES=""
  for ((r = 0; r < count; r++)); do
    port="$(tigerbeetle_port)"
    TB_ADDRESSES="${TB_ADDRESSES:+${TB_ADDRESSES},}127.0.0.1:${port}"
  done
  echo "${TB_ADDRESSES}" >"${TB_DATA}/addresses_${cluster}"
  for ((r = 0; r < count; r++)); do
    local file="${TB_DATA}/${cluster}_${r}.tigerbeetle"
    "${TB_BIN}" format --cluster="${cluster}" --replica="${r}" --replica-count="${count}" \
      --development "${file}" >"${TB_DATA}/format_${cluster}_${r}.log" 2>&1 || return 1
    # shellcheck disable=SC2086
    "${TB_BIN}" start --addresses="${TB_ADDRESSES}" ${TB_START_FLAGS} "${file}" \
      >"${TB_DATA}/replica_${cluster}_${r}.log" 2>&1 &
    echo "$!" >"${TB_DATA}/pid_${cluster}_${r}"
  done
}

tigerbeetle_stop() {
  local f
  # A build still running when the job fails is abandoned (its cache entries are written last).
  if [ -n "${TB_BUILD_PID}" ]; then kill "${TB_BUILD_PID}" 2>/dev/null; TB_BUILD_PID=""; fi
  if [ -n "${TB_DATA}" ]; then
    # Tests may have restarted a replica: its current pid is in the file.
    # Wait for these replicas only (a bare `wait` would also wait for the
    # other services this job started, NATS for one, and never return).
    local pids=() p i
    for f in "${TB_DATA}"/pid_*; do [ -f "${f}" ] && pids+=("$(cat "${f}")"); done
    for p in "${pids[@]}"; do kill "${p}" 2>/dev/null || true; done
    for p in "${pids[@]}"; do
      for i in $(seq 100); do kill -0 "${p}" 2>/dev/null || break; sleep 0.1; done
      wait "${p}" 2>/dev/null || true
    done
    rm -rf "${TB_DATA}"
    TB_DATA=""
  fi
}

tigerbeetle_start() {
  if [ -n "${TB_BUILD_PID}" ]; then
    wait "${TB_BUILD_PID}" || { echo "the TigerBeetle build failed" >&2; return 1; }
    TB_BUILD_PID=""
  else
    tigerbeetle_env && tigerbeetle_build || return 1
  fi
  TB_DATA="$(mktemp -d "${TMPDIR:-/tmp}/citycard-tb.XXXXXX")"
  tigerbeetle_cluster 1 0 || return 1
  CITYCARD_TEST_TIGERBEETLE="${TB_ADDRESSES}"
  tigerbeetle_cluster 3 1 || return 1
  CITYCARD_TEST_TIGERBEETLE_3="${TB_ADDRESSES}"
  # Replicas' data directory and binary, for the kill -9 test (it restarts a replica itself).
  export CITYCARD_TEST_TIGERBEETLE CITYCARD_TEST_TIGERBEETLE_3
  export CITYCARD_TEST_TIGERBEETLE_DATA="${TB_DATA}" CITYCARD_TEST_TIGERBEETLE_BIN="${TB_BIN}"
  export CITYCARD_TEST_TIGERBEETLE_FLAGS="${TB_START_FLAGS}"
  echo "== TigerBeetle: 1 replica at ${CITYCARD_TEST_TIGERBEETLE}, 3 replicas at ${CITYCARD_TEST_TIGERBEETLE_3}"
}

case "${1:-}" in
  start) tigerbeetle_start && trap tigerbeetle_stop EXIT ;;
  build) tigerbeetle_env && tigerbeetle_build ;;
  env) tigerbeetle_env ;;
esac
