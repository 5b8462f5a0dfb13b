// TLS ClientHello parser for SNI passthrough: fed the bytes received so far on a connection
// (from its first byte), it says whether the whole ClientHello is in and, if so, what routing
// needs (SNI, ALPN, versions) and the client's JA4 fingerprint. Plain C++ over OpenSSL's
// SHA-256; no N-API, never throws, no globals, no allocation. Stateless: the caller re-parses
// the longer buffer after every read (a ClientHello is a few KiB at most; a parse that is still
// incomplete costs tens of nanoseconds, a whole one with its JA4 about half a microsecond).
//
// Wire format (RFC 8446 §5.1, §4.1.2; all integers big-endian):
//
//   record    0      1       2       3        5                 5+n
//             +------+-------+-------+--------+-----------------+
//             | 0x16 | 0x03  | minor | n (u16)| fragment (n)    |  n = 1..16384, repeated until
//             +------+-------+-------+--------+-----------------+  the message is complete
//   fragments, joined, carry one handshake message:
//             +------+---------------+---------------------------------------------+
//             | 0x01 | L (u24)       | ClientHello body (L bytes)                  |
//             +------+---------------+---------------------------------------------+
//   body      legacy_version(2) random(32) session_id<0..32>(u8 len)
//             cipher_suites<2..2^16-2>(u16 len, even) compression_methods<1..255>(u8 len)
//             [ extensions(u16 len, exactly the rest) : { type(2) len(2) data(len) }* ]
//   server_name (0)       list(u16 len = rest) { name_type(1)=0  host_name(u16 len) }  exactly one
//   ALPN (16)             list(u16 len = rest, >= 2) { name(u8 len >= 1) }+
//   signature_algs (13)   list(u16 len = rest, even, >= 2) of u16
//   supported_versions(43) list(u8 len = rest, even, >= 2) of u16
//
// Decisions, in this order (the JS reference in src/native/client-hello-reference.ts follows the
// same text; the reasons below are the exact strings both return):
//
//   Records, from offset 0, while the message is not complete. For each record:
//    0. not the first, and even the smallest record (6 bytes) would end past the cap →
//       kTooLarge "ClientHello exceeds the size cap"
//    1. type byte != 0x16: first record → kNotTls "not a TLS handshake record",
//       later record → kMalformed "non-handshake record inside the ClientHello"
//    2. version major != 3: first record → kNotTls "record version is not 3.x",
//       later record → kMalformed "record version is not 3.x"
//    3. length 0 → kMalformed "empty record"; > 16384 → kMalformed "record longer than 16384 bytes"
//    4. record end > cap → kTooLarge "ClientHello exceeds the size cap"
//    5. the first handshake bytes this record has buffered are taken: byte 0 != 1 → kMalformed
//       "handshake message is not a ClientHello"; with 4 bytes the message size 4 + L is known
//    6. once the size is known: the records so far announce more bytes than it → kMalformed
//       "ClientHello does not end on a record boundary"; fewer, and even full-size records for the
//       rest would end past the cap → kTooLarge "ClientHello exceeds the size cap"
//    7. record not fully buffered → kIncomplete; message complete → parse the body
//   Any step short of bytes stops with kIncomplete, so a decision never changes when more bytes
//   arrive, and every proper prefix of a good ClientHello is kIncomplete. kIncomplete also
//   implies fewer bytes than the cap: a caller never buffers more than the cap to learn more.
//
//   Body (checks in field order; kMalformed with these reasons):
//     "ClientHello truncated in <legacy_version|random|legacy_session_id|cipher_suites|
//      legacy_compression_methods|extensions>", "legacy_version is not 3.x",
//     "legacy_session_id longer than 32 bytes", "cipher_suites length is zero or odd",
//     "legacy_compression_methods is empty", "extensions block does not fill the ClientHello",
//   then each extension in wire order: "extension header truncated",
//     "extension data overruns the extensions block", "duplicate extension",
//     "pre_shared_key is not the last extension", and by type:
//     "malformed server_name extension", "server_name must hold exactly one host_name",
//     "empty host name", "host name is not a valid DNS name" (labels of 1..63 of A-Z a-z 0-9 - _,
//     253 bytes at most, no empty label, no trailing dot), "malformed ALPN extension",
//     "empty ALPN protocol name", "malformed signature_algorithms extension",
//     "malformed supported_versions extension".
//   No extensions block at all (TLS <= 1.2) is fine. Other extensions (key_share with 1216-byte
//   X25519MLKEM768 shares, ECH, padding, GREASE) are only framed, never interpreted.
//
// JA4 (FoxIO JA4.md): a_b_c, a = "t" + version + ("d" SNI extension present | "i") + cipher count
// (2 digits, max 99) + extension count (same) + first/last character of the first ALPN name
// ("00" without; hex digits of the name when either end is not [0-9A-Za-z]; a 1-byte name gives
// its character twice). Version: highest supported_versions entry, else legacy_version;
// 0304 13, 0303 12, 0302 11, 0301 10, 0300 s3, 0002 s2, feff d1, fefd d2, fefc d3, else 00.
// b = SHA-256[0..12) of the sorted cipher suites, c = of the sorted extensions without 0000/0010,
// "_", signature algorithms in wire order ("_sigalgs" left out when there are none); empty list →
// "000000000000". GREASE (0x?a?a) is dropped everywhere. ja4_r: the same with the lists unhashed.
#ifndef TETHER_CLIENT_HELLO_H_
#define TETHER_CLIENT_HELLO_H_

