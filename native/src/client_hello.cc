// ClientHello parser and JA4; the wire format and the order of decisions are in
// tether/client_hello.h. Every length is compared with what remains before anything is read.
#include "tether/client_hello.h"

// SHA256_Init/Update/Final are deprecated in OpenSSL 3 in favour of EVP, but OpenSSL 3.0's EVP
// digest frees and reallocates its provider context on every init: 80 ns of the 130 ns a JA4
// hash costs, and an allocation per parse. The one-shot functions work on a stack context.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>

namespace tether::client_hello {
namespace {

constexpr uint8_t kHandshakeRecord = 0x16;
constexpr uint8_t kClientHelloType = 0x01;
constexpr size_t kHandshakeHeaderSize = 4;
constexpr size_t kRandomSize = 32;
constexpr size_t kMaxSessionId = 32;

constexpr uint16_t kExtServerName = 0x0000;
constexpr uint16_t kExtAlpn = 0x0010;
constexpr uint16_t kExtSignatureAlgorithms = 0x000d;
constexpr uint16_t kExtPreSharedKey = 0x0029;
constexpr uint16_t kExtSupportedVersions = 0x002b;

constexpr char kTooLarge[] = "ClientHello exceeds the size cap";
constexpr char kHex[] = "0123456789abcdef";

// A constant table (not mutable state): byte → its two lower-case hex digits.
constexpr std::array<char, 512> MakeHexPairs() {
  std::array<char, 512> table{};
  for (size_t i = 0; i < 256; ++i) {
    table[2 * i] = kHex[i >> 4];
    table[2 * i + 1] = kHex[i & 15];
  }
  return table;
}
constexpr std::array<char, 512> kHexPairs = MakeHexPairs();

// The scalars only: the arrays mean nothing past the lengths that say how much is set.
void Reset(ClientHello* out) {
  out->reason = nullptr;
  out->consumed = 0;
  out->legacy_version = 0;
  out->has_sni = false;
  out->sni_len = 0;
  out->alpn = Span{};
  out->version_count = 0;
  out->ja4_ok = false;
  out->ja4_r = nullptr;
  out->ja4_r_len = 0;
}

// Only the reason is kept: whatever the parse filled in before failing is not a result.
Status Fail(ClientHello* out, Status status, const char* reason) {
  Reset(out);
  out->reason = reason;
  return status;
}

uint16_t ReadU16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }

// A cursor over a byte range; each read says whether the bytes were there.
struct Reader {
  const uint8_t* p;
  size_t left;

