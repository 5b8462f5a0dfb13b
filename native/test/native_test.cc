// Standalone test of the token, HMAC, AES-GCM and ClientHello cores, built with ASan/UBSan by
// native/sanitize.sh and linked against the system's libcrypto (no Node). Known answers come from
// test/fixtures/token-vectors.txt (written by gen-token-vectors.mjs) and
// test/fixtures/client-hello/expected.txt (gen-expected.mjs); the rest is truncated, mutated and
// random input, each copied into a buffer of its exact size so any read past the end is caught.
// Exits non-zero on the first failed check.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <openssl/evp.h>
#include <arpa/inet.h>
#include <cerrno>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tether/aead.h"
#include "tether/client_hello.h"
#include "tether/hmac.h"
#include "tether/listen_socket.h"
#include "tether/token.h"

namespace {

using tether::token::OpenStatus;
using tether::token::RingStatus;
using tether::token::SealStatus;
namespace token = tether::token;
namespace hmac = tether::hmac;

int g_checks = 0;

#define CHECK(cond, ...)                                                     \
  do {                                                                       \
    ++g_checks;                                                              \
    if (!(cond)) {                                                           \
      std::fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                                     \
      std::fputc('\n', stderr);                                              \
      std::exit(1);                                                          \
    }                                                                        \
  } while (0)

using Bytes = std::vector<uint8_t>;

Bytes FromHex(const std::string& hex) {
  Bytes out;
  if (hex == ".") return out;
  CHECK(hex.size() % 2 == 0, "odd hex length in vector file: %s", hex.c_str());
  for (size_t i = 0; i < hex.size(); i += 2) {
    out.push_back(static_cast<uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

std::string FromHexString(const std::string& hex) {
  Bytes b = FromHex(hex);
  return std::string(b.begin(), b.end());
}

// Heap copies of exactly the input's size: one byte too far is an ASan report, not luck.
std::unique_ptr<char[]> ExactCopy(const std::string& s) {
  auto p = std::make_unique<char[]>(s.size() == 0 ? 1 : s.size());
  std::memcpy(p.get(), s.data(), s.size());
  return p;
}

struct Opened {
  OpenStatus status;
  int key_id;
  int version;
  Bytes payload;
};

Opened OpenToken(token::KeyRing& ring, const std::string& tok, const Bytes& aad) {
  auto input = ExactCopy(tok);
  auto aad_copy = std::make_unique<uint8_t[]>(aad.size() == 0 ? 1 : aad.size());
  if (!aad.empty()) std::memcpy(aad_copy.get(), aad.data(), aad.size());
  auto out = std::make_unique<uint8_t[]>(token::kMaxPayloadSize);
  size_t out_len = 12345;
  int key_id = 12345;
  int version = 12345;
  OpenStatus st = token::Open(ring, input.get(), tok.size(), aad.empty() ? nullptr : aad_copy.get(),
                              aad.size(), out.get(), &out_len, &key_id, &version);
  CHECK(st == OpenStatus::kOk || out_len == 0, "payload length %zu on failure", out_len);
  CHECK(version == 0 || version == 1 || version == 2, "version %d", version);
  return Opened{st, key_id, version, Bytes(out.get(), out.get() + out_len)};
}

std::string SealToken(token::KeyRing& ring, const Bytes& salt, const Bytes& payload,
                      const Bytes& aad, SealStatus expect = SealStatus::kOk) {
  char out[token::kMaxSealedChars];
  size_t out_len = 0;
  SealStatus st = token::Seal(ring, salt.data(), payload.empty() ? nullptr : payload.data(),
                              payload.size(), aad.empty() ? nullptr : aad.data(), aad.size(), out,
                              sizeof(out), &out_len);
  CHECK(st == expect, "seal status %d, expected %d", static_cast<int>(st), static_cast<int>(expect));
  return std::string(out, out_len);
}

// xorshift64*: deterministic, so a failure reproduces.
struct Rng {
  uint64_t s = 0x9E3779B97F4A7C15ull;
  uint64_t Next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1Dull;
  }
  size_t Below(size_t n) { return static_cast<size_t>(Next() % n); }
};

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

struct Ring {
  std::vector<std::pair<uint8_t, Bytes>> keys;
  int seal_id = -1;
};

void RunVectors(const char* path, token::KeyRing& ring, std::vector<std::string>* valid_tokens,
                Bytes* valid_aad) {
  std::ifstream in(path);
  CHECK(in.good(), "cannot read %s", path);
  Ring spec;
  bool ring_set = false;
  int seals = 0, opens = 0, macs = 0;
  hmac::Sha256Hmac hasher;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string kind;
    fields >> kind;
    if (kind == "ring") {
      int id;
      std::string key;
      fields >> id >> key;
      spec.keys.emplace_back(static_cast<uint8_t>(id), FromHex(key));
      continue;
    }
    if (kind == "seal-key") {
      fields >> spec.seal_id;
      continue;
    }
    if (!ring_set && (kind == "seal" || kind == "open")) {
      std::vector<token::KeyEntry> entries;
      for (auto& [id, key] : spec.keys) {
        CHECK(key.size() == token::kKeySize, "key size %zu", key.size());
        entries.push_back({id, key.data()});
      }
      CHECK(ring.Set(entries.data(), entries.size(), static_cast<uint8_t>(spec.seal_id)) ==
                RingStatus::kOk,
            "ring from vectors");
      ring_set = true;
    }
    if (kind == "seal") {
      std::string salt, payload, aad, tok;
      fields >> salt >> payload >> aad >> tok;
      std::string got = SealToken(ring, FromHex(salt), FromHex(payload), FromHex(aad));
      CHECK(got == FromHexString(tok), "seal vector: got %s", got.c_str());
      ++seals;
    } else if (kind == "open") {
      std::string tok, aad, payload;
      int status, key_id, version;
      fields >> tok >> aad >> status >> key_id >> version >> payload;
      const std::string text = FromHexString(tok);
      Opened o = OpenToken(ring, text, FromHex(aad));
      CHECK(static_cast<int>(o.status) == status, "open vector %s: status %d, expected %d",
            text.substr(0, 60).c_str(), static_cast<int>(o.status), status);
      CHECK(o.key_id == key_id, "open vector %s: key id %d, expected %d", text.c_str(), o.key_id,
            key_id);
      CHECK(o.version == version, "open vector %s: version %d, expected %d", text.c_str(),
            o.version, version);
      CHECK(o.payload == FromHex(payload), "open vector %s: payload differs", text.c_str());
      if (o.status == OpenStatus::kOk && valid_tokens->size() < 64) {
        valid_tokens->push_back(text);
        *valid_aad = FromHex(aad);  // all Ok vectors sharing the last aad are re-opened below
      }
      ++opens;
    } else if (kind == "hmac") {
      std::string key_hex, data_hex, mac_hex;
      fields >> key_hex >> data_hex >> mac_hex;
      Bytes key = FromHex(key_hex), data = FromHex(data_hex), mac = FromHex(mac_hex);
      uint8_t out[hmac::kSha256Size];
      CHECK(hmac::Sha256(key.empty() ? nullptr : key.data(), key.size(),
                         data.empty() ? nullptr : data.data(), data.size(), out) == hmac::Status::kOk,
            "hmac status");
      CHECK(Bytes(out, out + sizeof(out)) == mac, "hmac vector %s", mac_hex.c_str());
      // The reusable context, shared by every vector, so a key change between calls (including
      // to the empty key) is exercised.
      uint8_t reused[hmac::kSha256Size];
      CHECK(hasher.Sign(key.empty() ? nullptr : key.data(), key.size(),
                        data.empty() ? nullptr : data.data(), data.size(), reused) ==
                hmac::Status::kOk,
            "reusable hmac status");
      CHECK(Bytes(reused, reused + sizeof(reused)) == mac, "reusable hmac vector %s", mac_hex.c_str());
      CHECK(hasher.Verify(key.data(), key.size(), data.data(), data.size(), mac.data(), mac.size()),
            "reusable hmac verify");
      CHECK(!hasher.Verify(key.data(), key.size(), data.data(), data.size(), mac.data(), 31),
            "reusable hmac verify with 31 bytes");
      CHECK(hmac::VerifySha256(key.data(), key.size(), data.data(), data.size(), mac.data(),
                               mac.size()),
            "hmac verify accepts the right mac");
      for (size_t i = 0; i < mac.size() * 8; ++i) {
        Bytes bad = mac;
        bad[i / 8] ^= static_cast<uint8_t>(1u << (i % 8));
        CHECK(!hmac::VerifySha256(key.data(), key.size(), data.data(), data.size(), bad.data(),
                                  bad.size()),
              "hmac verify accepts a flipped bit %zu", i);
        CHECK(!hasher.Verify(key.data(), key.size(), data.data(), data.size(), bad.data(),
                             bad.size()),
              "reusable hmac verify accepts a flipped bit %zu", i);
      }
      for (size_t len : {size_t{0}, size_t{16}, size_t{31}}) {
        auto cut = std::make_unique<uint8_t[]>(len == 0 ? 1 : len);
        if (len > 0) std::memcpy(cut.get(), mac.data(), len);
        CHECK(!hmac::VerifySha256(key.data(), key.size(), data.data(), data.size(), cut.get(), len),
              "hmac verify accepts a %zu-byte prefix", len);
      }
      Bytes longer = mac;
      longer.push_back(0);
      CHECK(!hmac::VerifySha256(key.data(), key.size(), data.data(), data.size(), longer.data(),
                                longer.size()),
            "hmac verify accepts 33 bytes");
      CHECK(!hmac::VerifySha256(key.data(), key.size(), data.data(), data.size(), nullptr, 32),
            "hmac verify accepts a null mac");
      ++macs;
    } else if (!kind.empty() && kind != "ring" && kind != "seal-key") {
      CHECK(false, "unknown vector kind %s", kind.c_str());
    }
  }
  CHECK(seals > 0 && opens > 0 && macs > 0, "vector file has %d seal, %d open, %d hmac vectors",
        seals, opens, macs);
  std::printf("vectors: %d seal, %d open, %d hmac\n", seals, opens, macs);
}

void TestBase64(Rng& rng) {
  for (size_t len = 0; len <= 300; ++len) {
    Bytes in(len);
    for (auto& b : in) b = static_cast<uint8_t>(rng.Next());
    std::string enc(token::Base64UrlLength(len), '?');
    CHECK(token::Base64UrlEncode(in.data(), len, enc.data(), enc.size()) == enc.size(),
          "encode length");
    CHECK(len == 0 || token::Base64UrlEncode(in.data(), len, enc.data(), enc.size() - 1) == 0,
          "encode refuses a short buffer");
    auto exact = ExactCopy(enc);
    std::vector<uint8_t> out(len == 0 ? 1 : len);
    size_t out_len = 0;
    CHECK(token::Base64UrlDecode(exact.get(), enc.size(), out.data(), len, &out_len) &&
              out_len == len && (len == 0 || std::memcmp(out.data(), in.data(), len) == 0),
          "round trip at %zu", len);
    if (len > 0) {
      CHECK(!token::Base64UrlDecode(exact.get(), enc.size(), out.data(), len - 1, &out_len),
            "decode refuses a short output buffer");
    }
    // Every other spelling of the last character must be refused or decode to other bytes.
    if (!enc.empty()) {
      for (const char* c = kAlphabet; *c; ++c) {
        std::string alt = enc;
        if (alt.back() == *c) continue;
        alt.back() = *c;
        auto alt_exact = ExactCopy(alt);
        std::vector<uint8_t> alt_out(len);
        if (token::Base64UrlDecode(alt_exact.get(), alt.size(), alt_out.data(), len, &out_len)) {
          CHECK(std::memcmp(alt_out.data(), in.data(), len) != 0,
                "two spellings of one byte string at %zu", len);
        }
      }
    }
  }
  size_t n = 0;
  uint8_t one[4];
  CHECK(!token::Base64UrlDecode("A", 1, one, 4, &n), "length 1");
  CHECK(!token::Base64UrlDecode("AAAAA", 5, one, 4, &n), "length 5");
  CHECK(!token::Base64UrlDecode("AA==", 4, one, 4, &n), "padding");
  CHECK(!token::Base64UrlDecode("AB", 2, one, 4, &n), "trailing bits AB");
  CHECK(!token::Base64UrlDecode("AAB", 3, one, 4, &n), "trailing bits AAB");
  CHECK(!token::Base64UrlDecode("A+A/", 4, one, 4, &n), "standard alphabet");
  CHECK(!token::Base64UrlDecode("AA\0A", 4, one, 4, &n), "NUL");
  CHECK(!token::Base64UrlDecode("AA\xC3\x81", 4, one, 4, &n), "non-ASCII");
  CHECK(token::Base64UrlDecode("", 0, one, 0, &n) && n == 0, "empty");
  CHECK(token::Base64UrlDecode("_-8", 3, one, 4, &n) && n == 2 && one[0] == 0xFF && one[1] == 0xEF,
        "alphabet ends");
}

void TestRingAndSealErrors() {
  token::KeyRing ring;
  Bytes k1(32, 1), k2(32, 2), nonce(token::kSaltSize, 0), payload(10, 7);
  CHECK(!ring.HasSealKey(), "new ring has no seal key");
  SealToken(ring, nonce, payload, {}, SealStatus::kNoSealKey);
  CHECK(OpenToken(ring, "AQcAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", {}).status ==
            OpenStatus::kUnknownKey,
        "empty ring opens nothing");

  token::KeyEntry dup[] = {{1, k1.data()}, {1, k2.data()}};
  CHECK(ring.Set(dup, 2, 1) == RingStatus::kDuplicateId, "duplicate ids");
  token::KeyEntry two[] = {{1, k1.data()}, {2, k2.data()}};
  CHECK(ring.Set(two, 2, 3) == RingStatus::kSealKeyMissing, "seal id not in ring");
  CHECK(ring.Set(two, 0, 1) == RingStatus::kSealKeyMissing, "empty ring");
  token::KeyEntry null_key[] = {{1, nullptr}};
  CHECK(ring.Set(null_key, 1, 1) == RingStatus::kCryptoError, "null key");
  CHECK(!ring.HasSealKey(), "failed Set keeps the previous (empty) ring");

  CHECK(ring.Set(two, 2, 2) == RingStatus::kOk, "ring");
  CHECK(ring.Has(1) && ring.Has(2) && !ring.Has(3) && ring.seal_id() == 2, "ring contents");
  const std::string tok = SealToken(ring, nonce, payload, {});
  CHECK(ring.Set(dup, 2, 1) == RingStatus::kDuplicateId, "duplicate ids again");
  CHECK(OpenToken(ring, tok, {}).status == OpenStatus::kOk, "failed Set keeps the previous ring");

  Bytes too_big(token::kMaxPayloadSize + 1, 0);
  SealToken(ring, nonce, too_big, {}, SealStatus::kPayloadTooLarge);
  char small[10];
  size_t out_len = 0;
  CHECK(token::Seal(ring, nonce.data(), payload.data(), payload.size(), nullptr, 0, small,
                    sizeof(small), &out_len) == SealStatus::kOutputTooSmall,
        "short output buffer");

  Bytes max_payload(token::kMaxPayloadSize, 0xAB);
  const std::string max_tok = SealToken(ring, nonce, max_payload, {});
  CHECK(max_tok.size() == token::kMaxSealedChars, "max token is %zu chars", max_tok.size());
  Opened o = OpenToken(ring, max_tok, {});
  CHECK(o.status == OpenStatus::kOk && o.payload == max_payload && o.key_id == 2,
        "max payload round trip");

  // Rotation: a new ring with key 1 sealing still opens key 2's tokens.
  token::KeyEntry rotated[] = {{2, k2.data()}, {1, k1.data()}};
  CHECK(ring.Set(rotated, 2, 1) == RingStatus::kOk, "rotated ring");
  CHECK(OpenToken(ring, tok, {}).status == OpenStatus::kOk, "old token after rotation");
  ring.Clear();
  CHECK(OpenToken(ring, tok, {}).status == OpenStatus::kUnknownKey, "cleared ring");
}

void TestMutations(token::KeyRing& ring, const std::vector<std::string>& tokens, const Bytes& aad,
                   Rng& rng) {
  CHECK(!tokens.empty(), "no valid tokens in the vectors");
  int reopened = 0;
  for (const std::string& tok : tokens) {
    if (OpenToken(ring, tok, aad).status != OpenStatus::kOk) continue;  // other aad
    ++reopened;
    const Bytes payload = OpenToken(ring, tok, aad).payload;
    for (size_t len = 0; len < tok.size(); ++len) {
      CHECK(OpenToken(ring, tok.substr(0, len), aad).status != OpenStatus::kOk,
            "prefix of %zu chars opened", len);
    }
    for (size_t i = 0; i < tok.size(); ++i) {
      for (const char* c = kAlphabet; *c; ++c) {
        if (tok[i] == *c) continue;
        std::string bad = tok;
        bad[i] = *c;
        CHECK(OpenToken(ring, bad, aad).status != OpenStatus::kOk, "edit at %zu opened", i);
      }
    }
    for (int round = 0; round < 2000; ++round) {
      std::string bad = tok;
      const size_t edits = 1 + rng.Below(4);
      for (size_t e = 0; e < edits; ++e) {
        switch (rng.Below(4)) {
          case 0:
            bad[rng.Below(bad.size())] = static_cast<char>(rng.Next());
            break;
          case 1:
            bad.insert(bad.begin() + static_cast<long>(rng.Below(bad.size() + 1)),
                       kAlphabet[rng.Below(64)]);
            break;
          case 2:
            if (!bad.empty()) bad.erase(bad.begin() + static_cast<long>(rng.Below(bad.size())));
            break;
          default:
            bad.append(rng.Below(600), kAlphabet[rng.Below(64)]);
        }
      }
      Opened o = OpenToken(ring, bad, aad);
      CHECK(o.status != OpenStatus::kOk || (bad == tok && o.payload == payload),
            "mutation opened: %s", bad.substr(0, 80).c_str());
    }
  }
  CHECK(reopened > 0, "no token re-opened under the shared aad");
  // Pure garbage of every length up to past the cap, and random bytes.
  for (size_t len = 0; len <= token::kMaxTokenChars + 8; ++len) {
    std::string junk(len, 'A');
    for (auto& ch : junk) ch = rng.Below(4) == 0 ? static_cast<char>(rng.Next()) : kAlphabet[rng.Below(64)];
    Opened o = OpenToken(ring, junk, aad);
    CHECK(o.status != OpenStatus::kOk, "garbage of %zu chars opened", len);
    if (len > token::kMaxTokenChars) CHECK(o.status == OpenStatus::kMalformed, "over the cap");
  }
}


// ---------------------------------------------------------------------------------------------
// ClientHello parser (tether/client_hello.h): the captures in test/fixtures/client-hello/ with
// their expected values (expected.txt, written from the JS reference), fed whole, by prefix,
// re-framed and with bytes appended; crafted bad input; random mutations under the sanitizers.

namespace ch = tether::client_hello;

// A result with what its spans point into: the input copy (kept here) and the workspace (valid
// only until the next parse, so the result is also written out as text at once).
struct Parsed {
  ch::Status status;
  ch::ClientHello hello;
  std::shared_ptr<uint8_t[]> input;
  std::string text;            // every field
  std::string text_unframed;   // every field but consumed, which depends on the framing
};

std::string Describe(ch::Status status, const ch::ClientHello& h, bool with_consumed);

// Parses an exact-size heap copy, and checks what every result must satisfy.
Parsed ParseHello(ch::Workspace& ws, const Bytes& in, size_t cap = ch::kDefaultMaxBytes) {
  Parsed p;
  p.input = std::shared_ptr<uint8_t[]>(new uint8_t[in.empty() ? 1 : in.size()]);
  if (!in.empty()) std::memcpy(p.input.get(), in.data(), in.size());
  p.status = ch::Parse(in.empty() ? nullptr : p.input.get(), in.size(), cap, ws, &p.hello);
  p.text = Describe(p.status, p.hello, true);
  p.text_unframed = Describe(p.status, p.hello, false);
  const ch::ClientHello& h = p.hello;
  switch (p.status) {
    case ch::Status::kOk:
      CHECK(h.consumed > 0 && h.consumed <= in.size() && h.consumed <= cap, "consumed %zu", h.consumed);
      CHECK(h.reason == nullptr && h.ja4_ok && h.ja4_r_len >= 13, "ok fields");
      CHECK(h.sni_len <= ch::kMaxHostNameBytes && h.has_sni == (h.sni_len > 0), "sni");
      CHECK(std::memcmp(h.ja4, h.ja4_r, 11) == 0, "ja4 and ja4_r share the a part");
      break;
    case ch::Status::kIncomplete:
      CHECK(h.reason == nullptr && h.consumed == 0, "incomplete fields");
      CHECK(in.size() < cap, "incomplete with %zu bytes, cap %zu", in.size(), cap);
      break;
    default:
      CHECK(h.reason != nullptr && std::strlen(h.reason) > 0 && h.consumed == 0 && !h.has_sni,
            "failure fields");
  }
  return p;
}

std::string Describe(ch::Status status, const ch::ClientHello& h, bool with_consumed) {
  std::string s = std::to_string(static_cast<int>(status));
  if (status != ch::Status::kOk) return s + " " + (h.reason ? h.reason : "");
  if (with_consumed) s += " " + std::to_string(h.consumed);
  s += std::string(" ") + (h.has_sni ? std::string(h.sni, h.sni_len) : "-");
  size_t offset = 0;
  ch::Span name;
  s += " alpn";
  while (ch::NextAlpn(h.alpn, &offset, &name)) {
    s += " " + std::string(reinterpret_cast<const char*>(name.data), name.size);
  }
  s += " v";
  for (size_t i = 0; i < h.version_count; ++i) s += " " + std::to_string(h.versions[i]);
  s += " " + std::to_string(h.legacy_version) + " " + std::string(h.ja4, ch::kJa4Chars) + " " +
       std::string(h.ja4_r, h.ja4_r_len);
  return s;
}

Bytes MessageOf(const Bytes& records) {
  Bytes out;
  for (size_t at = 0; at + 5 <= records.size();) {
    const size_t n = (size_t{records[at + 3]} << 8) | records[at + 4];
    out.insert(out.end(), records.begin() + static_cast<long>(at + 5),
               records.begin() + static_cast<long>(at + 5 + n));
    at += 5 + n;
  }
  return out;
}

// The message in records of `sizes` bytes (cycled), type 0x16, version 3.1.
Bytes Frame(const Bytes& msg, const std::vector<size_t>& sizes) {
  Bytes out;
  for (size_t at = 0, i = 0; at < msg.size(); ++i) {
    const size_t n = std::min(sizes[i % sizes.size()], msg.size() - at);
    out.insert(out.end(), {0x16, 0x03, 0x01, static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n)});
    out.insert(out.end(), msg.begin() + static_cast<long>(at), msg.begin() + static_cast<long>(at + n));
    at += n;
  }
  return out;
}

std::string ToHex(const uint8_t* p, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    s += kDigits[p[i] >> 4];
    s += kDigits[p[i] & 15];
  }
  return s;
}

