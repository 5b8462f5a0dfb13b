// libFuzzer target for route token open (tether/token.h) and its strict base64url codec. Every
// outcome is checked against an independent model (a bit-at-a-time decoder and a fresh OpenSSL
// context per token), so a wrong status or a non-canonical accept is a crash, not only a bad read.
// Build and run: bash native/fuzz/run.sh [SECONDS]. Seeds: test/fixtures/fuzz/token_open/.
//
// Input layout (seeds are written by native/fuzz/gen-seeds.mjs in the same layout):
//
//   0            1                 1+L
//   +------------+-----------------+-------------------------------------------+
//   |  L (0..255)|  caller AAD (L) |  token characters (rest of the input)     |
//   +------------+-----------------+-------------------------------------------+
//
//   L larger than what follows is clamped. L = 255 takes the two-call AAD path in the core
//   (header | AAD only fit the joined stack buffer up to 254 bytes of caller AAD).
//
// The ring is the one in test/fixtures/token-vectors.txt: keys 7 (seals), 0 and 255, each
// SHA-256("tether token vector key <id>").
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fuzz_check.h"
#include "tether/token.h"

namespace {

namespace token = tether::token;
using token::OpenStatus;
using token::SealStatus;
using Bytes = std::vector<uint8_t>;

constexpr uint8_t kRingIds[] = {7, 0, 255};
constexpr uint8_t kSealId = 7;
constexpr uint8_t kFill = 0xA5;  // payload_out is pre-filled with this to see what Open wrote

struct State {
  uint8_t keys[token::kKeyIdCount][token::kKeySize] = {};
  bool in_ring[token::kKeyIdCount] = {};
  token::KeyRing ring;                                // 7, 0, 255; seals with 7
  token::KeyRing seal_only[token::kKeyIdCount];       // one ring per id in kRingIds, sealing with it
};
State* g_state = nullptr;

// Heap copy of exactly n bytes (at least 1 allocated): a read one past the end is an ASan report.
template <typename T>
std::unique_ptr<T[]> ExactCopy(const uint8_t* p, size_t n) {
  auto out = std::make_unique<T[]>(n == 0 ? 1 : n);
  if (n > 0) std::memcpy(out.get(), p, n);
  return out;
}

// Independent strict base64url decoder: a 6-bit accumulator, no lookup table, no block loop.
int SextetOf(uint8_t c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

bool ReferenceDecode(const uint8_t* in, size_t len, Bytes* out) {
  out->clear();
  if (len % 4 == 1) return false;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < len; ++i) {
    const int v = SextetOf(in[i]);
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->push_back(static_cast<uint8_t>(acc >> bits));
      acc &= (1u << bits) - 1;
    }
  }
  return acc == 0;  // the 2 or 4 leftover bits of a short last group must be zero
}

// AES-256-GCM open with a brand-new context: the oracle for the core's reused, pre-keyed ones.
bool ReferenceOpen(const uint8_t* key, const Bytes& raw, const uint8_t* aad, size_t aad_len,
                   Bytes* plaintext) {
  const size_t ct_len = raw.size() - token::kOverhead;
  Bytes joined(raw.begin(), raw.begin() + token::kHeaderSize);
  joined.insert(joined.end(), aad, aad + aad_len);
  plaintext->assign(ct_len, 0);
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  FUZZ_CHECK(ctx != nullptr);
  int n = 0;
  bool ok = EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, key, raw.data() + 2) == 1 &&
            EVP_DecryptUpdate(ctx, nullptr, &n, joined.data(), static_cast<int>(joined.size())) == 1;
  FUZZ_CHECK(ok);
  if (ct_len > 0) {
    FUZZ_CHECK(EVP_DecryptUpdate(ctx, plaintext->data(), &n, raw.data() + 14,
                                 static_cast<int>(ct_len)) == 1);
  }
  Bytes tag(raw.end() - token::kTagSize, raw.end());
  FUZZ_CHECK(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, tag.data()) == 1);
  uint8_t tail[16];
  const bool authentic = EVP_DecryptFinal_ex(ctx, tail, &n) == 1;
  EVP_CIPHER_CTX_free(ctx);
  return authentic;
}

