// HMAC-SHA256 sign and constant-time verify, used for control-channel frames and the
// authorization handshake. Plain C++ over OpenSSL; no N-API, never throws, no globals.
#ifndef TETHER_HMAC_H_
#define TETHER_HMAC_H_

#include <cstddef>
#include <cstdint>

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

}  // namespace tether::hmac

#endif  // TETHER_HMAC_H_
