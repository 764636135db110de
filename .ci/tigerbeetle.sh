#!/usr/bin/env bash
# TigerBeetle for the tests: build (or reuse) the 0.16.78 server, format and start a 1-replica and a
# 3-replica cluster on loopback, export their addresses. Source it (`. .ci/tigerbeetle.sh start`);
# the clusters stop when the sourcing shell exits (trap) or on `tigerbeetle_stop`.
#
# The server must match the client exactly (a newer client is evicted by an older cluster): the
# `tigerbeetle-unofficial =0.14.28+0.16.78` client is built from the source bundled in
# `tigerbeetle-unofficial-sys`, and so is this server, with Zig 0.14.1 from PyPI.
TB_VERSION=0.16.78
TB_SYS_CRATE="tigerbeetle-unofficial-sys-0.14.28+${TB_VERSION}"
TB_COMMIT=c3d9b09dc88e94dde9ac915c6e94a4c650332080
TB_CACHE="${CITYCARD_CACHE:-$HOME/.cache/citycard}/tigerbeetle-${TB_VERSION}"
TB_BIN="${TB_CACHE}/tigerbeetle"

# Zig 0.14.1 from PyPI; cargo's build of the client finds it through ZIG_PATH.
tigerbeetle_zig() {
  if ! python3 -c 'import ziglang' 2>/dev/null; then
    python3 -m pip install --quiet ziglang==0.14.1
  fi
  ZIG_PATH="$(python3 -c 'import ziglang, os; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))')"
  export ZIG_PATH
  # bindgen needs libclang.
  if [ -z "${LIBCLANG_PATH:-}" ] && ! ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1; then
    echo "libclang is missing: install libclang-dev (Debian) for the TigerBeetle client's bindgen" >&2
    return 1
  fi
}

tigerbeetle_build() {
  tigerbeetle_zig || return 1
  if [ -x "${TB_BIN}" ]; then return 0; fi
  cargo fetch --quiet
  local src
  src="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"${TB_SYS_CRATE}"/tigerbeetle | head -1)"
  if [ -z "${src}" ]; then echo "no ${TB_SYS_CRATE} source after cargo fetch" >&2; return 1; fi
  local work
  work="$(mktemp -d)"
  cp -r "${src}/." "${work}/"
  echo "== building the TigerBeetle ${TB_VERSION} server (≈200 s on 2 cores, once per cache)"
  (cd "${work}" && "${ZIG_PATH}" build -Drelease \
      -Dconfig-release="${TB_VERSION}" -Dconfig-release-client-min="${TB_VERSION}" \
      -Dgit-commit="${TB_COMMIT}") || { rm -rf "${work}"; return 1; }
  mkdir -p "${TB_CACHE}"
  cp "${work}/tigerbeetle" "${TB_BIN}.tmp" && mv "${TB_BIN}.tmp" "${TB_BIN}"
  rm -rf "${work}"
}

# A free loopback port: the kernel picks one, we release it and hand it to the replica.
tigerbeetle_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

TB_PIDS=()
TB_DATA=""

# Starts one cluster: $1 = replica count, $2 = cluster id. Prints the addresses.
tigerbeetle_cluster() {
  local count=$1 cluster=$2 addresses="" r port
  for ((r = 0; r < count; r++)); do
    port="$(tigerbeetle_port)"
    addresses="${addresses:+${addresses},}127.0.0.1:${port}"
  done
  for ((r = 0; r < count; r++)); do
    local file="${TB_DATA}/${cluster}_${r}.tigerbeetle"
    "${TB_BIN}" format --cluster="${cluster}" --replica="${r}" --replica-count="${count}" \
      --development "${file}" >"${TB_DATA}/format_${cluster}_${r}.log" 2>&1 || return 1
    "${TB_BIN}" start --addresses="${addresses}" --development "${file}" \
      >"${TB_DATA}/replica_${cluster}_${r}.log" 2>&1 &
    TB_PIDS+=("$!")
    echo "$!" >"${TB_DATA}/pid_${cluster}_${r}"
  done
  echo "${addresses}"
}

tigerbeetle_stop() {
  local pid
  for pid in "${TB_PIDS[@]}"; do kill "${pid}" 2>/dev/null || true; done
  for pid in "${TB_PIDS[@]}"; do wait "${pid}" 2>/dev/null || true; done
  TB_PIDS=()
  if [ -n "${TB_DATA}" ]; then rm -rf "${TB_DATA}"; TB_DATA=""; fi
}

tigerbeetle_start() {
  tigerbeetle_build || return 1
  TB_DATA="$(mktemp -d "${TMPDIR:-/tmp}/citycard-tb.XXXXXX")"
  trap tigerbeetle_stop EXIT
  CITYCARD_TEST_TIGERBEETLE="$(tigerbeetle_cluster 1 0)" || return 1
  CITYCARD_TEST_TIGERBEETLE_3="$(tigerbeetle_cluster 3 1)" || return 1
  # Replicas' data directory and binary, for the kill -9 test (it restarts a replica itself).
  export CITYCARD_TEST_TIGERBEETLE CITYCARD_TEST_TIGERBEETLE_3
  export CITYCARD_TEST_TIGERBEETLE_DATA="${TB_DATA}" CITYCARD_TEST_TIGERBEETLE_BIN="${TB_BIN}"
  echo "== TigerBeetle: 1 replica at ${CITYCARD_TEST_TIGERBEETLE}, 3 replicas at ${CITYCARD_TEST_TIGERBEETLE_3}"
}

if [ "${1:-}" = "start" ]; then tigerbeetle_start; fi
if [ "${1:-}" = "build" ]; then tigerbeetle_build; fi