struct Opened {
  OpenStatus status;
  int key_id;
  Bytes payload;
};

// Calls the core with exact-size copies and checks what every call must satisfy.
Opened OpenChecked(token::KeyRing& ring, const uint8_t* tok, size_t tok_len, const uint8_t* aad,
                   size_t aad_len) {
  auto tok_copy = ExactCopy<char>(tok, tok_len);
  auto aad_copy = ExactCopy<uint8_t>(aad, aad_len);
  auto out = std::make_unique<uint8_t[]>(token::kMaxPayloadSize);
  std::memset(out.get(), kFill, token::kMaxPayloadSize);
  size_t out_len = 9999;
  int key_id = 9999;
  const OpenStatus st = token::Open(ring, tok_copy.get(), tok_len,
                                    aad_len == 0 ? nullptr : aad_copy.get(), aad_len, out.get(),
                                    &out_len, &key_id);
  FUZZ_CHECK(static_cast<uint8_t>(st) <= static_cast<uint8_t>(OpenStatus::kAuthFailed));
  FUZZ_CHECK(key_id >= -1 && key_id <= 255);
  if (st == OpenStatus::kOk) {
    FUZZ_CHECK(out_len <= token::kMaxPayloadSize);
    FUZZ_CHECK(out_len + token::kOverhead == tok_len * 3 / 4);  // raw length from token length
  } else {
    FUZZ_CHECK(out_len == 0);
    // An unauthenticated token's plaintext never reaches the caller: untouched or cleansed.
    for (size_t i = 0; i < token::kMaxPayloadSize; ++i) {
      FUZZ_CHECK(out[i] == kFill || out[i] == 0);
    }
  }
  if (st == OpenStatus::kMalformed || st == OpenStatus::kBadVersion) FUZZ_CHECK(key_id == -1);
  return Opened{st, key_id, st == OpenStatus::kOk ? Bytes(out.get(), out.get() + out_len) : Bytes()};
}

std::string SealChecked(token::KeyRing& ring, const uint8_t* nonce, const Bytes& payload,
                        const uint8_t* aad, size_t aad_len) {
  const size_t cap = token::Base64UrlLength(token::kOverhead + payload.size());
  auto out = std::make_unique<char[]>(cap);
  auto nonce_copy = ExactCopy<uint8_t>(nonce, token::kNonceSize);
  auto payload_copy = ExactCopy<uint8_t>(payload.data(), payload.size());
  auto aad_copy = ExactCopy<uint8_t>(aad, aad_len);
  const uint8_t* aad_arg = aad_len == 0 ? nullptr : aad_copy.get();
  size_t out_len = 9999;

  // One character short must be refused without a write (the buffer is exactly cap - 1).
  if (cap > 1) {
    auto small = std::make_unique<char[]>(cap - 1);
    FUZZ_CHECK(token::Seal(ring, nonce_copy.get(), payload_copy.get(), payload.size(), aad_arg,
                           aad_len, small.get(), cap - 1, &out_len) == SealStatus::kOutputTooSmall);
    FUZZ_CHECK(out_len == 0);
  }
  const SealStatus st = token::Seal(ring, nonce_copy.get(), payload_copy.get(), payload.size(),
                                    aad_arg, aad_len, out.get(), cap, &out_len);
  FUZZ_CHECK(st == SealStatus::kOk);
  FUZZ_CHECK(out_len == cap);
  return std::string(out.get(), out_len);
}

