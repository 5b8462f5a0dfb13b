// AES-256-GCM sealing under a caller's key; see tether/aead.h.
#include "tether/aead.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include <cstring>

namespace tether::aead {

Aes256GcmSealer::Aes256GcmSealer() noexcept {
  ctx_ = EVP_CIPHER_CTX_new();
  // The cipher once, without a key: each Seal then only schedules its key and sets its nonce.
  if (ctx_ != nullptr && EVP_EncryptInit_ex(ctx_, EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1) {
    EVP_CIPHER_CTX_free(ctx_);
    ctx_ = nullptr;
    ERR_clear_error();
  }
}

Aes256GcmSealer::~Aes256GcmSealer() { EVP_CIPHER_CTX_free(ctx_); }

Status Aes256GcmSealer::Seal(const uint8_t* key, const uint8_t* nonce, const uint8_t* aad,
                             size_t aad_len, const uint8_t* plaintext, size_t plaintext_len,
                             uint8_t* out) noexcept {
  if (aad_len > kMaxInput || plaintext_len > kMaxInput) return Status::kTooLarge;
  if (ctx_ == nullptr) return Status::kCryptoError;
  int n = 0;
  bool ok = EVP_EncryptInit_ex(ctx_, nullptr, nullptr, key, nonce) == 1;
  if (ok && aad_len > 0) ok = EVP_EncryptUpdate(ctx_, nullptr, &n, aad, static_cast<int>(aad_len)) == 1;
  if (ok && plaintext_len > 0) {
    ok = EVP_EncryptUpdate(ctx_, out, &n, plaintext, static_cast<int>(plaintext_len)) == 1 &&
         static_cast<size_t>(n) == plaintext_len;
  }
  int tail = 0;
  ok = ok && EVP_EncryptFinal_ex(ctx_, out + plaintext_len, &tail) == 1 && tail == 0 &&
       EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_GCM_GET_TAG, static_cast<int>(kTagSize),
                           out + plaintext_len) == 1;
  if (!ok) {
    OPENSSL_cleanse(out, plaintext_len + kTagSize);
    ERR_clear_error();
    return Status::kCryptoError;
  }
  return Status::kOk;
}

}  // namespace tether::aead
