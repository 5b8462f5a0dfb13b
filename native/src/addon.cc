// The only file that touches N-API: argument checks, JS values, errors. The work lives in
// token.cc, hmac.cc and client_hello.cc. State is per thread (Napi::Addon + one KeyRing per
// TokenCrypto object), never static, because the addon is loaded once in every worker thread.
#include <napi.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "tether/aead.h"
#include "tether/client_hello.h"
#include "tether/hmac.h"
#include "tether/listen_socket.h"
#include "tether/malloc_tuning.h"
#include "tether/token.h"

namespace {

namespace token = tether::token;
namespace hmac = tether::hmac;
namespace aead = tether::aead;
namespace client_hello = tether::client_hello;
namespace listen_socket = tether::listen_socket;
namespace malloc_tuning = tether::malloc_tuning;

// Stable codes; the JS side (src/native/index.ts) documents them with the rest.
constexpr const char* kErrArgType = "TETHER_ERR_INVALID_ARG_TYPE";
constexpr const char* kErrArgValue = "TETHER_ERR_INVALID_ARG_VALUE";
constexpr const char* kErrNoSealKey = "TETHER_ERR_NO_SEAL_KEY";
constexpr const char* kErrCrypto = "TETHER_ERR_CRYPTO";

enum class ErrorKind { kError, kType, kRange };

void Throw(Napi::Env env, ErrorKind kind, const char* code, const std::string& message) {
  Napi::Error err = kind == ErrorKind::kType    ? Napi::TypeError::New(env, message)
                    : kind == ErrorKind::kRange ? Napi::RangeError::New(env, message)
                                                : Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  err.ThrowAsJavaScriptException();
}

struct Bytes {
  const uint8_t* data = nullptr;
  size_t size = 0;
};

// One cheap check-and-read: a Uint8Array (Buffer included) or nothing.
bool GetBytes(napi_env env, napi_value value, Bytes* out) {
  bool is_typed_array = false;
  if (napi_is_typedarray(env, value, &is_typed_array) != napi_ok || !is_typed_array) return false;
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  if (napi_get_typedarray_info(env, value, &type, &length, &data, nullptr, nullptr) != napi_ok ||
      type != napi_uint8_array) {
    return false;
  }
  out->data = static_cast<const uint8_t*>(data);
  out->size = length;
  return true;
}

bool RequireBytes(const Napi::CallbackInfo& info, size_t index, const char* name, Bytes* out) {
  if (GetBytes(info.Env(), info[index], out)) return true;
  Throw(info.Env(), ErrorKind::kType, kErrArgType,
        std::string("expected a Uint8Array for ") + name);
  return false;
}

// Open result packed into one int32 so the hot path returns no object: bits 0-7 status,
// bits 8-16 keyId + 1 (0 = no key id), bits 17-24 payload length, bits 25-26 format version
// (0 = not read).
int32_t PackOpenResult(token::OpenStatus status, int key_id, size_t payload_len, int version) {
  return static_cast<int32_t>(static_cast<uint32_t>(status) |
                              (static_cast<uint32_t>(key_id + 1) << 8) |
                              (static_cast<uint32_t>(payload_len) << 17) |
                              (static_cast<uint32_t>(version) << 25));
}

// Random salts drawn in batches: one RAND_bytes call costs about a microsecond under its
// locks, more than the sealing itself, while 2 KiB costs hardly more than 16 bytes.
class SaltPool {
 public:
  bool Next(uint8_t* salt) {
    if (used_ == sizeof(pool_)) {
      if (RAND_bytes(pool_, sizeof(pool_)) != 1) {
        ERR_clear_error();
        return false;
      }
      used_ = 0;
    }
    std::memcpy(salt, pool_ + used_, token::kSaltSize);
    OPENSSL_cleanse(pool_ + used_, token::kSaltSize);
    used_ += token::kSaltSize;  // each salt is handed out once
    return true;
  }