  bool U8(uint8_t* v) {
    if (left < 1) return false;
    *v = *p++;
    --left;
    return true;
  }
  bool U16(uint16_t* v) {
    if (left < 2) return false;
    *v = ReadU16(p);
    p += 2;
    left -= 2;
    return true;
  }
  bool Take(size_t n, Span* s) {
    if (left < n) return false;
    s->data = p;
    s->size = n;
    p += n;
    left -= n;
    return true;
  }
};

bool IsAlnum(uint8_t c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

// LDH plus '_' (seen in real names), 1..63 per label, no empty label, no trailing dot.
bool IsValidHostName(const uint8_t* name, size_t len) {
  if (len > kMaxHostNameBytes) return false;
  size_t label = 0;
  for (size_t i = 0; i < len; ++i) {
    const uint8_t c = name[i];
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    if (!IsAlnum(c) && c != '-' && c != '_') return false;
    if (++label > 63) return false;
  }
  return label > 0;
}

// server_name: exactly one host_name entry (as OpenSSL and BoringSSL accept), copied lower-cased.
const char* ReadServerName(Span ext, ClientHello* out) {
  if (ext.size < 2 || ReadU16(ext.data) + size_t{2} != ext.size) return "malformed server_name extension";
  const size_t list_len = ext.size - 2;
  const uint8_t* list = ext.data + 2;
  if (list_len < 3 || list[0] != 0 || ReadU16(list + 1) + size_t{3} != list_len) {
    return "server_name must hold exactly one host_name";
  }
  const size_t name_len = list_len - 3;
  const uint8_t* name = list + 3;
  if (name_len == 0) return "empty host name";
  if (!IsValidHostName(name, name_len)) return "host name is not a valid DNS name";
  for (size_t i = 0; i < name_len; ++i) {
    const uint8_t c = name[i];
    out->sni[i] = static_cast<char>(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
  }
  out->sni_len = static_cast<uint8_t>(name_len);
  out->has_sni = true;
  return nullptr;
}

const char* ReadAlpn(Span ext, ClientHello* out) {
  constexpr const char* kBad = "malformed ALPN extension";
  if (ext.size < 2 || ReadU16(ext.data) + size_t{2} != ext.size || ext.size - 2 < 2) return kBad;
  const Span list{ext.data + 2, ext.size - 2};
  for (size_t i = 0; i < list.size;) {
    const size_t len = list.data[i];
    if (len == 0) return "empty ALPN protocol name";
    if (len > list.size - i - 1) return kBad;
    i += 1 + len;
  }
  out->alpn = list;
  return nullptr;
}

const char* ReadSupportedVersions(Span ext, ClientHello* out) {
  if (ext.size < 1 || ext.data[0] + size_t{1} != ext.size || ext.data[0] % 2 != 0 ||
      ext.data[0] < 2) {
    return "malformed supported_versions extension";
  }
  for (size_t i = 1; i < ext.size; i += 2) {
    const uint16_t v = ReadU16(ext.data + i);
    if (!IsGrease(v)) out->versions[out->version_count++] = v;  // at most 127 entries fit in u8
  }
  return nullptr;
}

const char* ReadSignatureAlgorithms(Span ext, Span* sigalgs) {
  if (ext.size < 2 || ReadU16(ext.data) + size_t{2} != ext.size || (ext.size - 2) % 2 != 0 ||
      ext.size - 2 < 2) {
    return "malformed signature_algorithms extension";
  }
  *sigalgs = Span{ext.data + 2, ext.size - 2};
  return nullptr;
}

char* PutHex4(char* p, uint16_t v) {
  std::memcpy(p, &kHexPairs[2 * (v >> 8)], 2);
  std::memcpy(p + 2, &kHexPairs[2 * (v & 0xff)], 2);
  return p + 4;
}

// Adds v; false when it was there already.
bool Insert(U16Set& set, uint16_t v) {
  uint64_t& word = set.words[v >> 6];
  const uint64_t bit = uint64_t{1} << (v & 63);
  if (word & bit) return false;
  word |= bit;
  set.summary[v >> 12] |= uint64_t{1} << ((v >> 6) & 63);
  return true;
}

// Calls each(v) in ascending order and leaves the set empty.
template <typename F>
void Drain(U16Set& set, F&& each) {
  for (size_t i = 0; i < std::size(set.summary); ++i) {
    uint64_t summary = set.summary[i];
    set.summary[i] = 0;
    while (summary != 0) {
      const size_t w = i * 64 + static_cast<size_t>(std::countr_zero(summary));
      summary &= summary - 1;
      uint64_t bits = set.words[w];
      set.words[w] = 0;
      while (bits != 0) {
        each(static_cast<uint16_t>(w * 64 + static_cast<size_t>(std::countr_zero(bits))));
        bits &= bits - 1;
      }
    }
  }
}

// Writes values as "xxxx,xxxx,…" starting at *p.
struct ListWriter {
  char* p;
  bool empty = true;
  void operator()(uint16_t v) {
    if (!empty) *p++ = ',';
    empty = false;
    p = PutHex4(p, v);
  }
};

void PutTwoDigits(char* p, size_t n) {
  if (n > 99) n = 99;
  p[0] = static_cast<char>('0' + n / 10);
  p[1] = static_cast<char>('0' + n % 10);
}

void PutVersion(char* p, uint16_t v) {
  const char* s = "00";
  switch (v) {
    case 0x0304: s = "13"; break;
    case 0x0303: s = "12"; break;
    case 0x0302: s = "11"; break;
    case 0x0301: s = "10"; break;
    case 0x0300: s = "s3"; break;
    case 0x0002: s = "s2"; break;
    case 0xfeff: s = "d1"; break;
    case 0xfefd: s = "d2"; break;
    case 0xfefc: s = "d3"; break;
    default: break;
  }
  p[0] = s[0];
  p[1] = s[1];
}

bool Sha256(const char* text, size_t len, uint8_t out[SHA256_DIGEST_LENGTH]) {
  SHA256_CTX ctx;
  return SHA256_Init(&ctx) == 1 && SHA256_Update(&ctx, text, len) == 1 &&
         SHA256_Final(out, &ctx) == 1;
}

void PutAlpnChars(char* p, const Span& alpn) {
  size_t offset = 0;
  Span first;
  if (!NextAlpn(alpn, &offset, &first)) {
    p[0] = p[1] = '0';
    return;
  }
  const uint8_t a = first.data[0];
  const uint8_t z = first.data[first.size - 1];
  if (IsAlnum(a) && IsAlnum(z)) {
    p[0] = static_cast<char>(a);
    p[1] = static_cast<char>(z);
  } else {
    p[0] = kHex[a >> 4];
    p[1] = kHex[z & 15];
  }
}

}  // namespace

Status Parse(const uint8_t* data, size_t len, size_t max_bytes, Workspace& ws,
             ClientHello* out, bool fingerprint) noexcept {
  Reset(out);
  if (data == nullptr) len = 0;
  max_bytes = std::clamp(max_bytes, kMinCapBytes, kMaxCapBytes);

  // --- Records: find where the handshake message ends, deciding as early as the bytes allow.
  size_t pos = 0;       // start of the current record
  size_t declared = 0;  // handshake bytes announced by the record headers read so far
  size_t need = 0;      // 4 + L once the handshake header is in; 0 before (it is never 0 after)
  uint8_t header[kHandshakeHeaderSize];
  size_t header_have = 0;
  size_t records = 0;
  for (;;) {
    const bool first = pos == 0;
    if (!first && pos + kRecordHeaderSize + 1 > max_bytes) {
      return Fail(out, Status::kTooLarge, kTooLarge);
    }
    if (len - pos < 1) return Status::kIncomplete;
    if (data[pos] != kHandshakeRecord) {
      return first ? Fail(out, Status::kNotTls, "not a TLS handshake record")
                   : Fail(out, Status::kMalformed, "non-handshake record inside the ClientHello");
    }
    if (len - pos < 2) return Status::kIncomplete;
    if (data[pos + 1] != 3) {
      return Fail(out, first ? Status::kNotTls : Status::kMalformed, "record version is not 3.x");
    }
    if (len - pos < kRecordHeaderSize) return Status::kIncomplete;
    const size_t record_len = ReadU16(data + pos + 3);
    if (record_len == 0) return Fail(out, Status::kMalformed, "empty record");
    if (record_len > kMaxRecordPayload) {
      return Fail(out, Status::kMalformed, "record longer than 16384 bytes");
    }
    const size_t payload = pos + kRecordHeaderSize;
    const size_t end = payload + record_len;
    if (end > max_bytes) return Fail(out, Status::kTooLarge, kTooLarge);

    if (need == 0) {
      const size_t buffered = std::min(len, end) - payload;
      const size_t take = std::min(kHandshakeHeaderSize - header_have, buffered);
      for (size_t i = 0; i < take; ++i) header[header_have++] = data[payload + i];
      if (header_have >= 1 && header[0] != kClientHelloType) {
        return Fail(out, Status::kMalformed, "handshake message is not a ClientHello");
      }
      if (header_have == kHandshakeHeaderSize) {
        need = kHandshakeHeaderSize +
               ((size_t{header[1]} << 16) | (size_t{header[2]} << 8) | size_t{header[3]});
      }
    }
    declared += record_len;
    if (need != 0) {
      if (declared > need) {
        return Fail(out, Status::kMalformed, "ClientHello does not end on a record boundary");
      }
      if (declared < need) {
        const size_t rest = need - declared;
        const size_t headers = (rest + kMaxRecordPayload - 1) / kMaxRecordPayload;
        if (end + rest + headers * kRecordHeaderSize > max_bytes) {
          return Fail(out, Status::kTooLarge, kTooLarge);
        }
      }
    }
    if (end > len) return Status::kIncomplete;
    ++records;
    pos = end;
    if (need != 0 && declared == need) break;
  }
  const size_t consumed = pos;

  // --- The message: in place when one record carried it, else joined in the workspace
  // (need <= consumed <= max_bytes <= kMaxCapBytes, the buffer's size).
  const uint8_t* message = data + kRecordHeaderSize;
  if (records > 1) {
    size_t at = 0;
    for (size_t p = 0; p < consumed;) {
      const size_t n = ReadU16(data + p + 3);
      std::memcpy(ws.message_ + at, data + p + kRecordHeaderSize, n);
      at += n;
      p += kRecordHeaderSize + n;
    }
    message = ws.message_;
  }

  // --- Body.
  Reader body{message + kHandshakeHeaderSize, need - kHandshakeHeaderSize};
  Span skipped;
  if (!body.U16(&out->legacy_version)) {
    return Fail(out, Status::kMalformed, "ClientHello truncated in legacy_version");
  }
  if (out->legacy_version >> 8 != 3) {
    return Fail(out, Status::kMalformed, "legacy_version is not 3.x");
  }
  if (!body.Take(kRandomSize, &skipped)) {
    return Fail(out, Status::kMalformed, "ClientHello truncated in random");
  }
  uint8_t session_id_len = 0;
  if (!body.U8(&session_id_len)) {
    return Fail(out, Status::kMalformed, "ClientHello truncated in legacy_session_id");
  }
  if (session_id_len > kMaxSessionId) {
    return Fail(out, Status::kMalformed, "legacy_session_id longer than 32 bytes");
  }
  if (!body.Take(session_id_len, &skipped)) {
    return Fail(out, Status::kMalformed, "ClientHello truncated in legacy_session_id");
  }
  uint16_t ciphers_len = 0;
  Span ciphers;
  if (!body.U16(&ciphers_len)) {
    return Fail(out, Status::kMalformed, "ClientHello truncated in cipher_suites");
  }
  if (ciphers_len == 0 || ciphers_len % 2 != 0) {
    return Fail(out, Status::kMalformed, "cipher_suites length is zero or odd");
  }
  if (!body.Take(ciphers_len, &ciphers)) {
    return Fail(out, Status::kMalformed, "ClientHello truncated in cipher_suites");
  }
  uint8_t compression_len = 0;
  if (!body.U8(&compression_len)) {
    return Fail(out, Status::kMalformed, "ClientHello truncated in legacy_compression_methods");
  }
  if (compression_len == 0) {
    return Fail(out, Status::kMalformed, "legacy_compression_methods is empty");
  }
  if (!body.Take(compression_len, &skipped)) {
    return Fail(out, Status::kMalformed, "ClientHello truncated in legacy_compression_methods");
  }

  // Extension types go into ws.extensions_ (duplicates show there); it is drained into JA4's
  // sorted list below, or emptied on failure, so the next parse starts from an empty set.
  size_t ext_count = 0;  // non-GREASE, with SNI and ALPN (JA4's a part counts them)
  Span sigalgs;
  const char* reason = nullptr;
  if (body.left > 0) {
    uint16_t block_len = 0;
    if (!body.U16(&block_len)) {
      return Fail(out, Status::kMalformed, "ClientHello truncated in extensions");
    }
    if (block_len != body.left) {
      return Fail(out, Status::kMalformed, "extensions block does not fill the ClientHello");
    }
    while (body.left > 0 && reason == nullptr) {
      uint16_t type = 0;
      uint16_t ext_len = 0;
      Span ext;
      if (!body.U16(&type) || !body.U16(&ext_len)) {
        reason = "extension header truncated";
        break;
      }
      if (!body.Take(ext_len, &ext)) {
        reason = "extension data overruns the extensions block";
        break;
      }
      if (!Insert(ws.extensions_, type)) {
        reason = "duplicate extension";
        break;
      }
      if (!IsGrease(type)) ++ext_count;
      switch (type) {
        case kExtServerName:
          reason = ReadServerName(ext, out);
          break;
        case kExtAlpn:
          reason = ReadAlpn(ext, out);
          break;
        case kExtSupportedVersions:
          reason = ReadSupportedVersions(ext, out);
          break;
        case kExtSignatureAlgorithms:
          reason = ReadSignatureAlgorithms(ext, &sigalgs);
          break;
        case kExtPreSharedKey:
          if (body.left > 0) reason = "pre_shared_key is not the last extension";
          break;
        default:
          break;
      }
    }
  }
  if (reason != nullptr) {
    Drain(ws.extensions_, [](uint16_t) {});
    return Fail(out, Status::kMalformed, reason);
  }
  out->consumed = consumed;
  if (!fingerprint) {
    Drain(ws.extensions_, [](uint16_t) {});  // the sets are empty between calls
    return Status::kOk;
  }

  // --- JA4: the a part, then the sorted lists written straight into ws.raw_ as ja4_r.
  size_t cipher_count = 0;  // non-GREASE
  bool cipher_repeats = false;
  for (size_t i = 0; i < ciphers.size; i += 2) {
    const uint16_t v = ReadU16(ciphers.data + i);
    if (IsGrease(v)) continue;
    ++cipher_count;
    if (!Insert(ws.ciphers_, v)) cipher_repeats = true;
  }

  uint16_t version = out->legacy_version;
  if (out->version_count > 0) {
    version = *std::max_element(out->versions, out->versions + out->version_count);
  }
  char* raw = ws.raw_;
  char* p = raw;
  *p++ = 't';
  PutVersion(p, version);
  p += 2;
  *p++ = out->has_sni ? 'd' : 'i';
  PutTwoDigits(p, cipher_count);
  p += 2;
  PutTwoDigits(p, ext_count);
  p += 2;
  PutAlpnChars(p, out->alpn);
  p += 2;
  *p++ = '_';
  const char* b_text = p;
  ListWriter list{p};
  if (!cipher_repeats) {
    Drain(ws.ciphers_, list);
  } else {  // rare and legal: a set cannot count, so sort a copy instead
    Drain(ws.ciphers_, [](uint16_t) {});
    size_t n = 0;
    for (size_t i = 0; i < ciphers.size; i += 2) {
      const uint16_t v = ReadU16(ciphers.data + i);
      if (!IsGrease(v)) ws.sorted_[n++] = v;
    }
    std::sort(ws.sorted_, ws.sorted_ + n);
    for (size_t i = 0; i < n; ++i) list(ws.sorted_[i]);
  }
  p = list.p;
  const size_t b_len = static_cast<size_t>(p - b_text);
  *p++ = '_';
  const char* c_text = p;
  list = ListWriter{p};
  Drain(ws.extensions_, [&list](uint16_t t) {
    if (!IsGrease(t) && t != kExtServerName && t != kExtAlpn) list(t);
  });
  const bool any_ext = !list.empty;
  p = list.p;
  bool any_sigalg = false;
  for (size_t i = 0; i < sigalgs.size; i += 2) {
    const uint16_t v = ReadU16(sigalgs.data + i);
    if (IsGrease(v)) continue;
    *p++ = any_sigalg ? ',' : '_';
    p = PutHex4(p, v);
    any_sigalg = true;
  }
  const size_t c_len = any_ext ? static_cast<size_t>(p - c_text) : 0;
  out->ja4_r = raw;
  out->ja4_r_len = static_cast<size_t>(p - raw);

  std::memcpy(out->ja4, raw, 11);  // the a part and its underscore
  out->ja4_ok = true;
  const struct {
    const char* text;
    size_t len;
    char* dest;
  } parts[] = {{b_text, b_len, out->ja4 + 11}, {c_text, c_len, out->ja4 + 24}};
  for (const auto& part : parts) {
    if (part.len == 0) {
      std::memset(part.dest, '0', 12);
      continue;
    }
    uint8_t digest[SHA256_DIGEST_LENGTH];
    if (!Sha256(part.text, part.len, digest)) {
      out->ja4_ok = false;
      break;
    }
    for (size_t i = 0; i < 6; ++i) {
      part.dest[2 * i] = kHex[digest[i] >> 4];
      part.dest[2 * i + 1] = kHex[digest[i] & 15];
    }
  }
  out->ja4[23] = '_';
  return Status::kOk;
}

}  // namespace tether::client_hello