std::vector<Bytes> TestClientHelloFixtures(ch::Workspace& ws, const std::string& dir, Rng& rng) {
  std::ifstream in(dir + "/expected.txt");
  CHECK(in.good(), "cannot read %s/expected.txt", dir.c_str());
  std::vector<Bytes> captures;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string file, sni, alpn, versions, legacy, ja4, ja4_r;
    size_t consumed = 0;
    fields >> file >> consumed >> sni >> alpn >> versions >> legacy >> ja4 >> ja4_r;
    std::ifstream hex_file(dir + "/" + file);
    std::string hex;
    hex_file >> hex;
    const Bytes bytes = FromHex(hex);
    CHECK(!bytes.empty(), "empty fixture %s", file.c_str());

    const Parsed p = ParseHello(ws, bytes);
    const ch::ClientHello& h = p.hello;
    CHECK(p.status == ch::Status::kOk, "%s: status %d (%s)", file.c_str(), static_cast<int>(p.status),
          h.reason ? h.reason : "");
    CHECK(h.consumed == consumed && consumed == bytes.size(), "%s: consumed %zu", file.c_str(), h.consumed);
    CHECK((sni == "-" ? std::string() : sni) == std::string(h.sni, h.sni_len), "%s: sni", file.c_str());
    std::string got_alpn;
    size_t offset = 0;
    ch::Span name;
    while (ch::NextAlpn(h.alpn, &offset, &name)) {
      got_alpn += (got_alpn.empty() ? "" : ",") + ToHex(name.data, name.size);
    }
    CHECK((alpn == "-" ? std::string() : alpn) == got_alpn, "%s: alpn %s", file.c_str(), got_alpn.c_str());
    std::string got_versions;
    for (size_t i = 0; i < h.version_count; ++i) {
      const uint8_t v[2] = {static_cast<uint8_t>(h.versions[i] >> 8), static_cast<uint8_t>(h.versions[i])};
      got_versions += (got_versions.empty() ? "" : ",") + ToHex(v, 2);
    }
    CHECK((versions == "-" ? std::string() : versions) == got_versions, "%s: versions", file.c_str());
    CHECK(std::stoi(legacy, nullptr, 16) == h.legacy_version, "%s: legacy_version", file.c_str());
    CHECK(std::string(h.ja4, ch::kJa4Chars) == ja4, "%s: ja4 %.*s", file.c_str(),
          static_cast<int>(ch::kJa4Chars), h.ja4);
    CHECK(std::string(h.ja4_r, h.ja4_r_len) == ja4_r, "%s: ja4_r", file.c_str());
    const std::string want = p.text;

    // Every proper prefix is incomplete; appended bytes are not consumed.
    for (size_t n = 0; n < bytes.size(); ++n) {
      const Parsed q = ParseHello(ws, Bytes(bytes.begin(), bytes.begin() + static_cast<long>(n)));
      CHECK(q.status == ch::Status::kIncomplete, "%s: prefix %zu is %d", file.c_str(), n,
            static_cast<int>(q.status));
    }
    for (const Bytes& tail : {Bytes{0x14, 3, 3, 0, 1, 1}, Bytes(3000, 0x16), Bytes{0x00}}) {
      Bytes longer = bytes;
      longer.insert(longer.end(), tail.begin(), tail.end());
      CHECK(ParseHello(ws, longer).text == want, "%s: bytes after the ClientHello", file.c_str());
    }
    // Re-framed: one-byte records, then random sizes; the same fields, consumed = framed size.
    const Bytes msg = MessageOf(bytes);
    for (int round = 0; round < 50; ++round) {
      std::vector<size_t> sizes;
      for (int i = 0; i < 7; ++i) sizes.push_back(round == 0 ? 1 : 1 + rng.Below(round % 2 ? 8 : msg.size()));
      const Bytes framed = Frame(msg, sizes);
      const Parsed r = ParseHello(ws, framed, ch::kMaxCapBytes);
      CHECK(r.status == ch::Status::kOk && r.hello.consumed == framed.size(), "%s: re-framed round %d",
            file.c_str(), round);
      CHECK(r.text_unframed == p.text_unframed, "%s: re-framed fields, round %d", file.c_str(), round);
      const size_t cut = rng.Below(framed.size());
      CHECK(ParseHello(ws, Bytes(framed.begin(), framed.begin() + static_cast<long>(cut)), ch::kMaxCapBytes)
                    .status == ch::Status::kIncomplete,
            "%s: re-framed prefix", file.c_str());
      // One byte below the framed size is too large, one byte more is fine.
      CHECK(ParseHello(ws, framed, framed.size() - 1).status == ch::Status::kTooLarge, "%s: cap - 1", file.c_str());
      CHECK(ParseHello(ws, framed, framed.size()).status == ch::Status::kOk, "%s: cap", file.c_str());
    }
    captures.push_back(bytes);
  }
  CHECK(captures.size() >= 4, "only %zu ClientHello fixtures", captures.size());
  std::printf("client_hello: %zu captures\n", captures.size());
  return captures;
}