 private:
  uint8_t pool_[token::kSaltSize * 128];
  size_t used_ = sizeof(pool_);
};

class TokenCryptoWrap : public Napi::ObjectWrap<TokenCryptoWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "TokenCrypto",
                       {
                           InstanceMethod<&TokenCryptoWrap::SetKeyRing>("setKeyRing"),
                           InstanceMethod<&TokenCryptoWrap::Seal>("seal"),
                           InstanceMethod<&TokenCryptoWrap::SealWithSalt>("sealWithSalt"),
                           InstanceMethod<&TokenCryptoWrap::Open>("open"),
                       });
  }

  explicit TokenCryptoWrap(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<TokenCryptoWrap>(info) {}

 private:
  // setKeyRing(ids: Uint8Array(n), keys: Uint8Array(32 n), sealKeyId: number): undefined
  Napi::Value SetKeyRing(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Bytes ids, keys;
    if (!RequireBytes(info, 0, "key ids", &ids) || !RequireBytes(info, 1, "keys", &keys)) {
      return env.Undefined();
    }
    if (!info[2].IsNumber()) {
      Throw(env, ErrorKind::kType, kErrArgType, "expected a number for sealKeyId");
      return env.Undefined();
    }
    const double seal_id = info[2].As<Napi::Number>().DoubleValue();
    if (!(seal_id >= 0 && seal_id <= 255 && seal_id == static_cast<int>(seal_id))) {
      Throw(env, ErrorKind::kRange, kErrArgValue, "expected an integer 0..255 for sealKeyId");
      return env.Undefined();
    }
    if (ids.size > token::kKeyIdCount || keys.size != ids.size * token::kKeySize) {
      Throw(env, ErrorKind::kRange, kErrArgValue,
            "expected at most 256 key ids and 32 key bytes per id");
      return env.Undefined();
    }
    token::KeyEntry entries[token::kKeyIdCount];
    for (size_t i = 0; i < ids.size; ++i) {
      entries[i] = token::KeyEntry{ids.data[i], keys.data + i * token::kKeySize};
    }
    switch (ring_.Set(entries, ids.size, static_cast<uint8_t>(seal_id))) {
      case token::RingStatus::kOk:
        break;
      case token::RingStatus::kDuplicateId:
        Throw(env, ErrorKind::kRange, kErrArgValue, "expected unique key ids");
        break;
      case token::RingStatus::kSealKeyMissing:
        Throw(env, ErrorKind::kRange, kErrArgValue, "expected sealKeyId to name a key in the ring");
        break;
      case token::RingStatus::kCryptoError:
        Throw(env, ErrorKind::kError, kErrCrypto, "OpenSSL could not schedule the key ring");
        break;
    }
    return env.Undefined();
  }

  // seal(payload: Uint8Array, aad: Uint8Array): string, a v2 token with a fresh random salt.
  Napi::Value Seal(const Napi::CallbackInfo& info);  // defined after TetherAddon

  // sealWithSalt(payload, aad, salt: Uint8Array(16)): string. For known-answer tests only:
  // a salt must never repeat under one key.
  Napi::Value SealWithSalt(const Napi::CallbackInfo& info) {
    Bytes salt;
    if (!RequireBytes(info, 2, "salt", &salt)) return info.Env().Undefined();
    if (salt.size != token::kSaltSize) {
      Throw(info.Env(), ErrorKind::kRange, kErrArgValue, "expected a 16-byte salt");
      return info.Env().Undefined();
    }
    return SealWith(info, salt.data);
  }

  Napi::Value SealWith(const Napi::CallbackInfo& info, const uint8_t* salt) {
    Napi::Env env = info.Env();
    Bytes payload, aad;
    if (!RequireBytes(info, 0, "payload", &payload) || !RequireBytes(info, 1, "aad", &aad)) {
      return env.Undefined();
    }
    char out[token::kMaxSealedChars];
    size_t out_len = 0;
    switch (token::Seal(ring_, salt, payload.data, payload.size, aad.data, aad.size, out,
                        sizeof(out), &out_len)) {
      case token::SealStatus::kOk: {
        napi_value result;
        napi_create_string_latin1(env, out, out_len, &result);
        return Napi::Value(env, result);
      }
      case token::SealStatus::kPayloadTooLarge:
        Throw(env, ErrorKind::kRange, kErrArgValue, "expected a payload of at most 255 bytes");
        break;
      case token::SealStatus::kNoSealKey:
        Throw(env, ErrorKind::kError, kErrNoSealKey, "no key ring: call setKeyRing() first");
        break;
      case token::SealStatus::kOutputTooSmall:
      case token::SealStatus::kCryptoError:
        Throw(env, ErrorKind::kError, kErrCrypto, "OpenSSL could not seal the token");
        break;
    }
    return env.Undefined();
  }

  // open(token: string, aad: Uint8Array, out: Uint8Array(>= 255)): packed int32 (see
  // PackOpenResult); on Ok the payload is in out[0, len). Bad token content is a status.
  Napi::Value Open(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Bytes aad, out;
    if (!RequireBytes(info, 1, "aad", &aad) || !RequireBytes(info, 2, "out", &out)) {
      return env.Undefined();
    }
    if (out.size < token::kMaxPayloadSize) {
      Throw(env, ErrorKind::kRange, kErrArgValue, "expected an out buffer of at least 255 bytes");
      return env.Undefined();
    }
    // UTF-16 keeps one unit per JS character, so the cap is exact and no character is folded
    // onto an ASCII one (latin1 would turn U+0141 into 'A' and give a token two spellings).
    char16_t wide[token::kMaxTokenChars + 2];
    size_t length = 0;
    if (napi_get_value_string_utf16(env, info[0], wide, sizeof(wide) / sizeof(wide[0]), &length) !=
        napi_ok) {
      Throw(env, ErrorKind::kType, kErrArgType, "expected a string for token");
      return env.Undefined();
    }
    token::OpenStatus status = token::OpenStatus::kMalformed;
    int key_id = -1;
    int version = 0;
    size_t payload_len = 0;
    if (length <= token::kMaxTokenChars) {
      char narrow[token::kMaxTokenChars];
      for (size_t i = 0; i < length; ++i) {
        narrow[i] = wide[i] < 0x80 ? static_cast<char>(wide[i]) : '\x80';  // '\x80' is invalid
      }
      // The core never writes more than kMaxPayloadSize bytes, checked above.
      status = token::Open(ring_, narrow, length, aad.data, aad.size,
                           const_cast<uint8_t*>(out.data), &payload_len, &key_id, &version);
    }
    napi_value result;
    napi_create_int32(env, PackOpenResult(status, key_id, payload_len, version), &result);
    return Napi::Value(env, result);
  }

  token::KeyRing ring_;
};

