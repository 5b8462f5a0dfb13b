// HMAC-SHA256 over OpenSSL's one-shot HMAC(); see tether/hmac.h.
#include "tether/hmac.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/hmac.h>
#include <openssl/params.h>

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

namespace {

bool Equal32(const uint8_t* expected, const uint8_t* mac) {
  return CRYPTO_memcmp(expected, mac, kSha256Size) == 0;
}

}  // namespace

bool VerifySha256(const uint8_t* key, size_t key_len, const uint8_t* data, size_t data_len,
                  const uint8_t* mac, size_t mac_len) noexcept {
  if (mac == nullptr || mac_len != kSha256Size) return false;
  uint8_t expected[kSha256Size];
  if (Sha256(key, key_len, data, data_len, expected) != Status::kOk) return false;
  const bool equal = Equal32(expected, mac);
  OPENSSL_cleanse(expected, sizeof(expected));
  return equal;
}

Sha256Hmac::Sha256Hmac() noexcept {
  mac_ = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  if (mac_ != nullptr) ctx_ = EVP_MAC_CTX_new(mac_);
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end(),
  };
  if (ctx_ != nullptr && EVP_MAC_CTX_set_params(ctx_, params) != 1) {
    EVP_MAC_CTX_free(ctx_);
    ctx_ = nullptr;
  }
  if (ctx_ == nullptr) ERR_clear_error();
}

Sha256Hmac::~Sha256Hmac() {
  EVP_MAC_CTX_free(ctx_);  // cleanses the key
  EVP_MAC_free(mac_);
}

Status Sha256Hmac::Sign(const uint8_t* key, size_t key_len, const uint8_t* data, size_t data_len,
                        uint8_t* out) noexcept {
  if (ctx_ == nullptr) return Sha256(key, key_len, data, data_len, out);
  // A null key would mean "keep the previous key" to EVP_MAC_init; an empty key must be empty.
  const uint8_t empty = 0;
  if (key == nullptr) key = &empty;
  if (data == nullptr) data = &empty;
  size_t out_len = 0;
  if (EVP_MAC_init(ctx_, key, key_len, nullptr) != 1 ||
      EVP_MAC_update(ctx_, data, data_len) != 1 ||
      EVP_MAC_final(ctx_, out, &out_len, kSha256Size) != 1 || out_len != kSha256Size) {
    ERR_clear_error();
    return Status::kCryptoError;
  }
  return Status::kOk;
}

bool Sha256Hmac::Verify(const uint8_t* key, size_t key_len, const uint8_t* data, size_t data_len,
                        const uint8_t* mac, size_t mac_len) noexcept {
  if (mac == nullptr || mac_len != kSha256Size) return false;
  uint8_t expected[kSha256Size];
  if (Sign(key, key_len, data, data_len, expected) != Status::kOk) return false;
  const bool equal = Equal32(expected, mac);
  OPENSSL_cleanse(expected, sizeof(expected));
  return equal;
}

}  // namespace tether::hmac
