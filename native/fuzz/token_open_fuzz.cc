// libFuzzer target for route token open and seal (tether/token.h, formats v1 and v2) and its
// strict base64url codec. Every outcome is checked against an independent model (a bit-at-a-time
// base64url codec, a fresh OpenSSL AES-GCM context per token, and for v2 a key derived by
// OpenSSL's HKDF KDF rather than the core's hand-rolled HMAC extract/expand), so a wrong status,
// key id, version or payload, or a non-canonical accept, is a crash, not only a bad read.
// Build and run: bash native/fuzz/run.sh [SECONDS]. Seeds: test/fixtures/fuzz/token_open/.
//
// Input layout (seeds are written by native/fuzz/gen-seeds.mjs in the same layout):
//
//   0            1                 1+L
//   +------------+-----------------+-------------------------------------------+
//   |  L (0..255)|  caller AAD (L) |  token characters (rest of the input)     |
//   +------------+-----------------+-------------------------------------------+
//
//   L larger than what follows is clamped. L = 255 takes the two-call AAD path in the core's v1
//   open (header | AAD only fit the joined stack buffer up to 254 bytes of caller AAD).
//
// The token characters are opened as they are (CheckOpen), and also serve as payload, v2 salt
// and v1 nonce for a real v2 token sealed by the core and a real v1 token sealed by the model
// (nothing in the core seals v1 any more); both are opened, then edited in characters, in raw
// bytes, in version byte and in AAD, and every edit is opened against the model (CheckRoundTrip).
//
// The ring is the one in test/fixtures/token-vectors.txt: keys 7 (seals), 0 and 255, each
// SHA-256("tether token vector key <id>").
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
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

// The model's own copy of the wire formats (token.h draws them), so that a change to a constant
// in the header is a build error here rather than a silent change of what is checked.
constexpr size_t kHead = 2;           // version | keyId
constexpr size_t kV1Nonce = 12;       // v1: nonce after the header
constexpr size_t kV2Salt = 16;        // v2: salt after the header
constexpr size_t kTag = 16;           // both: GCM tag at the end
constexpr size_t kKey = 32;           // ring keys and v2 derived keys
constexpr size_t kV1Min = kHead + kV1Nonce + kTag;  // 30: v1 raw sizes 30..285
constexpr size_t kV2Min = kHead + kV2Salt + kTag;   // 34: v2 raw sizes 34..289
constexpr size_t kMaxPayload = 255;
constexpr size_t kMaxChars = 512;
static_assert(token::kVersion1 == 1 && token::kVersion2 == 2);
static_assert(token::kHeaderSize == kHead && token::kNonceSize == kV1Nonce);
static_assert(token::kSaltSize == kV2Salt && token::kTagSize == kTag && token::kKeySize == kKey);
static_assert(token::kV1Overhead == kV1Min && token::kV2Overhead == kV2Min);
static_assert(token::kMaxPayloadSize == kMaxPayload && token::kMaxTokenChars == kMaxChars);
static_assert(token::kMaxRawSize == kV2Min + kMaxPayload);
static_assert(token::kMaxSealedChars == 386);

// HKDF-Extract's salt for v2, spelled out again rather than taken from token::kV2Label.
constexpr char kV2Label[] = "tether route token v2";

constexpr uint8_t kRingIds[] = {7, 0, 255};
constexpr uint8_t kSealId = 7;
constexpr uint8_t kFill = 0xA5;  // payload_out is pre-filled with this to see what Open wrote

// Built once in LLVMFuzzerInitialize. The rings are deliberately shared by all inputs: the core
// reuses its per-key contexts, and a state leaking from one token into the next must show up.
struct State {
  uint8_t keys[token::kKeyIdCount][kKey] = {};
  bool in_ring[token::kKeyIdCount] = {};
  token::KeyRing ring;                           // 7, 0, 255; seals with 7
  token::KeyRing seal_only[token::kKeyIdCount];  // one ring per id in kRingIds, sealing with it
  token::KeyRing empty;                          // never Set: no keys, no seal key
};
State* g_state = nullptr;

// Heap copy of exactly n bytes (at least 1 allocated): a read one past the end is an ASan report.
template <typename T>
std::unique_ptr<T[]> ExactCopy(const uint8_t* p, size_t n) {
  auto out = std::make_unique<T[]>(n == 0 ? 1 : n);
  if (n > 0) std::memcpy(out.get(), p, n);
  return out;
}

