// HMAC-SHA256 over OpenSSL's one-shot HMAC(); see tether/hmac.h.
#include "tether/hmac.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <climits>

namespace tether::hmac {

Status Sha256(const uint8_t* key, size_t key_len, const uint8_t* data, size_t data_len,
              uint8_t* out) noexcept {
  if (key_len > static_cast<size_t>(INT_MAX)) return Status::kTooLarge;
  // OpenSSL treats a null key as "reuse the previous key"; an empty key must stay empty.
  const uint8_t empty = 0;
  if (key == nullptr) key = &empty;
  if (data == nullptr) data = &empty;
  unsigned int out_len = 0;
  if (HMAC(EVP_sha256(), key, static_cast<int>(key_len), data, data_len, out, &out_len) ==
          nullptr ||
      out_len != kSha256Size) {
    ERR_clear_error();
    return Status::kCryptoError;
  }
  return Status::kOk;
}

bool VerifySha256(const uint8_t* key, size_t key_len, const uint8_t* data, size_t data_len,
                  const uint8_t* mac, size_t mac_len) noexcept {
  if (mac == nullptr || mac_len != kSha256Size) return false;
  uint8_t expected[kSha256Size];
  if (Sha256(key, key_len, data, data_len, expected) != Status::kOk) return false;
  const bool equal = CRYPTO_memcmp(expected, mac, kSha256Size) == 0;
  OPENSSL_cleanse(expected, sizeof(expected));
  return equal;
}

}  // namespace tether::hmac
