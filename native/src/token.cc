// Route token seal (v2) and open (v1, v2), and strict base64url; the formats are drawn in
// tether/token.h.
//
// v2's HMAC runs on OpenSSL's SHA-256 block functions (SHA256_Init/Update/Final) over pad
// states prepared once per key, the RFC 2104 construction written out. OpenSSL 3 marks those
// functions deprecated in favour of EVP_MAC, but EVP_MAC re-initialises by duplicating digest
// contexts on the heap: 310 ns per token against 117 ns here (same machine, same run), on the
// sticky-hit path. Checked against node:crypto's hkdfSync vectors and the fuzz harness's
// EVP_KDF model.
#define OPENSSL_SUPPRESS_DEPRECATED
#include "tether/token.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <new>

#include <climits>
#include <cstring>

namespace tether::token {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
constexpr uint8_t kInvalid = 0xFF;

// A constant lookup table (not mutable state): byte → 6-bit value, or kInvalid.
constexpr std::array<uint8_t, 256> MakeDecodeTable() {
  std::array<uint8_t, 256> table{};
  for (auto& v : table) v = kInvalid;
  for (uint8_t i = 0; i < 64; ++i) table[static_cast<uint8_t>(kAlphabet[i])] = i;
  return table;
}
constexpr std::array<uint8_t, 256> kDecode = MakeDecodeTable();

constexpr size_t kV1CiphertextOffset = kHeaderSize + kNonceSize;
constexpr size_t kV2CiphertextOffset = kHeaderSize + kSaltSize;
constexpr size_t kV1MinRaw = kV1Overhead;
constexpr size_t kV1MaxRaw = kV1Overhead + kMaxPayloadSize;
constexpr size_t kV2MinRaw = kV2Overhead;
constexpr size_t kV2MaxRaw = kV2Overhead + kMaxPayloadSize;
// v2 seals each key once, so its GCM nonce is a constant.
constexpr uint8_t kV2Nonce[kNonceSize] = {};

// EVP lengths are ints; caller AAD is not bounded by the format, so feed it in int-sized steps.
bool UpdateAad(EVP_CIPHER_CTX* ctx, const uint8_t* aad, size_t len) {
  while (len > 0) {
    const int step = len > static_cast<size_t>(INT_MAX) ? INT_MAX : static_cast<int>(len);
    int out_len = 0;
    if (EVP_CipherUpdate(ctx, nullptr, &out_len, aad, step) != 1) return false;
    aad += step;
    len -= static_cast<size_t>(step);
  }
  return true;
}

// GCM AAD = header | caller AAD. One EVP call when they fit in a small stack buffer (pool +
// mode always do), two otherwise; the tag is the same either way.
constexpr size_t kJoinedAadMax = 256;
bool UpdateHeaderAndAad(EVP_CIPHER_CTX* ctx, const uint8_t* header, const uint8_t* aad,
                        size_t aad_len) {
  if (aad_len <= kJoinedAadMax - kHeaderSize) {
    uint8_t joined[kJoinedAadMax];
    std::memcpy(joined, header, kHeaderSize);
    if (aad_len > 0) std::memcpy(joined + kHeaderSize, aad, aad_len);
    return UpdateAad(ctx, joined, kHeaderSize + aad_len);
  }
  return UpdateAad(ctx, header, kHeaderSize) && UpdateAad(ctx, aad, aad_len);
}

}  // namespace

// HMAC-SHA256 keyed once: the hash states after absorbing key ^ ipad and key ^ opad.
struct PrkState {
  SHA256_CTX inner;
  SHA256_CTX outer;
};