const uint8_t* AsBytes(const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); }

// ---- Independent strict base64url: a 6-bit accumulator, no lookup table, no block loop. ----

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

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

std::string ReferenceEncode(const Bytes& in) {
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (const uint8_t b : in) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kAlphabet[(acc >> bits) & 63]);
    }
    acc &= (1u << bits) - 1;
  }
  if (bits > 0) out.push_back(kAlphabet[(acc << (6 - bits)) & 63]);
  return out;
}

// ---- Independent token model: fresh OpenSSL objects per call, nothing shared with the core. ----

// HKDF-SHA256 through OpenSSL's KDF provider (extract and expand in one derive), not EVP_MAC.
void Hkdf(const uint8_t* ikm, size_t ikm_len, const uint8_t* salt, size_t salt_len,
          const uint8_t* info, size_t info_len, uint8_t* out, size_t out_len) {
  EVP_KDF* kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  FUZZ_CHECK(kdf != nullptr);
  EVP_KDF_CTX* ctx = EVP_KDF_CTX_new(kdf);
  EVP_KDF_free(kdf);
  FUZZ_CHECK(ctx != nullptr);
  char digest[] = "SHA256";
  // OSSL_PARAM wants non-const pointers; the KDF only reads them.
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<uint8_t*>(ikm), ikm_len),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, const_cast<uint8_t*>(salt),
                                        salt_len),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, const_cast<uint8_t*>(info),
                                        info_len),
      OSSL_PARAM_construct_end(),
  };
  FUZZ_CHECK(EVP_KDF_derive(ctx, out, out_len, params) == 1);
  EVP_KDF_CTX_free(ctx);
}

// v2 K = HKDF-SHA256(salt = "tether route token v2", IKM = ring key,
//                    info = 0x02 | keyId | token salt | caller AAD, L = 32).
void ModelV2Key(const uint8_t* ring_key, uint8_t id, const uint8_t* salt, const uint8_t* aad,
                size_t aad_len, uint8_t* out) {
  Bytes info = {2, id};
  info.insert(info.end(), salt, salt + kV2Salt);
  if (aad_len > 0) info.insert(info.end(), aad, aad + aad_len);
  Hkdf(ring_key, kKey, reinterpret_cast<const uint8_t*>(kV2Label), sizeof(kV2Label) - 1,
       info.data(), info.size(), out, kKey);
}

// AES-256-GCM seal with a brand-new context: returns ciphertext | tag.
Bytes GcmSeal(const uint8_t* key, const uint8_t* nonce, const Bytes& gcm_aad,
              const Bytes& payload) {
  Bytes out(payload.size() + kTag);
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  FUZZ_CHECK(ctx != nullptr);
  int n = 0;
  FUZZ_CHECK(EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, key, nonce) == 1);
  if (!gcm_aad.empty()) {
    FUZZ_CHECK(EVP_EncryptUpdate(ctx, nullptr, &n, gcm_aad.data(),
                                 static_cast<int>(gcm_aad.size())) == 1);
  }
  if (!payload.empty()) {
    FUZZ_CHECK(EVP_EncryptUpdate(ctx, out.data(), &n, payload.data(),
                                 static_cast<int>(payload.size())) == 1 &&
               static_cast<size_t>(n) == payload.size());
  }
  uint8_t tail[16];
  FUZZ_CHECK(EVP_EncryptFinal_ex(ctx, tail, &n) == 1 && n == 0);
  FUZZ_CHECK(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, static_cast<int>(kTag),
                                 out.data() + payload.size()) == 1);
  EVP_CIPHER_CTX_free(ctx);
  return out;
}