Bytes Concat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

Bytes U16Vec(const Bytes& data) {
  return Concat({{static_cast<uint8_t>(data.size() >> 8), static_cast<uint8_t>(data.size())}, data});
}

Bytes Ext(uint16_t type, const Bytes& data) {
  return Concat({{static_cast<uint8_t>(type >> 8), static_cast<uint8_t>(type)}, U16Vec(data)});
}

// type 1 | u24 | 0303 | random | empty session id | ciphers 1301 | compression {0} | extensions
Bytes HelloMessage(const std::vector<Bytes>& extensions) {
  Bytes body = {0x03, 0x03};
  body.insert(body.end(), 32, 0x52);
  body.insert(body.end(), {0x00, 0x00, 0x02, 0x13, 0x01, 0x01, 0x00});
  Bytes block;
  for (const Bytes& e : extensions) block.insert(block.end(), e.begin(), e.end());
  body = Concat({body, U16Vec(block)});
  return Concat({{0x01, 0x00, static_cast<uint8_t>(body.size() >> 8), static_cast<uint8_t>(body.size())}, body});
}

Bytes SniExt(const std::string& name) {
  return Ext(0x0000, U16Vec(Concat({{0x00}, U16Vec(Bytes(name.begin(), name.end()))})));
}

void ExpectFailure(ch::Workspace& ws, const Bytes& in, ch::Status status, const char* reason,
                   size_t cap = ch::kDefaultMaxBytes) {
  const Parsed p = ParseHello(ws, in, cap);
  CHECK(p.status == status && std::strcmp(p.hello.reason, reason) == 0,
        "expected %d \"%s\", got %d \"%s\"", static_cast<int>(status), reason,
        static_cast<int>(p.status), p.hello.reason ? p.hello.reason : "");
}

