// libFuzzer target for the ClientHello parser (tether/client_hello.h). Besides the sanitizers'
// own checks, every input is held to what the parser promises: fields within bounds, decisions
// that never change when bytes are appended, every prefix of a good ClientHello incomplete, the
// same answer for any re-framing into records, JA4 hashes that match their raw text.
// Build and run: bash native/fuzz/run.sh [SECONDS]. Seeds: test/fixtures/fuzz/client_hello/.
//
// Input layout (seeds are written by native/fuzz/gen-seeds.mjs in the same layout):
//
//   0            1
//   +------------+----------------------------------------------------------+
//   | cap        |  bytes received on the connection (rest of the input)    |
//   +------------+----------------------------------------------------------+
//
//   cap 0 → 16384 (the default), 255 → 65536 (the largest), else 6 + 16 * cap (22..4070), so
//   small caps and too_large decisions are reached from real ClientHellos.
#include <openssl/sha.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fuzz_check.h"
#include "tether/client_hello.h"

namespace {

namespace ch = tether::client_hello;
using Bytes = std::vector<uint8_t>;

// One per process, reused across inputs like the addon's per-thread one, so state left behind
// by one input (the duplicate-extension bitset) would show up as a wrong answer on the next.
ch::Workspace* g_workspace = nullptr;

constexpr char kHex[] = "0123456789abcdef";

bool IsHostChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
}

// The result as text, taken at once: its spans point into the input and the workspace.
std::string Describe(ch::Status status, const ch::ClientHello& h, bool with_consumed) {
  std::string s(1, static_cast<char>('0' + static_cast<int>(status)));
  if (status != ch::Status::kOk) return s + (h.reason ? h.reason : "");
  if (with_consumed) s += " " + std::to_string(h.consumed);
  s += " " + std::string(h.sni, h.sni_len) + " " + std::to_string(h.legacy_version);
  size_t offset = 0;
  ch::Span name;
  while (ch::NextAlpn(h.alpn, &offset, &name)) {
    s += " a" + std::string(reinterpret_cast<const char*>(name.data), name.size);
  }
  for (size_t i = 0; i < h.version_count; ++i) s += " v" + std::to_string(h.versions[i]);
  return s + " " + std::string(h.ja4, ch::kJa4Chars) + " " + std::string(h.ja4_r, h.ja4_r_len);
}

void Hash12(const char* text, size_t len, char out[12]) {
  if (len == 0) {
    std::memset(out, '0', 12);
    return;
  }
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const uint8_t*>(text), len, digest);
  for (size_t i = 0; i < 6; ++i) {
    out[2 * i] = kHex[digest[i] >> 4];
    out[2 * i + 1] = kHex[digest[i] & 15];
  }
}

struct Outcome {
  ch::Status status;
  std::string text;
  std::string unframed;  // all but consumed
  size_t consumed;
};

// Parses an exact-size heap copy and checks the fields of whatever came back.
Outcome Run(const uint8_t* data, size_t len, size_t cap) {
  auto copy = std::make_unique<uint8_t[]>(len == 0 ? 1 : len);
  if (len > 0) std::memcpy(copy.get(), data, len);
  ch::ClientHello h;
  h.consumed = 12345;  // Parse must reset everything
  h.reason = "stale";
  const ch::Status st = ch::Parse(len == 0 ? nullptr : copy.get(), len, cap, *g_workspace, &h);
  FUZZ_CHECK(static_cast<uint8_t>(st) <= static_cast<uint8_t>(ch::Status::kMalformed));
  if (st == ch::Status::kOk) {
    FUZZ_CHECK(h.reason == nullptr);
    FUZZ_CHECK(h.consumed >= 6 && h.consumed <= len && h.consumed <= cap);
    FUZZ_CHECK(h.ja4_ok);
    FUZZ_CHECK(h.has_sni == (h.sni_len > 0) && h.sni_len <= ch::kMaxHostNameBytes);
    for (size_t i = 0; i < h.sni_len; ++i) FUZZ_CHECK(IsHostChar(h.sni[i]));
    FUZZ_CHECK(h.sni_len == 0 || (h.sni[0] != '.' && h.sni[h.sni_len - 1] != '.'));
    FUZZ_CHECK(h.legacy_version >> 8 == 3);
    FUZZ_CHECK(h.version_count <= ch::kMaxVersions);
    for (size_t i = 0; i < h.version_count; ++i) FUZZ_CHECK(!ch::IsGrease(h.versions[i]));
    // The ALPN list lies inside the input or the workspace and walks to its exact end.
    size_t offset = 0, names = 0;
    ch::Span name;
    while (ch::NextAlpn(h.alpn, &offset, &name)) {
      FUZZ_CHECK(name.size >= 1);
      ++names;
    }
    FUZZ_CHECK(offset == h.alpn.size);
    // JA4: a part shape, and b/c are the truncated SHA-256 of ja4_r's lists.
    const std::string raw(h.ja4_r, h.ja4_r_len);
    const std::string ja4(h.ja4, ch::kJa4Chars);
    FUZZ_CHECK(raw.size() >= 12 && raw.compare(0, 11, ja4, 0, 11) == 0);
    FUZZ_CHECK(ja4[0] == 't' && (ja4[3] == 'd') == h.has_sni && (ja4[3] == 'i') == !h.has_sni);
    FUZZ_CHECK(ja4[10] == '_' && ja4[23] == '_');
    FUZZ_CHECK(names > 0 || (ja4[8] == '0' && ja4[9] == '0'));
    const size_t b_end = raw.find('_', 11);
    FUZZ_CHECK(b_end != std::string::npos);
    char hashed[12];
    Hash12(raw.data() + 11, b_end - 11, hashed);
    FUZZ_CHECK(std::memcmp(hashed, h.ja4 + 11, 12) == 0);
    const size_t c_start = b_end + 1;
    const bool no_exts = c_start == raw.size() || raw[c_start] == '_';
    FUZZ_CHECK(!(c_start < raw.size() && raw[c_start] == '_'));  // sigalgs imply extension 000d
    Hash12(raw.data() + c_start, no_exts ? 0 : raw.size() - c_start, hashed);
    FUZZ_CHECK(std::memcmp(hashed, h.ja4 + 24, 12) == 0);
  } else if (st == ch::Status::kIncomplete) {
    FUZZ_CHECK(h.reason == nullptr && h.consumed == 0);
    FUZZ_CHECK(len < cap);  // never asks for more than the cap
  } else {
    FUZZ_CHECK(h.reason != nullptr && h.reason[0] != '\0' && h.consumed == 0 && !h.has_sni);
    FUZZ_CHECK(st != ch::Status::kNotTls || len >= 1);
  }
  return Outcome{st, Describe(st, h, true), Describe(st, h, false), st == ch::Status::kOk ? h.consumed : 0};
}

