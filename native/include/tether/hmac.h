// HMAC-SHA256 sign and constant-time verify, used for control-channel frames and the
// authorization handshake. Plain C++ over OpenSSL; no N-API, never throws, no globals.
#ifndef TETHER_HMAC_H_
#define TETHER_HMAC_H_

#include <cstddef>
#include <cstdint>

// Forward declarations keep OpenSSL headers out of this API.
typedef struct evp_mac_st EVP_MAC;
typedef struct evp_mac_ctx_st EVP_MAC_CTX;

namespace tether::hmac {

inline constexpr size_t kSha256Size = 32;

enum class Status : uint8_t {
  kOk = 0,
  kTooLarge = 1,     // key longer than OpenSSL's int length
  kCryptoError = 2,  // OpenSSL failed (allocation, provider)
};

// out receives kSha256Size bytes. key/data may be null when their length is 0.
Status Sha256(const uint8_t* key, size_t key_len, const uint8_t* data, size_t data_len,
              uint8_t* out) noexcept;

// True only when mac is exactly kSha256Size bytes and equals HMAC-SHA256(key, data). The
// comparison takes the same time wherever the first difference is (CRYPTO_memcmp); a wrong
// length is rejected at once, since the expected length is public.
bool VerifySha256(const uint8_t* key, size_t key_len, const uint8_t* data, size_t data_len,
                  const uint8_t* mac, size_t mac_len) noexcept;

// The same operations with the HMAC and SHA-256 implementations looked up once: OpenSSL 3
// otherwise fetches them by name, under a lock, on every call, which costs more than hashing a
// control frame. Not thread-safe: one per thread (the addon keeps one per thread). If OpenSSL
// cannot provide them at construction, every call falls back to the one-shot functions above.
class Sha256Hmac {
 public:
  Sha256Hmac() noexcept;
  ~Sha256Hmac();
  Sha256Hmac(const Sha256Hmac&) = delete;
  Sha256Hmac& operator=(const Sha256Hmac&) = delete;

  Status Sign(const uint8_t* key, size_t key_len, const uint8_t* data, size_t data_len,
              uint8_t* out) noexcept;
  bool Verify(const uint8_t* key, size_t key_len, const uint8_t* data, size_t data_len,
              const uint8_t* mac, size_t mac_len) noexcept;

 private:
  EVP_MAC* mac_ = nullptr;
  EVP_MAC_CTX* ctx_ = nullptr;
};

}  // namespace tether::hmac

#endif  // TETHER_HMAC_H_