namespace {

constexpr size_t kSha256Block = 64;
constexpr size_t kSha256Size = 32;

// Pad states for a key of at most one block (the label and PRKs are; no key hashing needed).
bool InitPads(PrkState* s, const uint8_t* key, size_t key_len) {
  if (key_len > kSha256Block) return false;
  uint8_t pad[kSha256Block];
  std::memset(pad, 0x36, sizeof(pad));
  for (size_t i = 0; i < key_len; ++i) pad[i] ^= key[i];
  bool ok = SHA256_Init(&s->inner) == 1 && SHA256_Update(&s->inner, pad, sizeof(pad)) == 1;
  std::memset(pad, 0x5c, sizeof(pad));
  for (size_t i = 0; i < key_len; ++i) pad[i] ^= key[i];
  ok = ok && SHA256_Init(&s->outer) == 1 && SHA256_Update(&s->outer, pad, sizeof(pad)) == 1;
  OPENSSL_cleanse(pad, sizeof(pad));
  return ok;
}

// One message part; Hmac() runs over the concatenation of its parts (empty ones are skipped).
struct Part {
  const uint8_t* data;
  size_t len;
};

bool Hmac(const PrkState& s, const Part* parts, size_t count, uint8_t* out) {
  SHA256_CTX ctx = s.inner;
  uint8_t inner[kSha256Size];
  bool ok = true;
  for (size_t i = 0; ok && i < count; ++i) {
    if (parts[i].len > 0) ok = SHA256_Update(&ctx, parts[i].data, parts[i].len) == 1;
  }
  ok = ok && SHA256_Final(inner, &ctx) == 1;
  ctx = s.outer;
  ok = ok && SHA256_Update(&ctx, inner, sizeof(inner)) == 1 && SHA256_Final(out, &ctx) == 1;
  OPENSSL_cleanse(inner, sizeof(inner));
  OPENSSL_cleanse(&ctx, sizeof(ctx));
  return ok;
}

// The pad states of PRK = HKDF-Extract(kV2Label, key), or null (allocation or hash failure).
PrkState* NewPrkState(const uint8_t* key) {
  PrkState label;
  uint8_t prk[kSha256Size];
  const Part ikm{key, kKeySize};
  bool ok = InitPads(&label, reinterpret_cast<const uint8_t*>(kV2Label), sizeof(kV2Label) - 1) &&
            Hmac(label, &ikm, 1, prk);
  PrkState* state = ok ? new (std::nothrow) PrkState : nullptr;
  if (state != nullptr && !InitPads(state, prk, sizeof(prk))) {
    OPENSSL_cleanse(state, sizeof(*state));
    delete state;
    state = nullptr;
  }
  OPENSSL_cleanse(prk, sizeof(prk));
  OPENSSL_cleanse(&label, sizeof(label));
  return state;
}

void FreePrkState(PrkState* state) {
  if (state == nullptr) return;
  OPENSSL_cleanse(state, sizeof(*state));
  delete state;
}

// Everything a ring owns, so Set() can build a fresh one beside the live one and swap.
struct RingParts {
  std::array<EVP_CIPHER_CTX*, kKeyIdCount> v1_open{};
  std::array<PrkState*, kKeyIdCount> v2_prk{};
  EVP_CIPHER_CTX* v2_seal = nullptr;
  EVP_CIPHER_CTX* v2_open = nullptr;

  void Free() {
    for (auto& ctx : v1_open) {
      EVP_CIPHER_CTX_free(ctx);  // frees and cleanses the key schedule; null is a no-op
      ctx = nullptr;
    }
    for (auto& state : v2_prk) {
      FreePrkState(state);
      state = nullptr;
    }
    EVP_CIPHER_CTX_free(v2_seal);
    EVP_CIPHER_CTX_free(v2_open);
    v2_seal = v2_open = nullptr;
  }
};

// A context with the key scheduled once; each token then only sets its nonce.
EVP_CIPHER_CTX* NewKeyedContext(const uint8_t* key, bool encrypt) {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  if (ctx == nullptr) return nullptr;
  if (EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), nullptr, key, nullptr, encrypt ? 1 : 0) != 1) {
    EVP_CIPHER_CTX_free(ctx);
    return nullptr;
  }
  return ctx;
}

}  // namespace

KeyRing::~KeyRing() { Clear(); }

