// Bench-only addon (target tether_table_bench in binding.gyp, never loaded by Tether): the
// shared table's lookup in C++ over the same SharedArrayBuffer, so bench/micro/table.bench.js
// can decide between TS Atomics and C++ by measurement (issue #5). Same layout, same seqlock
// protocol as src/shared-memory/table.ts; every word is read with a sequentially consistent
// std::atomic_ref load, as Atomics.load does. Bounds are checked against the buffer size
// before any slot is read.
//
// tableGet(words: Int32Array, k0, k1, k2, nowSec, out: Int32Array(7)) -> boolean
//   out = [value, flags, expiresAt, tag0, tag1, tag2, tag3] on a live hit.
#include <node_api.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace {

constexpr size_t kHeaderWords = 16;
constexpr size_t kSlotsPerBucket = 8;
constexpr size_t kSlotWords = 12;
constexpr int kReadRetries = 1000;

int32_t Load(int32_t* words, size_t i) { return std::atomic_ref<int32_t>(words[i]).load(std::memory_order_seq_cst); }

bool Find(int32_t* w, size_t slot_base, uint32_t bucket, int32_t k0, int32_t k1, int32_t k2, uint32_t now,
          int32_t* out) {
  size_t s = slot_base + static_cast<size_t>(bucket) * kSlotsPerBucket * kSlotWords;
  const size_t end = s + kSlotsPerBucket * kSlotWords;
  for (; s < end; s += kSlotWords) {
    for (int tries = 0; tries < kReadRetries; tries++) {
      const int32_t seq = Load(w, s);
      if (seq & 1) continue;
      const uint32_t expires = static_cast<uint32_t>(Load(w, s + 4));
      if (expires == 0 || Load(w, s + 1) != k0 || Load(w, s + 2) != k1 || Load(w, s + 3) != k2) {
        if (Load(w, s) == seq) break;
        continue;
      }
      int32_t v[7] = {Load(w, s + 6), Load(w, s + 7), static_cast<int32_t>(expires),
                      Load(w, s + 8), Load(w, s + 9), Load(w, s + 10), Load(w, s + 11)};
      if (Load(w, s) != seq) continue;
      if (expires <= now) return false;
      for (int i = 0; i < 7; i++) out[i] = v[i];
      return true;
    }
  }
  return false;
}

bool Int32ArrayArg(napi_env env, napi_value v, int32_t** data, size_t* length) {
  bool is_typed = false;
  napi_typedarray_type type;
  void* raw = nullptr;
  if (napi_is_typedarray(env, v, &is_typed) != napi_ok || !is_typed) return false;
  if (napi_get_typedarray_info(env, v, &type, length, &raw, nullptr, nullptr) != napi_ok) return false;
  if (type != napi_int32_array) return false;
  *data = static_cast<int32_t*>(raw);
  return true;
}

napi_value TableGet(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  int32_t* w = nullptr;
  size_t words = 0;
  int32_t* out = nullptr;
  size_t out_length = 0;
  int32_t k0 = 0, k1 = 0, k2 = 0;
  uint32_t now = 0;
  if (argc < 6 || !Int32ArrayArg(env, argv[0], &w, &words) || !Int32ArrayArg(env, argv[5], &out, &out_length) ||
      out_length < 7 || napi_get_value_int32(env, argv[1], &k0) != napi_ok ||
      napi_get_value_int32(env, argv[2], &k1) != napi_ok || napi_get_value_int32(env, argv[3], &k2) != napi_ok ||
      napi_get_value_uint32(env, argv[4], &now) != napi_ok) {
    napi_throw_type_error(env, nullptr, "tableGet(words: Int32Array, k0, k1, k2, nowSec, out: Int32Array(7))");
    return nullptr;
  }
  if (words < kHeaderWords) {
    napi_throw_range_error(env, nullptr, "tableGet: not a table (shorter than its header)");
    return nullptr;
  }
  const uint32_t buckets = static_cast<uint32_t>(Load(w, 2));
  const size_t slot_base = kHeaderWords + buckets;
  if (buckets == 0 || (buckets & (buckets - 1)) != 0 ||
      words != slot_base + static_cast<size_t>(buckets) * kSlotsPerBucket * kSlotWords) {
    napi_throw_range_error(env, nullptr, "tableGet: the buffer does not match its header");
    return nullptr;
  }
  const uint32_t mask = buckets - 1;
  const uint32_t b1 = static_cast<uint32_t>(k0) & mask;
  uint32_t b2 = static_cast<uint32_t>(k1) & mask;
  if (b2 == b1) b2 = (b1 + 1) & mask;
  const bool hit = Find(w, slot_base, b1, k0, k1, k2, now, out) || Find(w, slot_base, b2, k0, k1, k2, now, out);
  napi_value result;
  napi_get_boolean(env, hit, &result);
  return result;
}

napi_value Init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "tableGet", NAPI_AUTO_LENGTH, TableGet, nullptr, &fn);
  napi_set_named_property(env, exports, "tableGet", fn);
  return exports;
}

}  // namespace

NAPI_MODULE_INIT() { return Init(env, exports); }