// AES-256-GCM open of sealed = ciphertext | tag with a brand-new context: the oracle for the
// core's reused, pre-keyed ones. False if the tag does not verify.
bool GcmOpen(const uint8_t* key, const uint8_t* nonce, const Bytes& gcm_aad, const uint8_t* sealed,
             size_t sealed_len, Bytes* plaintext) {
  FUZZ_CHECK(sealed_len >= kTag);
  const size_t ct_len = sealed_len - kTag;
  plaintext->assign(ct_len, 0);
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  FUZZ_CHECK(ctx != nullptr);
  int n = 0;
  FUZZ_CHECK(EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, key, nonce) == 1);
  if (!gcm_aad.empty()) {
    FUZZ_CHECK(EVP_DecryptUpdate(ctx, nullptr, &n, gcm_aad.data(),
                                 static_cast<int>(gcm_aad.size())) == 1);
  }
  if (ct_len > 0) {
    FUZZ_CHECK(EVP_DecryptUpdate(ctx, plaintext->data(), &n, sealed,
                                 static_cast<int>(ct_len)) == 1);
  }
  Bytes tag(sealed + ct_len, sealed + sealed_len);
  FUZZ_CHECK(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, static_cast<int>(kTag), tag.data()) ==
             1);
  uint8_t tail[16];
  const bool authentic = EVP_DecryptFinal_ex(ctx, tail, &n) == 1;
  EVP_CIPHER_CTX_free(ctx);
  if (!authentic) plaintext->clear();
  return authentic;
}

// v1 raw token: 0x01 | id | nonce | GCM(ring key, nonce, AAD = 0x01 | id | caller AAD).
Bytes ModelSealV1(const uint8_t* ring_key, uint8_t id, const uint8_t* nonce, const Bytes& payload,
                  const uint8_t* aad, size_t aad_len) {
  Bytes raw = {1, id};
  raw.insert(raw.end(), nonce, nonce + kV1Nonce);
  Bytes gcm_aad = {1, id};
  if (aad_len > 0) gcm_aad.insert(gcm_aad.end(), aad, aad + aad_len);
  const Bytes sealed = GcmSeal(ring_key, nonce, gcm_aad, payload);
  raw.insert(raw.end(), sealed.begin(), sealed.end());
  return raw;
}

// v2 raw token: 0x02 | id | salt | GCM(K, 12 zero bytes, no AAD).
Bytes ModelSealV2(const uint8_t* ring_key, uint8_t id, const uint8_t* salt, const Bytes& payload,
                  const uint8_t* aad, size_t aad_len) {
  uint8_t key[kKey];
  ModelV2Key(ring_key, id, salt, aad, aad_len, key);
  const uint8_t zero_nonce[12] = {};
  Bytes raw = {2, id};
  raw.insert(raw.end(), salt, salt + kV2Salt);
  const Bytes sealed = GcmSeal(key, zero_nonce, Bytes(), payload);
  raw.insert(raw.end(), sealed.begin(), sealed.end());
  return raw;
}

// Opens a raw token whose version (1 or 2), length and key id the caller already checked.
bool ModelOpen(const uint8_t* ring_key, const Bytes& raw, const uint8_t* aad, size_t aad_len,
               Bytes* plaintext) {
  const uint8_t id = raw[1];
  if (raw[0] == 1) {
    FUZZ_CHECK(raw.size() >= kV1Min && raw.size() <= kV1Min + kMaxPayload);
    Bytes gcm_aad(raw.begin(), raw.begin() + kHead);
    if (aad_len > 0) gcm_aad.insert(gcm_aad.end(), aad, aad + aad_len);
    return GcmOpen(ring_key, raw.data() + kHead, gcm_aad, raw.data() + kHead + kV1Nonce,
                   raw.size() - kHead - kV1Nonce, plaintext);
  }
  FUZZ_CHECK(raw[0] == 2 && raw.size() >= kV2Min && raw.size() <= kV2Min + kMaxPayload);
  uint8_t key[kKey];
  ModelV2Key(ring_key, id, raw.data() + kHead, aad, aad_len, key);
  const uint8_t zero_nonce[12] = {};
  return GcmOpen(key, zero_nonce, Bytes(), raw.data() + kHead + kV2Salt,
                 raw.size() - kHead - kV2Salt, plaintext);
}

// ---- Calls into the core, with exact-size copies and the checks every call must satisfy. ----

struct Opened {
  OpenStatus status;
  int key_id;
  int version;
  Bytes payload;
};

