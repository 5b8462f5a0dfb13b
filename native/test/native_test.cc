// Standalone test of the token and HMAC cores, built with ASan/UBSan by native/sanitize.sh and
// linked against the system's libcrypto (no Node). Known answers come from
// test/fixtures/token-vectors.txt (written by gen-token-vectors.mjs); the rest is truncated,
// mutated and random input, each copied into a buffer of its exact size so any read past the
// end is caught. Exits non-zero on the first failed check.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "tether/hmac.h"
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
  Bytes payload;
};

Opened OpenToken(token::KeyRing& ring, const std::string& tok, const Bytes& aad) {
  auto input = ExactCopy(tok);
  auto aad_copy = std::make_unique<uint8_t[]>(aad.size() == 0 ? 1 : aad.size());
  if (!aad.empty()) std::memcpy(aad_copy.get(), aad.data(), aad.size());
  auto out = std::make_unique<uint8_t[]>(token::kMaxPayloadSize);
  size_t out_len = 12345;
  int key_id = 12345;
  OpenStatus st = token::Open(ring, input.get(), tok.size(), aad.empty() ? nullptr : aad_copy.get(),
                              aad.size(), out.get(), &out_len, &key_id);
  CHECK(st == OpenStatus::kOk || out_len == 0, "payload length %zu on failure", out_len);
  return Opened{st, key_id, Bytes(out.get(), out.get() + out_len)};
}

std::string SealToken(token::KeyRing& ring, const Bytes& nonce, const Bytes& payload,
                      const Bytes& aad, SealStatus expect = SealStatus::kOk) {
  char out[token::kMaxSealedChars];
  size_t out_len = 0;
  SealStatus st = token::Seal(ring, nonce.data(), payload.empty() ? nullptr : payload.data(),
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
      std::string nonce, payload, aad, tok;
      fields >> nonce >> payload >> aad >> tok;
      std::string got = SealToken(ring, FromHex(nonce), FromHex(payload), FromHex(aad));
      CHECK(got == FromHexString(tok), "seal vector: got %s", got.c_str());
      ++seals;
    } else if (kind == "open") {
      std::string tok, aad, payload;
      int status, key_id;
      fields >> tok >> aad >> status >> key_id >> payload;
      const std::string text = FromHexString(tok);
      Opened o = OpenToken(ring, text, FromHex(aad));
      CHECK(static_cast<int>(o.status) == status, "open vector %s: status %d, expected %d",
            text.substr(0, 60).c_str(), static_cast<int>(o.status), status);
      CHECK(o.key_id == key_id, "open vector %s: key id %d, expected %d", text.c_str(), o.key_id,
            key_id);
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
  Bytes k1(32, 1), k2(32, 2), nonce(12, 0), payload(10, 7);
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

}  // namespace

int main(int argc, char** argv) {
  const char* vectors = argc > 1 ? argv[1] : "test/fixtures/token-vectors.txt";
  Rng rng;
  token::KeyRing ring;
  std::vector<std::string> valid_tokens;
  Bytes valid_aad;
  RunVectors(vectors, ring, &valid_tokens, &valid_aad);
  TestBase64(rng);
  TestRingAndSealErrors();
  TestMutations(ring, valid_tokens, valid_aad, rng);
  std::printf("native_test: %d checks passed\n", g_checks);
  return 0;
}
