// Route tokens: seal and open the small encrypted, authenticated blob that names a sticky
// backend. Plain C++ over OpenSSL EVP (HKDF-SHA256 + AES-256-GCM); no N-API, never throws, no
// globals. Tokens are base64url, no padding, canonical: exactly one spelling per token.
//
// Format v2 (sealed from now on): a fresh AES key per token.
//
//    0         1         2                      18                         18+n        34+n
//   +---------+---------+-----------------------+--------------------------+-----------+
//   | version |  keyId  |         salt          |  ciphertext (n bytes)    |    tag    |
//   |  0x02   |  0..255 |   16 random bytes     |  AES-256-GCM(payload)    |  16 bytes |
//   +---------+---------+-----------------------+--------------------------+-----------+
//
//   PRK   = HKDF-Extract(salt = "tether route token v2", IKM = ring key keyId)  once per key
//   info  = 0x02 | keyId | salt | caller AAD            (caller AAD = pool and mode)
//   K     = HKDF-Expand(PRK, info, 32) = HMAC-SHA256(PRK, info | 0x01)          per token
//   token = AES-256-GCM(K, nonce = 12 zero bytes, AAD = empty, payload)
//
//   Every header byte, the salt, the pool and the mode go into K, so editing any of them (or
//   presenting the token to another pool or mode) yields another key and a failed tag. Each K
//   seals exactly one token, so GCM's per-key limits never come into play; what bounds a ring
//   key is a repeated 128-bit salt: 2^48 tokens per key keep that chance below 2^-32.
//   n = 0..255, so a raw v2 token is 34..289 bytes and 46..386 characters.
//
// Format v1 (opened only, for tokens clients still hold; never sealed any more):
//
//    0         1         2                      14                         14+n        30+n
//   +---------+---------+-----------------------+--------------------------+-----------+
//   | version |  keyId  |        nonce          |  ciphertext (n bytes)    |    tag    |
//   |  0x01   |  0..255 |      12 bytes         |  AES-256-GCM(payload)    |  16 bytes |
//   +---------+---------+-----------------------+--------------------------+-----------+
//
//   AES-256-GCM under the ring key itself with a random nonce; GCM AAD = version | keyId |
//   caller AAD. Random 96-bit nonces cap a key at 2^32 seals (NIST SP 800-38D), which a busy
//   fleet reaches in a day: the reason for v2. A raw v1 token is 30..285 bytes.
//
// Open checks, in this order (the JS reference in src/native/reference.ts keeps the same one):
//   1. length 1..kMaxTokenChars, alphabet A-Z a-z 0-9 - _, length % 4 != 1,
//      unused trailing bits zero                          else kMalformed
//   2. raw[0] is 0x01 or 0x02                             else kBadVersion
//   3. raw length 30..285 (v1) or 34..289 (v2)            else kMalformed
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
inline constexpr uint8_t kVersion2 = 0x02;
inline constexpr size_t kHeaderSize = 2;
inline constexpr size_t kNonceSize = 12;  // v1
inline constexpr size_t kSaltSize = 16;   // v2
inline constexpr size_t kTagSize = 16;
inline constexpr size_t kKeySize = 32;
inline constexpr size_t kKeyIdCount = 256;
inline constexpr size_t kMaxPayloadSize = 255;
inline constexpr size_t kV1Overhead = kHeaderSize + kNonceSize + kTagSize;  // 30
inline constexpr size_t kV2Overhead = kHeaderSize + kSaltSize + kTagSize;   // 34
inline constexpr size_t kMaxRawSize = kV2Overhead + kMaxPayloadSize;        // 289
// HKDF-Extract's salt for v2 (a fixed label: the per-token salt goes into Expand's info).
inline constexpr char kV2Label[] = "tether route token v2";

// Characters needed for n bytes of unpadded base64url.
constexpr size_t Base64UrlLength(size_t n) { return (n / 3) * 4 + (n % 3 == 0 ? 0 : n % 3 + 1); }

inline constexpr size_t kMaxSealedChars = Base64UrlLength(kMaxRawSize);  // 386
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

