// Route token v1: seal and open the small encrypted, authenticated blob that names a sticky
// backend. Plain C++ over OpenSSL EVP (AES-256-GCM); no N-API, never throws, no globals.
//
// Wire format (then base64url, no padding, canonical: exactly one spelling per token):
//
//    0         1         2                      14                         14+n        30+n
//   +---------+---------+-----------------------+--------------------------+-----------+
//   | version |  keyId  |        nonce          |  ciphertext (n bytes)    |    tag    |
//   |  0x01   |  0..255 |      12 bytes         |  AES-256-GCM(payload)    |  16 bytes |
//   +---------+---------+-----------------------+--------------------------+-----------+
//
//   n = payload length, 0..255, so a raw token is 30..285 bytes and 40..380 characters.
//   GCM additional authenticated data = version | keyId | caller AAD, so a token whose header
//   was edited (or that was minted for another pool/mode) fails authentication.
//
// Open checks, in this order (the JS reference in src/native/reference.ts keeps the same one):
//   1. length 1..kMaxTokenChars, alphabet A-Z a-z 0-9 - _, length % 4 != 1,
//      unused trailing bits zero                          else kMalformed
//   2. raw[0] == 0x01                                     else kBadVersion
//   3. raw length 30..285                                 else kMalformed
//   4. raw[1] names a key in the ring                     else kUnknownKey
//   5. GCM tag verifies                                   else kAuthFailed
#ifndef TETHER_TOKEN_H_
#define TETHER_TOKEN_H_

#include <array>
#include <cstddef>
#include <cstdint>

// Forward declaration keeps OpenSSL headers out of this API.
typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;

namespace tether::token {

inline constexpr uint8_t kVersion1 = 0x01;
inline constexpr size_t kHeaderSize = 2;
inline constexpr size_t kNonceSize = 12;
inline constexpr size_t kTagSize = 16;
inline constexpr size_t kKeySize = 32;
inline constexpr size_t kKeyIdCount = 256;
inline constexpr size_t kMaxPayloadSize = 255;
inline constexpr size_t kOverhead = kHeaderSize + kNonceSize + kTagSize;  // 30
inline constexpr size_t kMinRawSize = kOverhead;
inline constexpr size_t kMaxRawSize = kOverhead + kMaxPayloadSize;  // 285

// Characters needed for n bytes of unpadded base64url.
constexpr size_t Base64UrlLength(size_t n) { return (n / 3) * 4 + (n % 3 == 0 ? 0 : n % 3 + 1); }

inline constexpr size_t kMaxSealedChars = Base64UrlLength(kMaxRawSize);  // 380
// Inputs longer than this are rejected before any decoding work.
inline constexpr size_t kMaxTokenChars = 512;
// Largest raw size a kMaxTokenChars input can decode to; size of decode scratch buffers.
inline constexpr size_t kMaxDecodedSize = kMaxTokenChars / 4 * 3;  // 384

enum class OpenStatus : uint8_t {
  kOk = 0,
  kMalformed = 1,
  kBadVersion = 2,
  kUnknownKey = 3,
  kAuthFailed = 4,
};

enum class SealStatus : uint8_t {
  kOk = 0,
  kPayloadTooLarge = 1,
  kNoSealKey = 2,
  kOutputTooSmall = 3,
  kCryptoError = 4,
};

enum class RingStatus : uint8_t {
  kOk = 0,
  kDuplicateId = 1,
  kSealKeyMissing = 2,
  kCryptoError = 3,
};

struct KeyEntry {
  uint8_t id;
  const uint8_t* key;  // kKeySize bytes
};

// The keys that open tokens, and the one that seals. Each key is scheduled once into an
// OpenSSL context that is reused for every token (re-keying per call costs more than the
// encryption itself). Not thread-safe: one ring per thread (the addon keeps one per object,
// and every worker thread has its own objects).
class KeyRing {
 public:
  KeyRing() = default;
  ~KeyRing();
  KeyRing(const KeyRing&) = delete;
  KeyRing& operator=(const KeyRing&) = delete;

  // Replaces every key. All or nothing: on any failure the previous ring is kept.
  RingStatus Set(const KeyEntry* entries, size_t count, uint8_t seal_id) noexcept;
  void Clear() noexcept;

  bool Has(uint8_t id) const noexcept { return open_ctx_[id] != nullptr; }
  bool HasSealKey() const noexcept { return seal_ctx_ != nullptr; }
  uint8_t seal_id() const noexcept { return seal_id_; }

 private:
  friend SealStatus Seal(KeyRing&, const uint8_t*, const uint8_t*, size_t, const uint8_t*, size_t,
                         char*, size_t, size_t*) noexcept;
  friend OpenStatus Open(KeyRing&, const char*, size_t, const uint8_t*, size_t, uint8_t*, size_t*,
                         int*) noexcept;

  std::array<EVP_CIPHER_CTX*, kKeyIdCount> open_ctx_{};  // decrypt contexts, by key id
  EVP_CIPHER_CTX* seal_ctx_ = nullptr;                    // encrypt context for seal_id_
  uint8_t seal_id_ = 0;
};

// Seals payload under the ring's seal key with the caller's nonce (kNonceSize bytes, must
// never repeat under one key: the addon draws it from RAND_bytes) and writes the base64url
// token to out (no terminator). out_cap >= kMaxSealedChars always suffices.
SealStatus Seal(KeyRing& ring, const uint8_t* nonce, const uint8_t* payload, size_t payload_len,
                const uint8_t* aad, size_t aad_len, char* out, size_t out_cap,
                size_t* out_len) noexcept;

// Opens a token. payload_out must hold kMaxPayloadSize bytes; on kOk *payload_len is set.
// *key_id is the header's key id once the header was read (kUnknownKey, kAuthFailed, kOk),
// else -1. Never reads past token + token_len.
OpenStatus Open(KeyRing& ring, const char* token, size_t token_len, const uint8_t* aad,
                size_t aad_len, uint8_t* payload_out, size_t* payload_len, int* key_id) noexcept;

// Unpadded base64url. Encode writes exactly Base64UrlLength(len) chars; out_cap must allow it.
size_t Base64UrlEncode(const uint8_t* in, size_t len, char* out, size_t out_cap) noexcept;

// Strict decode: rejects characters outside the alphabet, padding, length % 4 == 1 and
// non-zero unused trailing bits, so every byte string has exactly one accepted spelling.
// Returns false on any of those or when the result would exceed out_cap.
bool Base64UrlDecode(const char* in, size_t len, uint8_t* out, size_t out_cap,
                     size_t* out_len) noexcept;

}  // namespace tether::token

#endif  // TETHER_TOKEN_H_
