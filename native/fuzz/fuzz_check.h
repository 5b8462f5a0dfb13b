// FUZZ_CHECK(cond): a fuzz target's invariant. On failure, says which one and aborts, so
// libFuzzer records the input as a crash (run.sh then keeps it as a fixture).
#ifndef TETHER_FUZZ_CHECK_H_
#define TETHER_FUZZ_CHECK_H_

#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(cond)                                                              \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                   \
    }                                                                                 \
  } while (0)

#endif  // TETHER_FUZZ_CHECK_H_