// The handshake message inside the first `consumed` bytes (records already validated).
Bytes MessageOf(const uint8_t* data, size_t consumed) {
  Bytes out;
  for (size_t at = 0; at < consumed;) {
    const size_t n = (size_t{data[at + 3]} << 8) | data[at + 4];
    out.insert(out.end(), data + at + 5, data + at + 5 + n);
    at += 5 + n;
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  g_workspace = new ch::Workspace();  // lives for the whole run; reachable, so not a leak
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* input, size_t size) {
  if (size == 0) return 0;
  const size_t cap = input[0] == 0     ? ch::kDefaultMaxBytes
                     : input[0] == 255 ? ch::kMaxCapBytes
                                       : ch::kMinCapBytes + size_t{input[0]} * 16;
  const uint8_t* data = input + 1;
  const size_t len = size - 1;
  const Outcome full = Run(data, len, cap);

  uint32_t h = 2166136261u;  // FNV-1a of the input picks prefixes, extra bytes and framings
  for (size_t i = 0; i < size; ++i) h = (h ^ input[i]) * 16777619u;

  // Prefixes: incomplete, or already the very same decision (never a different one).
  const size_t samples = full.status == ch::Status::kOk && full.consumed <= 300 ? full.consumed : 12;
  for (size_t i = 0; i < samples && len > 0; ++i) {
    const size_t n = samples == full.consumed ? i : (h + i * 2654435761u) % len;
    const Outcome part = Run(data, n, cap);
    FUZZ_CHECK(part.status == ch::Status::kIncomplete || part.text == full.text);
    if (full.status == ch::Status::kOk && n < full.consumed) FUZZ_CHECK(part.status == ch::Status::kIncomplete);
  }
  if (full.status == ch::Status::kIncomplete) return 0;

  // Appended bytes change nothing once decided.
  Bytes longer(data, data + len);
  const size_t extra = 1 + h % 64;
  for (size_t i = 0; i < extra; ++i) longer.push_back(static_cast<uint8_t>((h >> (i % 24)) + i));
  FUZZ_CHECK(Run(longer.data(), longer.size(), cap).text == full.text);
  if (full.status != ch::Status::kOk) return 0;

  // Exactly the consumed bytes parse the same; one fewer is incomplete; the cap can be that size.
  FUZZ_CHECK(Run(data, full.consumed, cap).text == full.text);
  FUZZ_CHECK(Run(data, full.consumed - 1, cap).status == ch::Status::kIncomplete);
  FUZZ_CHECK(Run(data, full.consumed, full.consumed).text == full.text);
  if (full.consumed - 1 >= ch::kMinCapBytes) {
    FUZZ_CHECK(Run(data, full.consumed, full.consumed - 1).status == ch::Status::kTooLarge);
  }

  // Any framing of the same message gives the same fields (consumed aside).
  const Bytes message = MessageOf(data, full.consumed);
  const size_t sizes[] = {1 + h % 7, 1 + (h >> 8) % 300, 1 + (h >> 16) % 16384};
  Bytes framed;
  for (size_t at = 0, i = 0; at < message.size(); ++i) {
    const size_t n = std::min(sizes[i % 3], message.size() - at);
    framed.insert(framed.end(), {0x16, 0x03, static_cast<uint8_t>(h), static_cast<uint8_t>(n >> 8),
                                 static_cast<uint8_t>(n)});
    framed.insert(framed.end(), message.begin() + static_cast<long>(at),
                  message.begin() + static_cast<long>(at + n));
    at += n;
  }
  if (framed.size() <= ch::kMaxCapBytes) {
    const Outcome again = Run(framed.data(), framed.size(), ch::kMaxCapBytes);
    FUZZ_CHECK(again.status == ch::Status::kOk && again.consumed == framed.size());
    FUZZ_CHECK(again.unframed == full.unframed);
  }
  return 0;
}