void KeyRing::Clear() noexcept {
  RingParts live{v1_open_, v2_prk_, v2_seal_, v2_open_};
  live.Free();
  v1_open_ = {};
  v2_prk_ = {};
  v2_seal_ = v2_open_ = nullptr;
  seal_id_ = 0;
  has_seal_key_ = false;
}

RingStatus KeyRing::Set(const KeyEntry* entries, size_t count, uint8_t seal_id) noexcept {
  if (count > kKeyIdCount || (count > 0 && entries == nullptr)) return RingStatus::kDuplicateId;
  std::array<bool, kKeyIdCount> seen{};
  const uint8_t* seal_key = nullptr;
  for (size_t i = 0; i < count; ++i) {
    if (entries[i].key == nullptr) return RingStatus::kCryptoError;
    if (seen[entries[i].id]) return RingStatus::kDuplicateId;
    seen[entries[i].id] = true;
    if (entries[i].id == seal_id) seal_key = entries[i].key;
  }
  if (seal_key == nullptr) return RingStatus::kSealKeyMissing;

  RingParts fresh;
  // Cipher set now, key and nonce per token.
  fresh.v2_seal = NewKeyedContext(nullptr, true);
  fresh.v2_open = NewKeyedContext(nullptr, false);
  bool ok = fresh.v2_seal != nullptr && fresh.v2_open != nullptr;
  for (size_t i = 0; ok && i < count; ++i) {
    const uint8_t id = entries[i].id;
    fresh.v1_open[id] = NewKeyedContext(entries[i].key, false);
    fresh.v2_prk[id] = NewPrkState(entries[i].key);
    ok = fresh.v1_open[id] != nullptr && fresh.v2_prk[id] != nullptr;
  }
  if (!ok) {
    fresh.Free();
    ERR_clear_error();
    return RingStatus::kCryptoError;
  }
  Clear();
  v1_open_ = fresh.v1_open;
  v2_prk_ = fresh.v2_prk;
  v2_seal_ = fresh.v2_seal;
  v2_open_ = fresh.v2_open;
  seal_id_ = seal_id;
  has_seal_key_ = true;
  return RingStatus::kOk;
}

bool KeyRing::DeriveV2Key(uint8_t id, const uint8_t* salt, const uint8_t* aad, size_t aad_len,
                          uint8_t* out) noexcept {
  const PrkState* prk = v2_prk_[id];
  if (prk == nullptr) return false;
  const uint8_t head[kHeaderSize] = {kVersion2, id};
  const uint8_t counter = 0x01;  // HKDF-Expand's T(1): 32 bytes need one block
  const Part info[] = {{head, sizeof(head)}, {salt, kSaltSize}, {aad, aad_len}, {&counter, 1}};
  static_assert(kKeySize == kSha256Size, "one HKDF-Expand block is one AES-256 key");
  const bool ok = Hmac(*prk, info, sizeof(info) / sizeof(info[0]), out);
  if (!ok) OPENSSL_cleanse(out, kKeySize);
  return ok;
}

size_t Base64UrlEncode(const uint8_t* in, size_t len, char* out, size_t out_cap) noexcept {
  const size_t need = Base64UrlLength(len);
  if (out_cap < need) return 0;
  size_t o = 0;
  size_t i = 0;
  for (; i + 3 <= len; i += 3) {
    const uint32_t v = (uint32_t{in[i]} << 16) | (uint32_t{in[i + 1]} << 8) | in[i + 2];
    out[o++] = kAlphabet[(v >> 18) & 63];
    out[o++] = kAlphabet[(v >> 12) & 63];
    out[o++] = kAlphabet[(v >> 6) & 63];
    out[o++] = kAlphabet[v & 63];
  }
  const size_t rest = len - i;
  if (rest == 1) {
    const uint32_t v = uint32_t{in[i]} << 16;
    out[o++] = kAlphabet[(v >> 18) & 63];
    out[o++] = kAlphabet[(v >> 12) & 63];
  } else if (rest == 2) {
    const uint32_t v = (uint32_t{in[i]} << 16) | (uint32_t{in[i + 1]} << 8);
    out[o++] = kAlphabet[(v >> 18) & 63];
    out[o++] = kAlphabet[(v >> 12) & 63];
    out[o++] = kAlphabet[(v >> 6) & 63];
  }
  return o;
}

