#!/usr/bin/env bash
# Stands in for Zig in `tigerbeetle-unofficial-sys`'s build script (cargo runs it through
# `ZIG_PATH`, which `.ci/tigerbeetle.sh` points here). That build script has no switch for a
# prebuilt client library: it always runs `zig build clients:c` in a mirror of the bundled
# TigerBeetle source, and that step compiles the client for all seven platforms, shared and
# static (≈8 min on 2 cores). This wrapper answers the step from a cache keyed by version, mode
# and platform, filled once per machine with only the host's static library (≈1–2 min); every
# other Zig command goes to the real Zig (`TB_REAL_ZIG`).
set -euo pipefail

real_zig="${TB_REAL_ZIG:?TB_REAL_ZIG is unset: source .ci/tigerbeetle.sh first}"
if [ "${1:-}" != build ] || [ "${2:-}" != clients:c ]; then exec "${real_zig}" "$@"; fi

mode=debug target=""
for arg in "$@"; do
  case "${arg}" in
    -Drelease) mode=release ;;
    -Dtarget=*) target="${arg#-Dtarget=}" ;;
  esac
done
case "${target}" in
  x86_64-linux) platform=x86_64-linux-gnu.2.27 ;;
  aarch64-linux) platform=aarch64-linux-gnu.2.27 ;;
  *) platform="${target}" ;;
esac

cache="${TB_CACHE:?TB_CACHE is unset: source .ci/tigerbeetle.sh first}/client-${mode}/${platform}"
lib_dir="src/clients/c/lib/${platform}"

deliver() {
  mkdir -p "${lib_dir}"
  cp "${cache}/libtb_client.a" "${lib_dir}/libtb_client.a"
}

mkdir -p "$(dirname "${cache}")"
# One builder at a time per machine; the others wait here and then take the cached library.
exec 9>"$(dirname "${cache}")/.lock"
flock 9
if [ -f "${cache}/libtb_client.a" ]; then deliver; exit 0; fi

# Build only this platform's static library: a patched copy of build.zig replaces the mirror's
# link to the bundled one.
python3 - "${platform}" <<'EOF'
import os, sys
platform = sys.argv[1]
src = open("build.zig").read()
start = src.index("fn build_c_client(")
end = src.index("\nfn ", start + 1)
body = src[start:end]
patched = body.replace("for (Platform.all) |platform|", 'for ([_]Platform{.@"%s"}) |platform|' % platform, 1)
patched = patched.replace("const shared_lib = b.addLibrary(", "_ = b.addLibrary(", 1)
patched = patched.replace("{ shared_lib, static_lib }", "{static_lib}", 1)
if patched.count(platform) != 1 or "shared_lib" in patched:
    sys.exit("build.zig of this TigerBeetle version is not the one this wrapper knows")
os.remove("build.zig")
open("build.zig", "w").write(src[:start] + patched + src[end:])
EOF
"${real_zig}" "$@"
mkdir -p "${cache}.tmp"
cp "${lib_dir}/libtb_client.a" "${cache}.tmp/"
rm -rf "${cache}"
mv "${cache}.tmp" "${cache}"