void TestClientHelloCrafted(ch::Workspace& ws) {
  using S = ch::Status;
  ExpectFailure(ws, Bytes{'G', 'E', 'T', ' '}, S::kNotTls, "not a TLS handshake record");
  ExpectFailure(ws, Bytes{0x16, 0x02}, S::kNotTls, "record version is not 3.x");
  ExpectFailure(ws, Bytes{0x16, 0x03, 0x01, 0x00, 0x00}, S::kMalformed, "empty record");
  ExpectFailure(ws, Bytes{0x16, 0x03, 0x01, 0x40, 0x01}, S::kMalformed, "record longer than 16384 bytes");
  ExpectFailure(ws, Bytes{0x16, 0x03, 0x01, 0x01, 0x00}, S::kTooLarge, "ClientHello exceeds the size cap", 200);
  ExpectFailure(ws, Bytes{0x16, 0x03, 0x01, 0x00, 0x64, 0x01, 0xff, 0xff, 0xff}, S::kTooLarge,
                "ClientHello exceeds the size cap");
  ExpectFailure(ws, Bytes{0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00}, S::kMalformed,
                "handshake message is not a ClientHello");
  ExpectFailure(ws, Frame(HelloMessage({SniExt("a.test"), SniExt("b.test")}), {16384}), S::kMalformed,
                "duplicate extension");
  ExpectFailure(ws, Frame(HelloMessage({SniExt("a\x01.test")}), {16384}), S::kMalformed,
                "host name is not a valid DNS name");
  ExpectFailure(ws, Frame(HelloMessage({Ext(0x29, {}), Ext(0x17, {})}), {16384}), S::kMalformed,
                "pre_shared_key is not the last extension");
  Bytes with_ccs = Frame(HelloMessage({SniExt("a.test")}), {10});
  with_ccs.insert(with_ccs.begin() + 15, {0x14, 0x03, 0x03, 0x00, 0x01, 0x01});
  ExpectFailure(ws, with_ccs, S::kMalformed, "non-handshake record inside the ClientHello");

  // The duplicate-extension bitset is workspace state: it must be clean for the next parse,
  // whichever way the last one ended.
  const Bytes good = Frame(HelloMessage({Ext(0x17, {}), SniExt("A.Test"), Ext(0xfafa, {})}), {16384});
  for (int i = 0; i < 3; ++i) {
    const Parsed p = ParseHello(ws, good);
    CHECK(p.status == S::kOk && std::string(p.hello.sni, p.hello.sni_len) == "a.test", "good after %d", i);
    ExpectFailure(ws, Frame(HelloMessage({Ext(0x17, {}), Ext(0xfafa, {}), Ext(0x17, {})}), {16384}),
                  S::kMalformed, "duplicate extension");
    ExpectFailure(ws, Frame(HelloMessage({Ext(0xfafa, {}), SniExt("")}), {16384}), S::kMalformed,
                  "empty host name");
  }
  // A ClientHello as large as the biggest cap, in full-size records, with 16 Ki extensions.
  std::vector<Bytes> many;
  for (uint16_t t = 0x1000; many.size() < 16000; ++t) many.push_back(Ext(t, {}));
  const Bytes big = Frame(HelloMessage(many), {16384});
  const Parsed p = ParseHello(ws, big, ch::kMaxCapBytes);
  CHECK(p.status == S::kOk && p.hello.consumed == big.size(), "16000 extensions: %d", static_cast<int>(p.status));
  CHECK(std::string(p.hello.ja4, 10) == "t12i019900", "16000 extensions: %.10s", p.hello.ja4);
  CHECK(ParseHello(ws, big, big.size() - 1).status == S::kTooLarge, "16000 extensions, cap - 1");
  std::printf("client_hello: crafted cases\n");
}