#include <cstddef>
#include <cstdint>

namespace tether::client_hello {

inline constexpr size_t kRecordHeaderSize = 5;
inline constexpr size_t kMaxRecordPayload = 16384;
inline constexpr size_t kDefaultMaxBytes = 16384;
// Caps Parse honours (others are clamped to these): the smallest holds one 1-byte record, the
// largest sizes the Workspace.
inline constexpr size_t kMinCapBytes = 6;
inline constexpr size_t kMaxCapBytes = 65536;
inline constexpr size_t kMaxHostNameBytes = 253;
inline constexpr size_t kMaxVersions = 127;  // a u8-length list of u16
inline constexpr size_t kJa4Chars = 36;      // "t13d1516h2_" + 12 + "_" + 12
// ja4_r needs at most 5 characters per 2 bytes of message (every list entry is 4 hex digits and
// a separator), plus the 10-character a part and two underscores.
inline constexpr size_t kMaxJa4RawChars = kMaxCapBytes / 2 * 5 + 16;

enum class Status : uint8_t {
  kOk = 0,
  kIncomplete = 1,  // need more bytes; nothing wrong so far
  kNotTls = 2,      // the first record cannot be TLS
  kTooLarge = 3,    // the ClientHello would end past the cap
  kMalformed = 4,   // TLS, but not a well-formed ClientHello; reason says what
};

struct Span {
  const uint8_t* data = nullptr;
  size_t size = 0;
};

// Only what the status and the lengths say is meaningful: Parse resets the scalars, not the
// arrays behind them.
struct ClientHello {
  // Set when the status is kNotTls, kTooLarge or kMalformed: a static string (see above).
  const char* reason = nullptr;
  // kOk only: bytes of the records that carried the ClientHello. Everything after them is not
  // part of it and must still be forwarded.
  size_t consumed = 0;
  uint16_t legacy_version = 0;
  bool has_sni = false;  // server_name sent (it then holds exactly one valid host name)
  uint8_t sni_len = 0;
  char sni[kMaxHostNameBytes];  // the host name (sni_len bytes), ASCII lower-cased
  // ALPN ProtocolNameList contents, validated: { u8 length >= 1, name }+. Empty when absent.
  // Points into the input or the Workspace: valid until either changes. Walk with NextAlpn.
  Span alpn;
  uint8_t version_count = 0;
  uint16_t versions[kMaxVersions];  // supported_versions in wire order, GREASE removed
  bool ja4_ok = false;              // false only when OpenSSL could not hash (kOk)
  char ja4[kJa4Chars];              // no terminator
  const char* ja4_r = nullptr;           // in the Workspace, ja4_r_len chars, no terminator
  size_t ja4_r_len = 0;
};

// A set of 16-bit values as a two-level bitmap: inserting is two ORs, and draining yields the
// values in ascending order while visiting only the words that hold any, leaving the set empty.
// JA4's sorted lists come out of it (std::sort of 60 cipher suites costs more than a parse).
struct U16Set {
  uint64_t words[65536 / 64] = {};
  uint64_t summary[65536 / 64 / 64] = {};  // bit w: words[w] may be non-zero
};

// Working memory for Parse, about 300 KiB: the ClientHello reassembled when it spans records,
// and the value sets and the ja4_r text for JA4. The sets are empty between calls; nothing
// else means anything. Allocate it once (not on a thread's stack) and reuse it; not
// thread-safe: one per thread (the addon keeps one per thread).
class Workspace {
 public:
  Workspace() = default;
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;

 private:
  friend Status Parse(const uint8_t*, size_t, size_t, Workspace&, ClientHello*, bool) noexcept;

  uint8_t message_[kMaxCapBytes];
  U16Set extensions_;                 // types met so far (duplicates), then JA4's sorted list
  U16Set ciphers_;                    // JA4's sorted cipher suites
  uint16_t sorted_[kMaxCapBytes / 2];  // cipher suites when one repeats (a set cannot count)
  char raw_[kMaxJa4RawChars];
};

// Parses the bytes received so far (data may be null when len is 0). max_bytes caps the records
// that carry the ClientHello (kDefaultMaxBytes is the usual choice). *out is reset, then filled
// as the status says. With fingerprint false the JA4 work (about two thirds of an ok parse) is
// skipped: ja4_ok stays false and ja4_r empty; everything else is the same.
Status Parse(const uint8_t* data, size_t len, size_t max_bytes, Workspace& ws,
             ClientHello* out, bool fingerprint = true) noexcept;

// Steps through a validated ALPN list: set *offset = 0, then each call yields the next name.
inline bool NextAlpn(const Span& list, size_t* offset, Span* name) noexcept {
  if (*offset >= list.size) return false;
  const size_t len = list.data[*offset];
  name->data = list.data + *offset + 1;
  name->size = len;
  *offset += 1 + len;
  return true;
}

// RFC 8701: 0x0a0a, 0x1a1a, ... 0xfafa.
constexpr bool IsGrease(uint16_t v) { return (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff); }

}  // namespace tether::client_hello

#endif  // TETHER_CLIENT_HELLO_H_