Opened OpenChecked(token::KeyRing& ring, const uint8_t* tok, size_t tok_len, const uint8_t* aad,
                   size_t aad_len) {
  auto tok_copy = ExactCopy<char>(tok, tok_len);
  auto aad_copy = ExactCopy<uint8_t>(aad, aad_len);
  auto out = std::make_unique<uint8_t[]>(kMaxPayload);
  std::memset(out.get(), kFill, kMaxPayload);
  size_t out_len = 9999;
  int key_id = 9999;
  int version = 9999;
  const OpenStatus st = token::Open(ring, tok_copy.get(), tok_len,
                                    aad_len == 0 ? nullptr : aad_copy.get(), aad_len, out.get(),
                                    &out_len, &key_id, &version);
  FUZZ_CHECK(static_cast<uint8_t>(st) <= static_cast<uint8_t>(OpenStatus::kAuthFailed));
  FUZZ_CHECK(key_id >= -1 && key_id <= 255);
  FUZZ_CHECK(version == 0 || version == 1 || version == 2);
  if (st == OpenStatus::kOk) {
    FUZZ_CHECK(out_len <= kMaxPayload);
    // Raw length from token length, with the overhead of the version read.
    FUZZ_CHECK(out_len + (version == 2 ? kV2Min : kV1Min) == tok_len * 3 / 4);
  } else {
    FUZZ_CHECK(out_len == 0);
    // An unauthenticated token's plaintext never reaches the caller: untouched or cleansed.
    for (size_t i = 0; i < kMaxPayload; ++i) {
      FUZZ_CHECK(out[i] == kFill || out[i] == 0);
    }
  }
  if (st == OpenStatus::kMalformed || st == OpenStatus::kBadVersion) FUZZ_CHECK(key_id == -1);
  if (st == OpenStatus::kBadVersion) FUZZ_CHECK(version == 0);
  if (st == OpenStatus::kOk || st == OpenStatus::kUnknownKey || st == OpenStatus::kAuthFailed) {
    FUZZ_CHECK(key_id >= 0 && version != 0);
  }
  return Opened{st, key_id, version,
                st == OpenStatus::kOk ? Bytes(out.get(), out.get() + out_len) : Bytes()};
}

std::string SealChecked(token::KeyRing& ring, const uint8_t* salt, const Bytes& payload,
                        const uint8_t* aad, size_t aad_len) {
  const size_t cap = token::Base64UrlLength(kV2Min + payload.size());
  auto out = std::make_unique<char[]>(cap);
  auto salt_copy = ExactCopy<uint8_t>(salt, kV2Salt);
  auto payload_copy = ExactCopy<uint8_t>(payload.data(), payload.size());
  auto aad_copy = ExactCopy<uint8_t>(aad, aad_len);
  const uint8_t* aad_arg = aad_len == 0 ? nullptr : aad_copy.get();
  size_t out_len = 9999;

  // One character short must be refused without a write (the buffer is exactly cap - 1).
  auto small = std::make_unique<char[]>(cap - 1);
  FUZZ_CHECK(token::Seal(ring, salt_copy.get(), payload_copy.get(), payload.size(), aad_arg,
                         aad_len, small.get(), cap - 1, &out_len) == SealStatus::kOutputTooSmall);
  FUZZ_CHECK(out_len == 0);

  const SealStatus st = token::Seal(ring, salt_copy.get(), payload_copy.get(), payload.size(),
                                    aad_arg, aad_len, out.get(), cap, &out_len);
  FUZZ_CHECK(st == SealStatus::kOk);
  FUZZ_CHECK(out_len == cap);
  return std::string(out.get(), out_len);
}

// The codec on its own: strict decode agrees with the reference, accepts exactly one spelling
// per byte string, honours out_cap, and encode is its inverse and agrees with the reference.
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

  // Arbitrary bytes encode to the reference's characters, at the promised length, and decode
  // back.
  const size_t enc_len = token::Base64UrlLength(len);
  auto enc = std::make_unique<char[]>(enc_len == 0 ? 1 : enc_len);
  FUZZ_CHECK(token::Base64UrlEncode(ExactCopy<uint8_t>(in, len).get(), len, enc.get(), enc_len) ==
             enc_len);
  const std::string ref_enc = ReferenceEncode(Bytes(in, in + len));
  FUZZ_CHECK(ref_enc.size() == enc_len &&
             (enc_len == 0 || std::memcmp(enc.get(), ref_enc.data(), enc_len) == 0));
  if (enc_len > 0) {
    FUZZ_CHECK(token::Base64UrlEncode(in, len, enc.get(), enc_len - 1) == 0);
  }
  auto back = std::make_unique<uint8_t[]>(len == 0 ? 1 : len);
  FUZZ_CHECK(token::Base64UrlDecode(enc.get(), enc_len, back.get(), len, &out_len));
  FUZZ_CHECK(out_len == len && (len == 0 || std::memcmp(back.get(), in, len) == 0));
}