// The codec on its own: strict decode agrees with the reference, accepts exactly one spelling
// per byte string, honours out_cap, and encode is its inverse.
void CheckBase64(const uint8_t* in, size_t len) {
  Bytes expected;
  const bool ref_ok = ReferenceDecode(in, len, &expected);
  const size_t need = len / 4 * 3 + (len % 4 >= 2 ? len % 4 - 1 : 0);
  auto in_copy = ExactCopy<char>(in, len);

  auto out = std::make_unique<uint8_t[]>(need == 0 ? 1 : need);
  size_t out_len = 9999;
  const bool ok = token::Base64UrlDecode(in_copy.get(), len, out.get(), need, &out_len);
  FUZZ_CHECK(ok == ref_ok);
  if (!ok) {
    FUZZ_CHECK(out_len == 0);
  } else {
    FUZZ_CHECK(out_len == expected.size() && out_len == need);
    FUZZ_CHECK(out_len == 0 || std::memcmp(out.get(), expected.data(), out_len) == 0);
    // Canonical: re-encoding gives back the very same characters.
    const size_t enc_len = token::Base64UrlLength(out_len);
    FUZZ_CHECK(enc_len == len);
    auto enc = std::make_unique<char[]>(enc_len == 0 ? 1 : enc_len);
    FUZZ_CHECK(token::Base64UrlEncode(out.get(), out_len, enc.get(), enc_len) == enc_len);
    FUZZ_CHECK(enc_len == 0 || std::memcmp(enc.get(), in, enc_len) == 0);
    // One byte of room short: refused, nothing written past the (exact) buffer.
    if (need > 0) {
      auto small = std::make_unique<uint8_t[]>(need - 1 == 0 ? 1 : need - 1);
      FUZZ_CHECK(!token::Base64UrlDecode(in_copy.get(), len, small.get(), need - 1, &out_len));
      FUZZ_CHECK(out_len == 0);
    }
  }

  // Arbitrary bytes encode to the alphabet, at the promised length, and decode back.
  const size_t enc_len = token::Base64UrlLength(len);
  auto enc = std::make_unique<char[]>(enc_len == 0 ? 1 : enc_len);
  FUZZ_CHECK(token::Base64UrlEncode(ExactCopy<uint8_t>(in, len).get(), len, enc.get(), enc_len) ==
             enc_len);
  for (size_t i = 0; i < enc_len; ++i) FUZZ_CHECK(SextetOf(static_cast<uint8_t>(enc[i])) >= 0);
  if (enc_len > 0) {
    FUZZ_CHECK(token::Base64UrlEncode(in, len, enc.get(), enc_len - 1) == 0);
  }
  auto back = std::make_unique<uint8_t[]>(len == 0 ? 1 : len);
  FUZZ_CHECK(token::Base64UrlDecode(enc.get(), enc_len, back.get(), len, &out_len));
  FUZZ_CHECK(out_len == len && (len == 0 || std::memcmp(back.get(), in, len) == 0));
}

// Open, against the model of the checks listed in token.h, in their order.
void CheckOpen(State& s, const uint8_t* tok, size_t tok_len, const uint8_t* aad, size_t aad_len) {
  const Opened got = OpenChecked(s.ring, tok, tok_len, aad, aad_len);

  Bytes raw;
  if (tok_len == 0 || tok_len > token::kMaxTokenChars || !ReferenceDecode(tok, tok_len, &raw) ||
      raw.empty()) {
    FUZZ_CHECK(got.status == OpenStatus::kMalformed);
    return;
  }
  if (raw[0] != token::kVersion1) {
    FUZZ_CHECK(got.status == OpenStatus::kBadVersion);
    return;
  }
  if (raw.size() < token::kMinRawSize || raw.size() > token::kMaxRawSize) {
    FUZZ_CHECK(got.status == OpenStatus::kMalformed);
    return;
  }
  FUZZ_CHECK(got.key_id == raw[1]);
  if (!s.in_ring[raw[1]]) {
    FUZZ_CHECK(got.status == OpenStatus::kUnknownKey);
    return;
  }
  Bytes plaintext;
  const bool authentic = ReferenceOpen(s.keys[raw[1]], raw, aad, aad_len, &plaintext);
  FUZZ_CHECK(got.status == (authentic ? OpenStatus::kOk : OpenStatus::kAuthFailed));
  if (!authentic) return;
  FUZZ_CHECK(got.payload == plaintext);

  // Opening again gives the same answer: the reused context kept no state from the last token.
  const Opened again = OpenChecked(s.ring, tok, tok_len, aad, aad_len);
  FUZZ_CHECK(again.status == OpenStatus::kOk && again.payload == got.payload);

  // Canonical: sealing the payload again under the same key and nonce spells the same token.
  const std::string resealed = SealChecked(s.seal_only[raw[1]], raw.data() + 2, got.payload, aad,
                                           aad_len);
  FUZZ_CHECK(resealed.size() == tok_len && std::memcmp(resealed.data(), tok, tok_len) == 0);
}

