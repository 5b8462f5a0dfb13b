// AES-256-GCM sealing under a caller's key: the authorization handshake's boxes (src/authz/
// protocol.ts seal: nonce | ciphertext | tag, the key derived per grant by HKDF). A pure function
// of its bytes; the class only keeps one cipher context per thread, so the cipher is fetched once
// and each seal only schedules its key.
#ifndef TETHER_AEAD_H_
#define TETHER_AEAD_H_

#include <cstddef>
#include <cstdint>

typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;

namespace tether::aead {

inline constexpr size_t kKeySize = 32;
inline constexpr size_t kNonceSize = 12;
inline constexpr size_t kTagSize = 16;
/** Largest plaintext or additional data one call takes (the boxes are a few hundred bytes). */
inline constexpr size_t kMaxInput = 64 * 1024;

enum class Status : uint8_t {
  kOk = 0,
  kTooLarge = 1,     // plaintext or additional data over kMaxInput
  kCryptoError = 2,  // OpenSSL failed (allocation, provider)
};

class Aes256GcmSealer {
 public:
  Aes256GcmSealer() noexcept;
  ~Aes256GcmSealer();
  Aes256GcmSealer(const Aes256GcmSealer&) = delete;
  Aes256GcmSealer& operator=(const Aes256GcmSealer&) = delete;

  // Encrypts plaintext under key (kKeySize bytes) and nonce (kNonceSize bytes), authenticating
  // aad too; writes the ciphertext (plaintext_len bytes) then the tag (kTagSize bytes) to out,
  // which must hold plaintext_len + kTagSize bytes. On any failure out is zeroed.
  Status Seal(const uint8_t* key, const uint8_t* nonce, const uint8_t* aad, size_t aad_len,
              const uint8_t* plaintext, size_t plaintext_len, uint8_t* out) noexcept;

 private:
  EVP_CIPHER_CTX* ctx_ = nullptr;
};

}  // namespace tether::aead

#endif  // TETHER_AEAD_H_