// Open, against the model of the checks listed in token.h, in their order. Returns the core's
// answer (already known to agree with the model).
Opened CheckOpen(State& s, const uint8_t* tok, size_t tok_len, const uint8_t* aad,
                 size_t aad_len) {
  const Opened got = OpenChecked(s.ring, tok, tok_len, aad, aad_len);

  // 1. Strict base64url, 1..512 characters.
  Bytes raw;
  if (tok_len == 0 || tok_len > kMaxChars || !ReferenceDecode(tok, tok_len, &raw) ||
      raw.empty()) {
    FUZZ_CHECK(got.status == OpenStatus::kMalformed && got.version == 0 && got.key_id == -1);
    return got;
  }
  // 2. Version 1 or 2.
  if (raw[0] != 1 && raw[0] != 2) {
    FUZZ_CHECK(got.status == OpenStatus::kBadVersion && got.version == 0 && got.key_id == -1);
    return got;
  }
  FUZZ_CHECK(got.version == raw[0]);
  // 3. Raw length for that version.
  const size_t min = raw[0] == 1 ? kV1Min : kV2Min;
  if (raw.size() < min || raw.size() > min + kMaxPayload) {
    FUZZ_CHECK(got.status == OpenStatus::kMalformed && got.key_id == -1);
    return got;
  }
  // 4. Key id in the ring.
  const uint8_t id = raw[1];
  FUZZ_CHECK(got.key_id == id);
  if (!s.in_ring[id]) {
    FUZZ_CHECK(got.status == OpenStatus::kUnknownKey);
    return got;
  }
  // 5. Tag.
  Bytes plaintext;
  const bool authentic = ModelOpen(s.keys[id], raw, aad, aad_len, &plaintext);
  FUZZ_CHECK(got.status == (authentic ? OpenStatus::kOk : OpenStatus::kAuthFailed));
  if (!authentic) return got;
  FUZZ_CHECK(got.payload == plaintext);

  // Opening again gives the same answer: the reused context kept no state from the last token.
  const Opened again = OpenChecked(s.ring, tok, tok_len, aad, aad_len);
  FUZZ_CHECK(again.status == OpenStatus::kOk && again.payload == got.payload &&
             again.key_id == id && again.version == raw[0]);

  // Canonical: sealing the payload again under the same key and nonce (v1, the model: the core
  // no longer seals v1) or salt (v2, the core) spells the same token.
  const std::string resealed =
      raw[0] == 1
          ? ReferenceEncode(ModelSealV1(s.keys[id], id, raw.data() + kHead, got.payload, aad,
                                        aad_len))
          : SealChecked(s.seal_only[id], raw.data() + kHead, got.payload, aad, aad_len);
  FUZZ_CHECK(resealed.size() == tok_len && std::memcmp(resealed.data(), tok, tok_len) == 0);
  return got;
}

uint32_t Mix(uint32_t h) {  // a 32-bit finaliser: fresh choices from one input hash
  h ^= h >> 16;
  h *= 0x7feb352dU;
  h ^= h >> 15;
  h *= 0x846ca68bU;
  h ^= h >> 16;
  return h;
}

// One raw-byte edit of an authentic token, chosen by h: flip a bit, change the key id (to
// another ring key or to an unknown one), change the version byte (1 <-> 2 included),
// truncate, or extend. The result always differs from raw.
Bytes EditRaw(const Bytes& raw, uint32_t h) {
  Bytes out = raw;
  const uint32_t arg = h >> 3;
  switch (h % 6) {
    case 0:
      out[arg % out.size()] ^= static_cast<uint8_t>(1u << ((arg >> 16) & 7));
      break;
    case 1:
      out[1] = static_cast<uint8_t>(out[1] + 1 + arg % 255);
      break;
    case 2:
      out[1] = kRingIds[arg % 3] == out[1] ? kRingIds[(arg + 1) % 3] : kRingIds[arg % 3];
      break;
    case 3:
      // Half the time 1 <-> 2, else any of the 255 other values.
      out[0] = static_cast<uint8_t>(arg & 1 ? out[0] ^ 3 : out[0] + 1 + (arg >> 1) % 255);
      break;
    case 4:
      out.resize(out.size() - 1 - arg % (out.size() - 1));  // keeps at least one byte
      break;
    default:
      for (uint32_t i = 0, n = 1 + arg % 40; i < n; ++i) {
        out.push_back(static_cast<uint8_t>(Mix(h + i)));
      }
      break;
  }
  FUZZ_CHECK(out != raw);
  return out;
}

