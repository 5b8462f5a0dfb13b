#!/usr/bin/env bash
# Builds native/test/native_test.cc with the token, HMAC, AES-GCM and ClientHello cores (and the
# passthrough's listening socket) under ASan + UBSan,
# against the system's libcrypto (apt-get install libssl-dev), and runs it on the known-answer
# vectors and the captured ClientHellos.
# Usage: bash native/sanitize.sh   (from anywhere; exits non-zero on any failure)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/build/sanitize"
cxx="${CXX:-g++}"

if ! printf '#include <openssl/evp.h>\n' | "$cxx" -x c++ -E - >/dev/null 2>&1; then
  echo "sanitize.sh: OpenSSL headers not found: apt-get install -y libssl-dev" >&2
  exit 2
fi

mkdir -p "$out"
"$cxx" -std=c++20 -O1 -g -fno-omit-frame-pointer \
  -fsanitize=address,undefined -fno-sanitize-recover=all \
  -Wall -Wextra -Werror \
  -I"$root/native/include" \
  "$root/native/test/native_test.cc" "$root/native/src/token.cc" "$root/native/src/hmac.cc" \
  "$root/native/src/client_hello.cc" "$root/native/src/aead.cc" "$root/native/src/listen_socket.cc" \
  -lcrypto -o "$out/native_test"

ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1" \
UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
  "$out/native_test" "$root/test/fixtures/token-vectors.txt" "$root/test/fixtures/client-hello"