void TestClientHelloMutations(ch::Workspace& ws, const std::vector<Bytes>& captures, Rng& rng) {
  int counts[5] = {};
  for (int round = 0; round < 20000; ++round) {
    Bytes in = captures[rng.Below(captures.size())];
    if (rng.Below(3) == 0) in = Frame(MessageOf(in), {1 + rng.Below(600), 1 + rng.Below(600)});
    const size_t edits = 1 + rng.Below(4);
    for (size_t e = 0; e < edits; ++e) {
      const size_t at = rng.Below(in.size() + 1);
      switch (rng.Below(6)) {
        case 0:
          if (at < in.size()) in[at] = static_cast<uint8_t>(rng.Next());
          break;
        case 1:
          if (at < in.size()) in[at] ^= static_cast<uint8_t>(1u << rng.Below(8));
          break;
        case 2:
          in.erase(in.begin() + static_cast<long>(at), in.begin() + static_cast<long>(std::min(in.size(), at + 1 + rng.Below(4))));
          break;
        case 3:
          in.resize(std::min(in.size(), at));
          break;
        case 4:
          if (at + 1 < in.size()) in[at + 1] = static_cast<uint8_t>(in[at + 1] + 1 + rng.Below(3));
          break;
        default:
          for (size_t i = rng.Below(40); i > 0; --i) in.insert(in.begin() + static_cast<long>(at), static_cast<uint8_t>(rng.Next()));
      }
    }
    const size_t cap = rng.Below(4) == 0 ? ch::kMinCapBytes + rng.Below(4000) : ch::kDefaultMaxBytes;
    const Parsed p = ParseHello(ws, in, cap);
    ++counts[static_cast<int>(p.status)];
    if (p.status == ch::Status::kIncomplete) continue;
    // A decision stands whatever follows.
    Bytes longer = in;
    longer.insert(longer.end(), 1 + rng.Below(100), static_cast<uint8_t>(rng.Next()));
    CHECK(ParseHello(ws, longer, cap).text == p.text, "decision changed by appended bytes");
  }
  for (int s = 0; s < 5; ++s) CHECK(counts[s] > 20, "status %d seen %d times", s, counts[s]);
  std::printf("client_hello: 20000 mutations (ok %d, incomplete %d, not_tls %d, too_large %d, malformed %d)\n",
              counts[0], counts[1], counts[2], counts[3], counts[4]);
}

}  // namespace