bool Base64UrlDecode(const char* in, size_t len, uint8_t* out, size_t out_cap,
                     size_t* out_len) noexcept {
  *out_len = 0;
  const size_t rest = len % 4;
  if (rest == 1) return false;  // 6 bits cannot end a byte
  const size_t full = len - rest;
  const size_t need = full / 4 * 3 + (rest == 0 ? 0 : rest - 1);
  if (need > out_cap || (len > 0 && in == nullptr)) return false;

  size_t o = 0;
  for (size_t i = 0; i < full; i += 4) {
    const uint8_t a = kDecode[static_cast<uint8_t>(in[i])];
    const uint8_t b = kDecode[static_cast<uint8_t>(in[i + 1])];
    const uint8_t c = kDecode[static_cast<uint8_t>(in[i + 2])];
    const uint8_t d = kDecode[static_cast<uint8_t>(in[i + 3])];
    if ((a | b | c | d) & 0xC0) return false;  // kInvalid has the high bits set
    const uint32_t v = (uint32_t{a} << 18) | (uint32_t{b} << 12) | (uint32_t{c} << 6) | d;
    out[o++] = static_cast<uint8_t>(v >> 16);
    out[o++] = static_cast<uint8_t>(v >> 8);
    out[o++] = static_cast<uint8_t>(v);
  }
  if (rest >= 2) {
    const uint8_t a = kDecode[static_cast<uint8_t>(in[full])];
    const uint8_t b = kDecode[static_cast<uint8_t>(in[full + 1])];
    const uint8_t c = rest == 3 ? kDecode[static_cast<uint8_t>(in[full + 2])] : 0;
    if ((a | b | c) & 0xC0) return false;
    out[o++] = static_cast<uint8_t>((a << 2) | (b >> 4));
    if (rest == 2) {
      if (b & 0x0F) return false;  // non-canonical: unused bits must be zero
    } else {
      out[o++] = static_cast<uint8_t>(((b & 0x0F) << 4) | (c >> 2));
      if (c & 0x03) return false;
    }
  }
  *out_len = o;
  return true;
}

SealStatus Seal(KeyRing& ring, const uint8_t* salt, const uint8_t* payload, size_t payload_len,
                const uint8_t* aad, size_t aad_len, char* out, size_t out_cap,
                size_t* out_len) noexcept {
  *out_len = 0;
  if (payload_len > kMaxPayloadSize) return SealStatus::kPayloadTooLarge;
  if (!ring.has_seal_key_) return SealStatus::kNoSealKey;
  const size_t raw_len = kV2Overhead + payload_len;
  if (out_cap < Base64UrlLength(raw_len)) return SealStatus::kOutputTooSmall;

  uint8_t raw[kMaxRawSize];
  raw[0] = kVersion2;
  raw[1] = ring.seal_id_;
  std::memcpy(raw + kHeaderSize, salt, kSaltSize);
  uint8_t* ciphertext = raw + kV2CiphertextOffset;
  uint8_t* tag = ciphertext + payload_len;

  uint8_t key[kKeySize];
  EVP_CIPHER_CTX* ctx = ring.v2_seal_;
  int n = 0;
  bool ok = ring.DeriveV2Key(ring.seal_id_, salt, aad, aad_len, key) &&
            EVP_EncryptInit_ex(ctx, nullptr, nullptr, key, kV2Nonce) == 1;
  OPENSSL_cleanse(key, sizeof(key));
  if (ok && payload_len > 0) {
    ok = EVP_EncryptUpdate(ctx, ciphertext, &n, payload, static_cast<int>(payload_len)) == 1 &&
         static_cast<size_t>(n) == payload_len;
  }
  int tail = 0;
  ok = ok && EVP_EncryptFinal_ex(ctx, ciphertext + payload_len, &tail) == 1 && tail == 0 &&
       EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, static_cast<int>(kTagSize), tag) == 1;
  if (!ok) {
    ERR_clear_error();
    return SealStatus::kCryptoError;
  }
  *out_len = Base64UrlEncode(raw, raw_len, out, out_cap);
  return SealStatus::kOk;
}