// Seal → open round trip with input-derived payload and nonce, so kOk paths of every payload
// length are reached (a mutated token almost never authenticates), then one edit of the sealed
// token or of the AAD must stop it opening.
void CheckRoundTrip(State& s, const uint8_t* data, size_t size, const uint8_t* aad,
                    size_t aad_len) {
  uint8_t nonce[token::kNonceSize] = {};
  std::memcpy(nonce, data, size < sizeof(nonce) ? size : sizeof(nonce));
  const size_t payload_len = size > token::kMaxPayloadSize + 1 ? token::kMaxPayloadSize + 1 : size;
  const Bytes payload(data, data + payload_len);

  if (payload_len > token::kMaxPayloadSize) {
    char out[token::kMaxSealedChars];
    size_t out_len = 9999;
    FUZZ_CHECK(token::Seal(s.ring, nonce, payload.data(), payload.size(), aad, aad_len, out,
                           sizeof(out), &out_len) == SealStatus::kPayloadTooLarge);
    FUZZ_CHECK(out_len == 0);
    return;
  }
  const std::string sealed = SealChecked(s.ring, nonce, payload, aad, aad_len);
  FUZZ_CHECK(sealed.size() <= token::kMaxSealedChars);
  const auto* sealed_bytes = reinterpret_cast<const uint8_t*>(sealed.data());
  const Opened opened = OpenChecked(s.ring, sealed_bytes, sealed.size(), aad, aad_len);
  FUZZ_CHECK(opened.status == OpenStatus::kOk && opened.key_id == kSealId);
  FUZZ_CHECK(opened.payload == payload);

  // Any other character at any one position: different bytes or a non-canonical spelling.
  uint32_t h = 2166136261u;  // FNV-1a of the input picks the position and the replacement
  for (size_t i = 0; i < size; ++i) h = (h ^ data[i]) * 16777619u;
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string edited = sealed;
  const size_t pos = h % edited.size();
  const int old = SextetOf(static_cast<uint8_t>(edited[pos]));
  edited[pos] = kAlphabet[(old + 1 + (h >> 16) % 63) % 64];
  const Opened forged = OpenChecked(s.ring, reinterpret_cast<const uint8_t*>(edited.data()),
                                    edited.size(), aad, aad_len);
  FUZZ_CHECK(forged.status != OpenStatus::kOk);

  // The same token under an AAD one byte longer (or shorter) is refused.
  Bytes other_aad(aad, aad + aad_len);
  if (aad_len > 0 && (h & 1)) {
    other_aad.pop_back();
  } else {
    other_aad.push_back(static_cast<uint8_t>(h >> 8));
  }
  const Opened wrong_aad =
      OpenChecked(s.ring, sealed_bytes, sealed.size(), other_aad.data(), other_aad.size());
  FUZZ_CHECK(wrong_aad.status == OpenStatus::kAuthFailed && wrong_aad.key_id == kSealId);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  g_state = new State();  // lives for the whole run; reachable, so not a leak
  State& s = *g_state;
  token::KeyEntry entries[sizeof(kRingIds)];
  for (size_t i = 0; i < sizeof(kRingIds); ++i) {
    const uint8_t id = kRingIds[i];
    const std::string label = "tether token vector key " + std::to_string(id);
    SHA256(reinterpret_cast<const uint8_t*>(label.data()), label.size(), s.keys[id]);
    s.in_ring[id] = true;
    entries[i] = token::KeyEntry{id, s.keys[id]};
    FUZZ_CHECK(s.seal_only[id].Set(&entries[i], 1, id) == token::RingStatus::kOk);
  }
  FUZZ_CHECK(s.ring.Set(entries, sizeof(kRingIds), kSealId) == token::RingStatus::kOk);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  State& s = *g_state;
  size_t aad_len = data[0];
  if (aad_len > size - 1) aad_len = size - 1;
  const uint8_t* aad = data + 1;
  const uint8_t* tok = data + 1 + aad_len;
  const size_t tok_len = size - 1 - aad_len;

  CheckBase64(tok, tok_len);
  CheckOpen(s, tok, tok_len, aad, aad_len);
  CheckRoundTrip(s, tok, tok_len, aad, aad_len);
  return 0;
}
