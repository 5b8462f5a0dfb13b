#!/usr/bin/env bash
# Builds the libFuzzer targets in native/fuzz/ with ASan + UBSan against the system's libcrypto
# and runs each for a fixed time on a corpus seeded from test/fixtures/fuzz/<target>/.
# Usage: bash native/fuzz/run.sh [SECONDS]   (per target, default 30; from anywhere)
# Exits 1 if any target crashed (inputs copied to test/fixtures/fuzz/<target>/crashes/), 2 if
# the toolchain is missing. The corpus in build/fuzz-corpus/<target> grows across runs.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
seconds="${1:-30}"
cxx="${CXX:-clang++}"
build="$root/build/fuzz"
corpus_root="$root/build/fuzz-corpus"
fixtures="$root/test/fixtures/fuzz"

# target name → source file and the longest input worth trying (token_open: 1 + 255 AAD bytes
# + a little over kMaxTokenChars = 512 characters; client_hello: the post-quantum seed in
# 7-byte records is ~3 KiB, and 12 KiB leaves room for one-byte records).
targets=(token_open hmac_verify client_hello)
declare -A max_len=([token_open]=800 [hmac_verify]=1024 [client_hello]=12288)

if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "run.sh: SECONDS must be a positive integer, got '$seconds'" >&2
  exit 2
fi

mkdir -p "$build"
probe="$build/probe.cc"
printf '#include <cstdint>\n#include <cstddef>\n#include <openssl/evp.h>\nextern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n' >"$probe"
if ! command -v "$cxx" >/dev/null 2>&1 ||
  ! "$cxx" -std=c++20 -fsanitize=fuzzer,address,undefined "$probe" -lcrypto -o "$build/probe" \
    >"$build/probe.log" 2>&1; then
  echo "run.sh: need clang with libFuzzer and the OpenSSL headers ($cxx failed; see $build/probe.log):" >&2
  echo "  apt-get update && apt-get install -y clang libclang-rt-14-dev libssl-dev" >&2
  exit 2
fi

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

failed=()
for target in "${targets[@]}"; do
  bin="$build/${target}_fuzz"
  echo "== $target: building"
  "$cxx" -std=c++20 -g -O1 -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -Wall -Wextra -Werror \
    -I"$root/native/include" \
    "$root/native/fuzz/${target}_fuzz.cc" "$root/native/src/token.cc" "$root/native/src/hmac.cc" \
    "$root/native/src/client_hello.cc" \
    -lcrypto -o "$bin"

  corpus="$corpus_root/$target"
  artifacts="$build/artifacts/$target"
  rm -rf "$artifacts"
  mkdir -p "$corpus" "$artifacts"
  # Seeds only: crashes/ holds unreviewed finds that should be promoted by hand.
  if [[ -d "$fixtures/$target" ]]; then
    find "$fixtures/$target" -maxdepth 1 -type f -exec cp -f {} "$corpus/" \;
  fi

  echo "== $target: fuzzing for ${seconds}s (log: $build/$target.log)"
  status=0
  "$bin" -max_total_time="$seconds" -timeout=5 -max_len="${max_len[$target]}" \
    -use_value_profile=1 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$corpus" >"$build/$target.log" 2>&1 || status=$?
  grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb' \
    "$build/$target.log" || true

  shopt -s nullglob
  finds=("$artifacts"/crash-* "$artifacts"/leak-* "$artifacts"/timeout-* "$artifacts"/oom-* "$artifacts"/slow-unit-*)
  shopt -u nullglob
  if ((status != 0 || ${#finds[@]} > 0)); then
    failed+=("$target")
    mkdir -p "$fixtures/$target/crashes"
    for f in "${finds[@]}"; do cp -f "$f" "$fixtures/$target/crashes/"; done
    echo "!! $target failed (exit $status). Report and stack: $build/$target.log" >&2
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*invariant failed)' "$build/$target.log" >&2 || true
    for f in "${finds[@]}"; do
      echo "   input: test/fixtures/fuzz/$target/crashes/$(basename "$f")" >&2
      echo "   replay: $bin $fixtures/$target/crashes/$(basename "$f")" >&2
    done
    echo "   Fix the bug, then move each input up to test/fixtures/fuzz/$target/ (every run" >&2
    echo "   replays it) and add it as a regression case in native/test/native_test.cc." >&2
  fi
done

if ((${#failed[@]} > 0)); then
  echo "run.sh: crashes in: ${failed[*]}" >&2
  exit 1
fi
echo "run.sh: no crashes in ${targets[*]} (${seconds}s each)"