class TetherAddon : public Napi::Addon<TetherAddon> {
 public:
  TetherAddon(Napi::Env env, Napi::Object exports) {
    Napi::Function token_crypto = TokenCryptoWrap::Define(env);
    token_crypto_constructor_ = Napi::Persistent(token_crypto);
    Napi::Object limits = Napi::Object::New(env);
    limits.Set("maxPayloadBytes", Napi::Number::New(env, token::kMaxPayloadSize));
    limits.Set("maxTokenChars", Napi::Number::New(env, token::kMaxTokenChars));
    limits.Set("keySize", Napi::Number::New(env, token::kKeySize));
    limits.Set("saltSize", Napi::Number::New(env, token::kSaltSize));
    DefineAddon(exports, {
                             InstanceValue("TokenCrypto", token_crypto, napi_enumerable),
                             InstanceValue("tokenLimits", limits, napi_enumerable),
                             InstanceMethod<&TetherAddon::HmacSha256>("hmacSha256",
                                                                      napi_enumerable),
                             InstanceMethod<&TetherAddon::HmacVerify>("hmacVerify",
                                                                      napi_enumerable),
                             InstanceMethod<&TetherAddon::AesGcmSeal>("aesGcmSeal",
                                                                      napi_enumerable),
                             InstanceMethod<&TetherAddon::OpenReusePortListener>(
                                 "openReusePortListener", napi_enumerable),
                             InstanceMethod<&TetherAddon::SetMallocTrimThreshold>(
                                 "setMallocTrimThreshold", napi_enumerable),
                             InstanceMethod<&TetherAddon::ParseClientHello>("parseClientHello",
                                                                            napi_enumerable),
                         });
  }