namespace {

// The GCM tail shared by both versions: ctx is keyed and has its nonce; AAD (if any) was fed.
bool DecryptAndVerify(EVP_CIPHER_CTX* ctx, const uint8_t* ciphertext, size_t ciphertext_len,
                      const uint8_t* tag, uint8_t* payload_out) {
  int n = 0;
  bool ok = true;
  if (ciphertext_len > 0) {
    ok = EVP_DecryptUpdate(ctx, payload_out, &n, ciphertext, static_cast<int>(ciphertext_len)) ==
             1 &&
         static_cast<size_t>(n) == ciphertext_len;
  }
  int tail = 0;
  // OpenSSL takes the expected tag as non-const; it only reads it.
  return ok &&
         EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, static_cast<int>(kTagSize),
                             const_cast<uint8_t*>(tag)) == 1 &&
         EVP_DecryptFinal_ex(ctx, payload_out + ciphertext_len, &tail) == 1 && tail == 0;
}

}  // namespace

OpenStatus Open(KeyRing& ring, const char* token, size_t token_len, const uint8_t* aad,
                size_t aad_len, uint8_t* payload_out, size_t* payload_len, int* key_id,
                int* version) noexcept {
  *payload_len = 0;
  *key_id = -1;
  *version = 0;
  if (token_len == 0 || token_len > kMaxTokenChars) return OpenStatus::kMalformed;

  uint8_t raw[kMaxDecodedSize];
  size_t raw_len = 0;
  if (!Base64UrlDecode(token, token_len, raw, sizeof(raw), &raw_len) || raw_len == 0) {
    return OpenStatus::kMalformed;
  }
  const bool v2 = raw[0] == kVersion2;
  if (!v2 && raw[0] != kVersion1) return OpenStatus::kBadVersion;
  *version = raw[0];
  if (v2 ? (raw_len < kV2MinRaw || raw_len > kV2MaxRaw)
         : (raw_len < kV1MinRaw || raw_len > kV1MaxRaw)) {
    return OpenStatus::kMalformed;
  }
  const uint8_t id = raw[1];
  *key_id = id;
  if (ring.v1_open_[id] == nullptr) return OpenStatus::kUnknownKey;

  const size_t ciphertext_len = raw_len - (v2 ? kV2Overhead : kV1Overhead);
  const uint8_t* ciphertext = raw + (v2 ? kV2CiphertextOffset : kV1CiphertextOffset);
  const uint8_t* tag = raw + raw_len - kTagSize;
  bool ok;
  if (v2) {
    uint8_t key[kKeySize];
    EVP_CIPHER_CTX* ctx = ring.v2_open_;
    ok = ring.DeriveV2Key(id, raw + kHeaderSize, aad, aad_len, key) &&
         EVP_DecryptInit_ex(ctx, nullptr, nullptr, key, kV2Nonce) == 1;
    OPENSSL_cleanse(key, sizeof(key));
    ok = ok && DecryptAndVerify(ctx, ciphertext, ciphertext_len, tag, payload_out);
  } else {
    EVP_CIPHER_CTX* ctx = ring.v1_open_[id];
    ok = EVP_DecryptInit_ex(ctx, nullptr, nullptr, nullptr, raw + kHeaderSize) == 1 &&
         UpdateHeaderAndAad(ctx, raw, aad, aad_len) &&
         DecryptAndVerify(ctx, ciphertext, ciphertext_len, tag, payload_out);
  }
  if (!ok) {
    // Plaintext of an unauthenticated token must not leak to the caller.
    OPENSSL_cleanse(payload_out, ciphertext_len);
    ERR_clear_error();
    return OpenStatus::kAuthFailed;
  }
  *payload_len = ciphertext_len;
  return OpenStatus::kOk;
}

}  // namespace tether::token