// HMAC-SHA256 keyed with one v2 PRK: the SHA-256 states after its inner and outer pads
// (defined in token.cc).
struct PrkState;

// The keys that open tokens, and the one that seals. Everything per key is prepared once: the
// v1 AES key schedule (v1 tokens only open) and the v2 PRK's HMAC pad states, so a token's
// HKDF-Expand costs two SHA-256 blocks and two struct copies.
// Not thread-safe: one ring per thread (the addon keeps one per object, and every worker thread
// has its own objects).
class KeyRing {
 public:
  KeyRing() = default;
  ~KeyRing();
  KeyRing(const KeyRing&) = delete;
  KeyRing& operator=(const KeyRing&) = delete;

  // Replaces every key. All or nothing: on any failure the previous ring is kept.
  RingStatus Set(const KeyEntry* entries, size_t count, uint8_t seal_id) noexcept;
  void Clear() noexcept;

  bool Has(uint8_t id) const noexcept { return v1_open_[id] != nullptr; }
  bool HasSealKey() const noexcept { return has_seal_key_; }
  uint8_t seal_id() const noexcept { return seal_id_; }

 private:
  friend SealStatus Seal(KeyRing&, const uint8_t*, const uint8_t*, size_t, const uint8_t*, size_t,
                         char*, size_t, size_t*) noexcept;
  friend OpenStatus Open(KeyRing&, const char*, size_t, const uint8_t*, size_t, uint8_t*, size_t*,
                         int*, int*) noexcept;

  // K = HKDF-Expand(PRK[id], 0x02 | id | salt | aad, 32) into out (kKeySize bytes).
  bool DeriveV2Key(uint8_t id, const uint8_t* salt, const uint8_t* aad, size_t aad_len,
                   uint8_t* out) noexcept;

  std::array<EVP_CIPHER_CTX*, kKeyIdCount> v1_open_{};  // v1 decrypt contexts, by key id
  std::array<PrkState*, kKeyIdCount> v2_prk_{};         // v2 PRK pad states, by key id
  EVP_CIPHER_CTX* v2_seal_ = nullptr;                   // AES-256-GCM, re-keyed per token
  EVP_CIPHER_CTX* v2_open_ = nullptr;
  uint8_t seal_id_ = 0;
  bool has_seal_key_ = false;
};

// Seals payload as a v2 token under the ring's seal key and the caller's salt (kSaltSize
// bytes; must be random and never reused: the addon draws it from RAND_bytes) and writes the
// base64url token to out (no terminator). out_cap >= kMaxSealedChars always suffices.
SealStatus Seal(KeyRing& ring, const uint8_t* salt, const uint8_t* payload, size_t payload_len,
                const uint8_t* aad, size_t aad_len, char* out, size_t out_cap,
                size_t* out_len) noexcept;

// Opens a v1 or v2 token. payload_out must hold kMaxPayloadSize bytes; on kOk *payload_len is
// set. *key_id is the header's key id once the header was read (kUnknownKey, kAuthFailed, kOk),
// else -1; *version is raw[0] once it was read and is 1 or 2, else 0. Never reads past
// token + token_len.
OpenStatus Open(KeyRing& ring, const char* token, size_t token_len, const uint8_t* aad,
                size_t aad_len, uint8_t* payload_out, size_t* payload_len, int* key_id,
                int* version) noexcept;

// Unpadded base64url. Encode writes exactly Base64UrlLength(len) chars; out_cap must allow it.
size_t Base64UrlEncode(const uint8_t* in, size_t len, char* out, size_t out_cap) noexcept;

// Strict decode: rejects characters outside the alphabet, padding, length % 4 == 1 and
// non-zero unused trailing bits, so every byte string has exactly one accepted spelling.
// Returns false on any of those or when the result would exceed out_cap.
bool Base64UrlDecode(const char* in, size_t len, uint8_t* out, size_t out_cap,
                     size_t* out_len) noexcept;

}  // namespace tether::token

#endif  // TETHER_TOKEN_H_
