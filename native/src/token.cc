// Route token v1 seal/open and strict base64url; the wire format is drawn in tether/token.h.
#include "tether/token.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

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

constexpr size_t kNonceOffset = kHeaderSize;
constexpr size_t kCiphertextOffset = kHeaderSize + kNonceSize;

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

void FreeAll(std::array<EVP_CIPHER_CTX*, kKeyIdCount>& contexts) {
  for (auto& ctx : contexts) {
    EVP_CIPHER_CTX_free(ctx);  // frees and cleanses the key schedule; null is a no-op
    ctx = nullptr;
  }
}

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
  FreeAll(open_ctx_);
  EVP_CIPHER_CTX_free(seal_ctx_);
  seal_ctx_ = nullptr;
  seal_id_ = 0;
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

  std::array<EVP_CIPHER_CTX*, kKeyIdCount> fresh{};
  EVP_CIPHER_CTX* fresh_seal = NewKeyedContext(seal_key, true);
  bool ok = fresh_seal != nullptr;
  for (size_t i = 0; ok && i < count; ++i) {
    fresh[entries[i].id] = NewKeyedContext(entries[i].key, false);
    ok = fresh[entries[i].id] != nullptr;
  }
  if (!ok) {
    FreeAll(fresh);
    EVP_CIPHER_CTX_free(fresh_seal);
    ERR_clear_error();
    return RingStatus::kCryptoError;
  }
  Clear();
  open_ctx_ = fresh;
  seal_ctx_ = fresh_seal;
  seal_id_ = seal_id;
  return RingStatus::kOk;
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

SealStatus Seal(KeyRing& ring, const uint8_t* nonce, const uint8_t* payload, size_t payload_len,
                const uint8_t* aad, size_t aad_len, char* out, size_t out_cap,
                size_t* out_len) noexcept {
  *out_len = 0;
  if (payload_len > kMaxPayloadSize) return SealStatus::kPayloadTooLarge;
  EVP_CIPHER_CTX* ctx = ring.seal_ctx_;
  if (ctx == nullptr) return SealStatus::kNoSealKey;
  const size_t raw_len = kOverhead + payload_len;
  if (out_cap < Base64UrlLength(raw_len)) return SealStatus::kOutputTooSmall;

  uint8_t raw[kMaxRawSize];
  raw[0] = kVersion1;
  raw[1] = ring.seal_id_;
  std::memcpy(raw + kNonceOffset, nonce, kNonceSize);
  uint8_t* ciphertext = raw + kCiphertextOffset;
  uint8_t* tag = ciphertext + payload_len;

  int n = 0;
  bool ok = EVP_EncryptInit_ex(ctx, nullptr, nullptr, nullptr, raw + kNonceOffset) == 1 &&
            UpdateHeaderAndAad(ctx, raw, aad, aad_len);
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

OpenStatus Open(KeyRing& ring, const char* token, size_t token_len, const uint8_t* aad,
                size_t aad_len, uint8_t* payload_out, size_t* payload_len, int* key_id) noexcept {
  *payload_len = 0;
  *key_id = -1;
  if (token_len == 0 || token_len > kMaxTokenChars) return OpenStatus::kMalformed;

  uint8_t raw[kMaxDecodedSize];
  size_t raw_len = 0;
  if (!Base64UrlDecode(token, token_len, raw, sizeof(raw), &raw_len) || raw_len == 0) {
    return OpenStatus::kMalformed;
  }
  if (raw[0] != kVersion1) return OpenStatus::kBadVersion;
  if (raw_len < kMinRawSize || raw_len > kMaxRawSize) return OpenStatus::kMalformed;
  *key_id = raw[1];
  EVP_CIPHER_CTX* ctx = ring.open_ctx_[raw[1]];
  if (ctx == nullptr) return OpenStatus::kUnknownKey;

  const size_t ciphertext_len = raw_len - kOverhead;
  const uint8_t* ciphertext = raw + kCiphertextOffset;
  uint8_t* tag = raw + raw_len - kTagSize;

  int n = 0;
  bool ok = EVP_DecryptInit_ex(ctx, nullptr, nullptr, nullptr, raw + kNonceOffset) == 1 &&
            UpdateHeaderAndAad(ctx, raw, aad, aad_len);
  if (ok && ciphertext_len > 0) {
    ok = EVP_DecryptUpdate(ctx, payload_out, &n, ciphertext, static_cast<int>(ciphertext_len)) ==
             1 &&
         static_cast<size_t>(n) == ciphertext_len;
  }
  int tail = 0;
  ok = ok &&
       EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, static_cast<int>(kTagSize), tag) == 1 &&
       EVP_DecryptFinal_ex(ctx, payload_out + ciphertext_len, &tail) == 1 && tail == 0;
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