 private:
  // openReusePortListener(host: string, port: number, backlog: number): fd. A failed system
  // call throws an Error whose code is the errno name (EADDRINUSE, EACCES, …) and whose
  // message names the call and the address.
  Napi::Value OpenReusePortListener(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsString() || !info[1].IsNumber() || !info[2].IsNumber()) {
      Throw(env, ErrorKind::kType, kErrArgType, "expected (host: string, port: number, backlog: number)");
      return env.Undefined();
    }
    std::string host = info[0].As<Napi::String>().Utf8Value();
    double port = info[1].As<Napi::Number>().DoubleValue();
    double backlog = info[2].As<Napi::Number>().DoubleValue();
    if (host.size() > 64 || host.find('\0') != std::string::npos || !(port >= 0 && port <= 65535) ||
        port != static_cast<double>(static_cast<int>(port)) || !(backlog >= 1 && backlog <= 65535)) {
      Throw(env, ErrorKind::kRange, kErrArgValue, "expected a numeric address, a port in 0..65535 and a backlog in 1..65535");
      return env.Undefined();
    }
    listen_socket::Result r = listen_socket::OpenReusePort(host.c_str(), static_cast<uint16_t>(port),
                                                           static_cast<int>(backlog));
    if (r.fd < 0) {
      const char* name = r.error == EADDRINUSE      ? "EADDRINUSE"
                         : r.error == EACCES        ? "EACCES"
                         : r.error == EADDRNOTAVAIL ? "EADDRNOTAVAIL"
                         : r.error == EINVAL        ? "EINVAL"
                         : r.error == EMFILE        ? "EMFILE"
                                                    : "ESYSCALL";
      Throw(env, ErrorKind::kError, name,
            std::string(r.call) + " for " + host + ":" + std::to_string(static_cast<int>(port)) +
                " failed: " + std::strerror(r.error));
      return env.Undefined();
    }
    return Napi::Number::New(env, r.fd);
  }

  // setMallocTrimThreshold(bytes: integer in 1..2^31-1): boolean — false where the C library
  // has no such setting (tether/malloc_tuning.h).
  Napi::Value SetMallocTrimThreshold(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsNumber()) {
      Throw(env, ErrorKind::kType, kErrArgType, "expected (bytes: number)");
      return env.Undefined();
    }
    double bytes = info[0].As<Napi::Number>().DoubleValue();
    if (!(bytes >= 1 && bytes <= 2147483647.0) || bytes != static_cast<double>(static_cast<int>(bytes))) {
      Throw(env, ErrorKind::kRange, kErrArgValue, "expected a whole number of bytes in 1..2147483647");
      return env.Undefined();
    }
    return Napi::Boolean::New(env, malloc_tuning::SetTrimThreshold(static_cast<int>(bytes)));
  }

  // hmacSha256(key, data, out: Uint8Array(>= 32)): undefined. The caller allocates out, so
  // the result comes from the JS buffer pool instead of a fresh native allocation.
  Napi::Value HmacSha256(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Bytes key, data, out;
    if (!RequireBytes(info, 0, "key", &key) || !RequireBytes(info, 1, "data", &data) ||
        !RequireBytes(info, 2, "out", &out)) {
      return env.Undefined();
    }
    if (out.size < hmac::kSha256Size) {
      Throw(env, ErrorKind::kRange, kErrArgValue, "expected an out buffer of at least 32 bytes");
      return env.Undefined();
    }
    if (hmac_.Sign(key.data, key.size, data.data, data.size, const_cast<uint8_t*>(out.data)) !=
        hmac::Status::kOk) {
      Throw(env, ErrorKind::kError, kErrCrypto, "OpenSSL could not compute HMAC-SHA256");
    }
    return env.Undefined();
  }

  // hmacVerify(key, data, mac): boolean, constant time in the content of mac.
  Napi::Value HmacVerify(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Bytes key, data, mac;
    if (!RequireBytes(info, 0, "key", &key) || !RequireBytes(info, 1, "data", &data) ||
        !RequireBytes(info, 2, "mac", &mac)) {
      return env.Undefined();
    }
    return Napi::Boolean::New(
        env, hmac_.Verify(key.data, key.size, data.data, data.size, mac.data, mac.size));
  }

  // aesGcmSeal(key, nonce, aad, plaintext, out): AES-256-GCM; writes ciphertext | tag to out
  // (plaintext.length + 16 bytes). Sizes are checked here; the facade checks types.
  Napi::Value AesGcmSeal(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Bytes key, nonce, aad, plaintext, out;
    if (!RequireBytes(info, 0, "key", &key) || !RequireBytes(info, 1, "nonce", &nonce) ||
        !RequireBytes(info, 2, "aad", &aad) || !RequireBytes(info, 3, "plaintext", &plaintext) ||
        !RequireBytes(info, 4, "out", &out)) {
      return env.Undefined();
    }
    if (key.size != aead::kKeySize || nonce.size != aead::kNonceSize) {
      Throw(env, ErrorKind::kRange, kErrArgValue, "expected a 32-byte key and a 12-byte nonce");
      return env.Undefined();
    }
    if (plaintext.size > aead::kMaxInput || aad.size > aead::kMaxInput) {
      Throw(env, ErrorKind::kRange, kErrArgValue, "expected a plaintext and additional data of at most 65536 bytes");
      return env.Undefined();
    }
    if (out.size != plaintext.size + aead::kTagSize) {
      Throw(env, ErrorKind::kRange, kErrArgValue, "expected an out buffer of plaintext.length + 16 bytes");
      return env.Undefined();
    }
    if (sealer_.Seal(key.data, nonce.data, aad.data, aad.size, plaintext.data, plaintext.size,
                     const_cast<uint8_t*>(out.data)) != aead::Status::kOk) {
      Throw(env, ErrorKind::kError, kErrCrypto, "OpenSSL could not seal with AES-256-GCM");
    }
    return env.Undefined();
  }

  // parseClientHello(bytes: Uint8Array, maxBytes: number, out: Uint8Array): status number
  // (client_hello::Status), with what goes with it written to out, so the hot path creates no
  // JS values here (the facade in src/native/index.ts builds the result object from out):
  //
  //   failure     out[0] = reason length, out[1..] = reason (latin1)
  //   kOk         0 consumed u32 | 4 legacy_version u16 | 6 sni length u8 | 7 version count u8
  //               | 8 ALPN list length u32 | 12 ja4_r length u32 | 16 ja4 (36 bytes)
  //               | 52 sni | ALPN list ({u8 length, name}*) | versions (u16 each) | ja4_r
  //   (integers little-endian). Bad bytes are a status; only bad arguments throw.
  Napi::Value ParseClientHello(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    Bytes bytes, out;
    if (!RequireBytes(info, 0, "ClientHello bytes", &bytes) ||
        !RequireBytes(info, 2, "out", &out)) {
      return info.Env().Undefined();
    }
    double max_bytes = 0;
    if (napi_get_value_double(env, info[1], &max_bytes) != napi_ok ||
        !(max_bytes >= client_hello::kMinCapBytes && max_bytes <= client_hello::kMaxCapBytes)) {
      Throw(info.Env(), ErrorKind::kRange, kErrArgValue, "expected a number 6..65536 for maxBytes");
      return info.Env().Undefined();
    }
    // Optional 4th argument: false skips the JA4 fingerprint (routing needs only SNI and ALPN).
    const bool fingerprint = info.Length() < 4 || !info[3].IsBoolean() || info[3].As<Napi::Boolean>().Value();
    client_hello::ClientHello hello;
    const client_hello::Status status = client_hello::Parse(bytes.data, bytes.size,
                                                            static_cast<size_t>(max_bytes),
                                                            hello_workspace_, &hello, fingerprint);
    uint8_t* o = const_cast<uint8_t*>(out.data);
    const auto put32 = [](uint8_t* p, size_t v) {
      for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
    };
    if (status == client_hello::Status::kOk) {
      if (fingerprint && !hello.ja4_ok) {
        Throw(info.Env(), ErrorKind::kError, kErrCrypto, "OpenSSL could not compute SHA-256");
        return info.Env().Undefined();
      }
      const size_t need = kHelloOutHeader + hello.sni_len + hello.alpn.size +
                          2 * size_t{hello.version_count} + hello.ja4_r_len;
      if (out.size < need) {
        Throw(info.Env(), ErrorKind::kRange, kErrArgValue, "expected a larger out buffer");
        return info.Env().Undefined();
      }
      put32(o, hello.consumed);
      o[4] = static_cast<uint8_t>(hello.legacy_version);
      o[5] = static_cast<uint8_t>(hello.legacy_version >> 8);
      o[6] = hello.sni_len;
      o[7] = hello.version_count;
      put32(o + 8, hello.alpn.size);
      put32(o + 12, hello.ja4_r_len);
      if (fingerprint) {
        std::memcpy(o + 16, hello.ja4, client_hello::kJa4Chars);
      } else {
        std::memset(o + 16, 0, client_hello::kJa4Chars);
      }
      uint8_t* p = o + kHelloOutHeader;
      std::memcpy(p, hello.sni, hello.sni_len);
      p += hello.sni_len;
      if (hello.alpn.size > 0) std::memcpy(p, hello.alpn.data, hello.alpn.size);
      p += hello.alpn.size;
      for (size_t i = 0; i < hello.version_count; ++i) {
        *p++ = static_cast<uint8_t>(hello.versions[i]);
        *p++ = static_cast<uint8_t>(hello.versions[i] >> 8);
      }
      if (hello.ja4_r_len > 0) std::memcpy(p, hello.ja4_r, hello.ja4_r_len);
    } else if (status != client_hello::Status::kIncomplete) {
      const size_t len = std::strlen(hello.reason);
      if (out.size < 1 + len || len > 255) {
        Throw(info.Env(), ErrorKind::kRange, kErrArgValue, "expected a larger out buffer");
        return info.Env().Undefined();
      }
      o[0] = static_cast<uint8_t>(len);
      std::memcpy(o + 1, hello.reason, len);
    }
    napi_value result;
    napi_create_uint32(env, static_cast<uint32_t>(status), &result);
    return Napi::Value(env, result);
  }

  static constexpr size_t kHelloOutHeader = 16 + client_hello::kJa4Chars;  // 52

  Napi::FunctionReference token_crypto_constructor_;
  hmac::Sha256Hmac hmac_;
  aead::Aes256GcmSealer sealer_;
  client_hello::Workspace hello_workspace_;

 public:
  SaltPool salts;  // per thread, like everything in here
};

Napi::Value TokenCryptoWrap::Seal(const Napi::CallbackInfo& info) {
  uint8_t salt[token::kSaltSize];
  if (!info.Env().GetInstanceData<TetherAddon>()->salts.Next(salt)) {
    Throw(info.Env(), ErrorKind::kError, kErrCrypto, "RAND_bytes failed");
    return info.Env().Undefined();
  }
  return SealWith(info, salt);
}

}  // namespace

NODE_API_ADDON(TetherAddon)
