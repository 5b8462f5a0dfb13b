// libFuzzer target for HMAC-SHA256 sign/verify (tether/hmac.h): both the one-shot functions and
// the reusable Sha256Hmac, checked against HMAC written out from RFC 2104 over plain SHA-256.
// Build and run: bash native/fuzz/run.sh [SECONDS]. Seeds: test/fixtures/fuzz/hmac_verify/.
//
// Input layout (seeds are written by native/fuzz/gen-seeds.mjs in the same layout):
//
//   0        1        2            2+K              2+K+M
//   +--------+--------+------------+----------------+------------------------------+
//   | K      | M      |  key (K)   | candidate mac  |  data (rest of the input)    |
//   | 0..255 | 0..255 |            |  (M bytes)     |                              |
//   +--------+--------+------------+----------------+------------------------------+
//
//   K and M larger than what follows are clamped. Keys over 64 bytes are hashed first by HMAC,
//   so K up to 255 covers both key paths; M != 32 must always be refused.
#include <openssl/sha.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "fuzz_check.h"
#include "tether/hmac.h"

namespace {

namespace hmac = tether::hmac;
using Bytes = std::vector<uint8_t>;

constexpr size_t kMac = hmac::kSha256Size;

// One per process, reused across inputs like the addon's per-thread instance, so a key or
// state left behind by one input would show up as a wrong answer on the next.
hmac::Sha256Hmac* g_hmac = nullptr;

// Heap copy of exactly n bytes, or null for n == 0 (the API allows null with length 0).
struct Exact {
  std::unique_ptr<uint8_t[]> buf;
  size_t len;
  Exact(const uint8_t* p, size_t n) : buf(n == 0 ? nullptr : new uint8_t[n]), len(n) {
    if (n > 0) std::memcpy(buf.get(), p, n);
  }
  const uint8_t* get() const { return buf.get(); }
};

// RFC 2104: H((K0 ^ opad) || H((K0 ^ ipad) || data)), K0 = key (hashed if over 64 bytes),
// zero-padded to the 64-byte block.
void ReferenceHmac(const uint8_t* key, size_t key_len, const uint8_t* data, size_t data_len,
                   uint8_t out[kMac]) {
  constexpr size_t kBlock = 64;
  uint8_t k0[kBlock] = {};
  if (key_len > kBlock) {
    SHA256(key, key_len, k0);
  } else if (key_len > 0) {
    std::memcpy(k0, key, key_len);
  }
  Bytes inner(kBlock);
  for (size_t i = 0; i < kBlock; ++i) inner[i] = k0[i] ^ 0x36;
  if (data_len > 0) inner.insert(inner.end(), data, data + data_len);
  uint8_t inner_hash[kMac];
  SHA256(inner.data(), inner.size(), inner_hash);
  uint8_t outer[kBlock + kMac];
  for (size_t i = 0; i < kBlock; ++i) outer[i] = k0[i] ^ 0x5c;
  std::memcpy(outer + kBlock, inner_hash, kMac);
  SHA256(outer, sizeof(outer), out);
}

// Both verify paths must give the same, expected answer.
void CheckVerify(const Exact& key, const Exact& data, const uint8_t* mac, size_t mac_len,
                 bool expected) {
  FUZZ_CHECK(hmac::VerifySha256(key.get(), key.len, data.get(), data.len, mac, mac_len) ==
             expected);
  FUZZ_CHECK(g_hmac->Verify(key.get(), key.len, data.get(), data.len, mac, mac_len) == expected);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  g_hmac = new hmac::Sha256Hmac();  // lives for the whole run; reachable, so not a leak
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* input, size_t size) {
  if (size < 2) return 0;
  size_t rest = size - 2;
  const size_t key_len = input[0] < rest ? input[0] : rest;
  rest -= key_len;
  const size_t mac_len = input[1] < rest ? input[1] : rest;
  rest -= mac_len;
  const Exact key(input + 2, key_len);
  const Exact candidate(input + 2 + key_len, mac_len);
  const Exact data(input + 2 + key_len + mac_len, rest);

  uint8_t expected[kMac];
  ReferenceHmac(key.get(), key.len, data.get(), data.len, expected);

  // Sign: one-shot and reusable agree with the reference, with null or non-null empty inputs.
  uint8_t one_shot[kMac];
  uint8_t reused[kMac];
  FUZZ_CHECK(hmac::Sha256(key.get(), key.len, data.get(), data.len, one_shot) == hmac::Status::kOk);
  FUZZ_CHECK(g_hmac->Sign(key.get(), key.len, data.get(), data.len, reused) == hmac::Status::kOk);
  FUZZ_CHECK(std::memcmp(one_shot, expected, kMac) == 0);
  FUZZ_CHECK(std::memcmp(reused, expected, kMac) == 0);
  const uint8_t some_byte = 0x42;
  if (key.len == 0) {  // a non-null pointer with length 0 is the same empty key
    FUZZ_CHECK(hmac::Sha256(&some_byte, 0, data.get(), data.len, one_shot) == hmac::Status::kOk);
    FUZZ_CHECK(g_hmac->Sign(&some_byte, 0, data.get(), data.len, reused) == hmac::Status::kOk);
    FUZZ_CHECK(std::memcmp(one_shot, expected, kMac) == 0);
    FUZZ_CHECK(std::memcmp(reused, expected, kMac) == 0);
  }

  // The candidate from the input: accepted only if it is exactly the right 32 bytes.
  CheckVerify(key, data, candidate.get(), candidate.len,
              candidate.len == kMac && std::memcmp(candidate.get(), expected, kMac) == 0);

  // verify(sign(x)) holds; the mac is an exact 32-byte heap copy, so a longer read is caught.
  const Exact good(expected, kMac);
  CheckVerify(key, data, good.get(), kMac, true);

  // A mac differing in any one byte, by an input-derived non-zero delta, is refused.
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < size; ++i) h = (h ^ input[i]) * 16777619u;
  for (size_t i = 0; i < kMac; ++i) {
    Exact bad(expected, kMac);
    bad.buf[i] ^= static_cast<uint8_t>(1 + (h + i) % 255);
    CheckVerify(key, data, bad.get(), kMac, false);
  }

  // Right prefix, wrong length: truncated, extended, empty and null are all refused.
  const Exact truncated(expected, kMac - 1);
  CheckVerify(key, data, truncated.get(), kMac - 1, false);
  uint8_t longer[kMac + 1];
  std::memcpy(longer, expected, kMac);
  longer[kMac] = static_cast<uint8_t>(h);
  const Exact extended(longer, kMac + 1);
  CheckVerify(key, data, extended.get(), kMac + 1, false);
  CheckVerify(key, data, nullptr, 0, false);
  CheckVerify(key, data, nullptr, kMac, false);
  return 0;
}