// A token that opened under (aad): edited at one character, at raw bytes, or presented under
// another AAD, it must not open, and the core must still agree with the model on why not.
void CheckEdits(State& s, const std::string& tok, const Bytes& raw, uint8_t id, int version,
                const uint8_t* aad, size_t aad_len, uint32_t h) {
  // Any other character at any one position: different bytes or a non-canonical spelling.
  std::string edited = tok;
  const size_t pos = h % edited.size();
  const int old = SextetOf(static_cast<uint8_t>(edited[pos]));
  FUZZ_CHECK(old >= 0);
  edited[pos] = kAlphabet[(old + 1 + (h >> 16) % 63) % 64];
  FUZZ_CHECK(CheckOpen(s, AsBytes(edited), edited.size(), aad, aad_len).status != OpenStatus::kOk);

  // Raw edits, then encoded canonically.
  for (uint32_t round = 0; round < 2; ++round) {
    const std::string re = ReferenceEncode(EditRaw(raw, Mix(h + 0x9e3779b9U * (round + 1))));
    FUZZ_CHECK(CheckOpen(s, AsBytes(re), re.size(), aad, aad_len).status != OpenStatus::kOk);
  }

  // The same token under an AAD one byte longer (or shorter) is refused.
  Bytes other_aad(aad, aad + aad_len);
  if (aad_len > 0 && (h & 1)) {
    other_aad.pop_back();
  } else {
    other_aad.push_back(static_cast<uint8_t>(h >> 8));
  }
  const Opened wrong_aad =
      CheckOpen(s, AsBytes(tok), tok.size(), other_aad.data(), other_aad.size());
  FUZZ_CHECK(wrong_aad.status == OpenStatus::kAuthFailed && wrong_aad.key_id == id &&
             wrong_aad.version == version);

  // A ring without the key does not know it (and says which key it looked for).
  const Opened unknown = OpenChecked(s.empty, AsBytes(tok), tok.size(), aad, aad_len);
  FUZZ_CHECK(unknown.status == OpenStatus::kUnknownKey && unknown.key_id == id &&
             unknown.version == version);
}

// Seal → open round trips with input-derived payload, v2 salt and v1 nonce, so kOk paths of
// every payload length are reached for both versions (a mutated token almost never
// authenticates), then edits of those real tokens are opened against the model.
void CheckRoundTrip(State& s, const uint8_t* data, size_t size, const uint8_t* aad,
                    size_t aad_len) {
  uint32_t h = 2166136261u;  // FNV-1a of the input picks key, edit positions and replacements
  for (size_t i = 0; i < size; ++i) h = (h ^ data[i]) * 16777619u;

  uint8_t salt[kV2Salt] = {};
  std::memcpy(salt, data, size < sizeof(salt) ? size : sizeof(salt));
  uint8_t nonce[kV1Nonce] = {};  // the input's last bytes, so it differs from the salt
  const size_t nonce_len = size < sizeof(nonce) ? size : sizeof(nonce);
  if (nonce_len > 0) std::memcpy(nonce, data + size - nonce_len, nonce_len);
  const size_t payload_len = size > kMaxPayload + 1 ? kMaxPayload + 1 : size;
  const Bytes payload(data, data + payload_len);
  const uint8_t* payload_arg = payload.empty() ? salt : payload.data();  // never null

  char out[token::kMaxSealedChars];
  size_t out_len = 9999;
  if (payload_len > kMaxPayload) {
    FUZZ_CHECK(token::Seal(s.ring, salt, payload_arg, payload.size(), aad, aad_len, out,
                           sizeof(out), &out_len) == SealStatus::kPayloadTooLarge);
    FUZZ_CHECK(out_len == 0);
    return;
  }
  // A ring with no seal key refuses, whatever the room.
  FUZZ_CHECK(token::Seal(s.empty, salt, payload_arg, payload.size(), aad, aad_len, out,
                         sizeof(out), &out_len) == SealStatus::kNoSealKey);
  FUZZ_CHECK(out_len == 0);

  // v2, sealed by the core (by the multi-key ring when the seal key is 7), equals the model's.
  const uint8_t id = kRingIds[h % 3];
  token::KeyRing& sealer = id == kSealId ? s.ring : s.seal_only[id];
  const std::string v2 = SealChecked(sealer, salt, payload, aad, aad_len);
  const Bytes v2_raw = ModelSealV2(s.keys[id], id, salt, payload, aad, aad_len);
  FUZZ_CHECK(v2.size() <= token::kMaxSealedChars);
  FUZZ_CHECK(v2 == ReferenceEncode(v2_raw));
  // Sealing is a function of its inputs: the same salt gives the same token again.
  FUZZ_CHECK(SealChecked(sealer, salt, payload, aad, aad_len) == v2);
  const Opened v2_opened = CheckOpen(s, AsBytes(v2), v2.size(), aad, aad_len);
  FUZZ_CHECK(v2_opened.status == OpenStatus::kOk && v2_opened.key_id == id &&
             v2_opened.version == 2 && v2_opened.payload == payload);
  CheckEdits(s, v2, v2_raw, id, 2, aad, aad_len, h);

  // v1, sealed by the model (nothing in the core seals v1), opens in the core.
  const uint8_t v1_id = kRingIds[(h >> 8) % 3];
  const Bytes v1_raw = ModelSealV1(s.keys[v1_id], v1_id, nonce, payload, aad, aad_len);
  const std::string v1 = ReferenceEncode(v1_raw);
  const Opened v1_opened = CheckOpen(s, AsBytes(v1), v1.size(), aad, aad_len);
  FUZZ_CHECK(v1_opened.status == OpenStatus::kOk && v1_opened.key_id == v1_id &&
             v1_opened.version == 1 && v1_opened.payload == payload);
  CheckEdits(s, v1, v1_raw, v1_id, 1, aad, aad_len, Mix(h));
}