// AES-256-GCM sealing: the GCM specification's AES-256 vectors (test cases 13 and 14), then
// random sizes opened again with OpenSSL's decrypt and checked with a flipped tag bit, every
// input copied to a buffer of its exact size; then the size limits.
bool GcmOpens(const Bytes& key, const Bytes& nonce, const Bytes& aad, const uint8_t* sealed,
              size_t sealed_len, Bytes* plaintext) {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  const size_t len = sealed_len - tether::aead::kTagSize;
  plaintext->assign(len, 0);
  int n = 0;
  bool ok = EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, key.data(), nonce.data()) == 1 &&
            (aad.empty() || EVP_DecryptUpdate(ctx, nullptr, &n, aad.data(), static_cast<int>(aad.size())) == 1) &&
            (len == 0 || EVP_DecryptUpdate(ctx, plaintext->data(), &n, sealed, static_cast<int>(len)) == 1) &&
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, const_cast<uint8_t*>(sealed + len)) == 1 &&
            EVP_DecryptFinal_ex(ctx, plaintext->data() + len, &n) == 1;
  EVP_CIPHER_CTX_free(ctx);
  return ok;
}

void TestAead(Rng& rng) {
  namespace aead = tether::aead;
  aead::Aes256GcmSealer sealer;
  const Bytes zero_key(32, 0), zero_nonce(12, 0);
  uint8_t tag_only[16];
  CHECK(sealer.Seal(zero_key.data(), zero_nonce.data(), nullptr, 0, nullptr, 0, tag_only) == aead::Status::kOk, "tc13");
  CHECK(ToHex(tag_only, 16) == "530f8afbc74536b9a963b4f1c4cb738b", "tc13 tag %s", ToHex(tag_only, 16).c_str());
  const Bytes zeros16(16, 0);
  uint8_t tc14[32];
  CHECK(sealer.Seal(zero_key.data(), zero_nonce.data(), nullptr, 0, zeros16.data(), 16, tc14) == aead::Status::kOk, "tc14");
  CHECK(ToHex(tc14, 32) == "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919", "tc14 %s", ToHex(tc14, 32).c_str());
  for (int i = 0; i < 300; ++i) {
    Bytes key(32), nonce(12), aad(rng.Below(80)), plaintext(rng.Below(700));
    for (auto* v : {&key, &nonce, &aad, &plaintext}) for (auto& b : *v) b = static_cast<uint8_t>(rng.Next());
    auto out = std::make_unique<uint8_t[]>(plaintext.size() + aead::kTagSize);
    auto in = std::make_unique<uint8_t[]>(plaintext.size() + 1);
    if (!plaintext.empty()) std::memcpy(in.get(), plaintext.data(), plaintext.size());
    CHECK(sealer.Seal(key.data(), nonce.data(), aad.empty() ? nullptr : aad.data(), aad.size(), in.get(),
                      plaintext.size(), out.get()) == aead::Status::kOk, "seal %d", i);
    Bytes opened;
    CHECK(GcmOpens(key, nonce, aad, out.get(), plaintext.size() + aead::kTagSize, &opened) && opened == plaintext, "open %d", i);
    out[plaintext.size() + rng.Below(aead::kTagSize)] ^= static_cast<uint8_t>(1u << rng.Below(8));
    CHECK(!GcmOpens(key, nonce, aad, out.get(), plaintext.size() + aead::kTagSize, &opened), "tampered tag opened %d", i);
  }
  Bytes big(aead::kMaxInput + 1, 1);
  Bytes big_out(big.size() + aead::kTagSize, 0);
  CHECK(sealer.Seal(zero_key.data(), zero_nonce.data(), nullptr, 0, big.data(), big.size(), big_out.data()) == aead::Status::kTooLarge, "plaintext cap");
  CHECK(sealer.Seal(zero_key.data(), zero_nonce.data(), big.data(), big.size(), nullptr, 0, tag_only) == aead::Status::kTooLarge, "aad cap");
  CHECK(sealer.Seal(zero_key.data(), zero_nonce.data(), big.data(), aead::kMaxInput, big.data(), aead::kMaxInput, big_out.data()) == aead::Status::kOk, "at the cap");
}

