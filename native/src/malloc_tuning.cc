// See tether/malloc_tuning.h.
#include "tether/malloc_tuning.h"

#include <cstdlib>  // defines __GLIBC__ on glibc

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace tether::malloc_tuning {

bool SetTrimThreshold(int bytes) {
  if (bytes <= 0) return false;
#if defined(__GLIBC__)
  return mallopt(M_TRIM_THRESHOLD, bytes) == 1;
#else
  return false;
#endif
}

}  // namespace tether::malloc_tuning