Bytes FromHex(const char* hex) {
  Bytes out;
  for (size_t i = 0; hex[i] != '\0' && hex[i + 1] != '\0'; i += 2) {
    out.push_back(static_cast<uint8_t>(std::strtoul(std::string(hex + i, 2).c_str(), nullptr, 16)));
  }
  return out;
}

// Known answers, so the model is anchored outside this file: RFC 5869's first HKDF-SHA256 case
// (HKDF-Extract and -Expand with a multi-block output), and one v1 and one v2 token copied from
// test/fixtures/token-vectors.txt (sealed by node:crypto, test/fixtures/token-format.mjs).
void CheckModelKnownAnswers(State& s) {
  const Bytes ikm(22, 0x0b);
  const Bytes salt = FromHex("000102030405060708090a0b0c");
  const Bytes info = FromHex("f0f1f2f3f4f5f6f7f8f9");
  uint8_t okm[42];
  Hkdf(ikm.data(), ikm.size(), salt.data(), salt.size(), info.data(), info.size(), okm,
       sizeof(okm));
  FUZZ_CHECK(Bytes(okm, okm + sizeof(okm)) ==
             FromHex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b8"
                     "87185865"));

  const Bytes route = FromHex("006553f1000000000000000000056170702d31");
  const Bytes web = FromHex("00037765620006636f6f6b6965");  // aadFor('web', 'cookie')
  const Bytes v2_salt = FromHex("22914ab63fa734a2c99740f55468006d");
  const std::string v2 = "AgcikUq2P6c0osmXQPVUaABtib_zPTdWXuprNFfhvgQZrXfGs1kdC4fo2gQQjv0gXTuCQbU";
  FUZZ_CHECK(ReferenceEncode(ModelSealV2(s.keys[7], 7, v2_salt.data(), route, web.data(),
                                         web.size())) == v2);
  const Bytes v1_nonce = FromHex("9589f65ffd9a1216a9e19aa9");
  const std::string v1 = "AQeVifZf_ZoSFqnhmqkYvS-pBaRZH6qxG9QoZaNpifqsCtKBokCq7ACj98nJiVOXMA";
  FUZZ_CHECK(ReferenceEncode(ModelSealV1(s.keys[7], 7, v1_nonce.data(), route, web.data(),
                                         web.size())) == v1);
  for (const std::string* tok : {&v1, &v2}) {
    Bytes raw;
    Bytes plaintext;
    FUZZ_CHECK(ReferenceDecode(AsBytes(*tok), tok->size(), &raw));
    FUZZ_CHECK(ModelOpen(s.keys[7], raw, web.data(), web.size(), &plaintext) && plaintext == route);
  }
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
  FUZZ_CHECK(!s.empty.HasSealKey() && !s.empty.Has(kSealId));
  CheckModelKnownAnswers(s);
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