// The passthrough's listening socket (listen_socket.cc), on loopback: SO_REUSEPORT lets a
// second socket share the port, an accepted connection inherits TCP_NODELAY (the relay no
// longer sets it per connection, so a kernel that did not copy it must fail here), and a host
// that is not a numeric address is refused as such.
void TestListenSocket() {
  namespace ls = tether::listen_socket;
  ls::Result first = ls::OpenReusePort("127.0.0.1", 0, 16);
  CHECK(first.fd >= 0, "OpenReusePort failed in %s: errno %d", first.call, first.error);
  sockaddr_in addr{};
  socklen_t len = sizeof addr;
  CHECK(getsockname(first.fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0, "getsockname: errno %d", errno);
  const uint16_t port = ntohs(addr.sin_port);
  ls::Result second = ls::OpenReusePort("127.0.0.1", port, 16);
  CHECK(second.fd >= 0, "a second SO_REUSEPORT socket on port %u: %s errno %d", port, second.call, second.error);
  close(second.fd);
  int client = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(client >= 0, "socket: errno %d", errno);
  CHECK(connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0, "connect to port %u: errno %d", port, errno);
  int accepted = -1;
  for (int i = 0; i < 2000 && accepted < 0; i++) {  // the listener is non-blocking: ~2 s at most
    accepted = accept(first.fd, nullptr, nullptr);
    if (accepted < 0) usleep(1000);
  }
  CHECK(accepted >= 0, "accept: errno %d", errno);
  int nodelay = 0;
  socklen_t optlen = sizeof nodelay;
  CHECK(getsockopt(accepted, IPPROTO_TCP, TCP_NODELAY, &nodelay, &optlen) == 0, "getsockopt: errno %d", errno);
  CHECK(nodelay == 1, "an accepted socket has TCP_NODELAY %d, expected it inherited from the listener", nodelay);
  close(accepted);
  close(client);
  close(first.fd);
  ls::Result bad = ls::OpenReusePort("localhost", 0, 16);
  CHECK(bad.fd < 0 && bad.error == EINVAL && std::strcmp(bad.call, "address") == 0, "a host name: fd %d error %d call %s", bad.fd, bad.error, bad.call);
}

int main(int argc, char** argv) {
  const char* vectors = argc > 1 ? argv[1] : "test/fixtures/token-vectors.txt";
  const char* client_hellos = argc > 2 ? argv[2] : "test/fixtures/client-hello";
  Rng rng;
  token::KeyRing ring;
  std::vector<std::string> valid_tokens;
  Bytes valid_aad;
  RunVectors(vectors, ring, &valid_tokens, &valid_aad);
  TestBase64(rng);
  TestRingAndSealErrors();
  TestMutations(ring, valid_tokens, valid_aad, rng);
  auto workspace = std::make_unique<tether::client_hello::Workspace>();  // ~330 KiB: not on the stack
  const auto captures = TestClientHelloFixtures(*workspace, client_hellos, rng);
  TestClientHelloCrafted(*workspace);
  TestClientHelloMutations(*workspace, captures, rng);
  TestAead(rng);
  TestListenSocket();
  std::printf("native_test: %d checks passed\n", g_checks);
  return 0;
}
