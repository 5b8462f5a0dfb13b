// The C library's allocator, tuned for a relay: a process-wide setting, not a function of bytes.
// Kept apart, like listen_socket.h, so the parsers and crypto stay side-effect free.
//
// Why: every read Node makes for a raw TCP handle is a fresh 64 KiB malloc, freed when V8
// collects its ArrayBuffer. V8 collects once external memory has grown by ~64 MiB, so a busy relay
// frees tens of megabytes at a time. glibc gives the free top of a heap back to the kernel once it
// exceeds M_TRIM_THRESHOLD, and the next reads fault all those pages in again. Measured on 100 MiB
// passthrough transfers (one worker, 4 at a time): ~180,000 page faults/s and twice the CPU per
// byte in the runs where that happened; with the threshold set at start to 64 MiB or more, ~400
// faults/s in every run, and at 32 MiB one run in three still faulted.
// Since then the passthrough reads into buffers of its own (src/data-plane/passthrough/
// connection.ts), and bulk relaying no longer depends on this: with the threshold left at glibc's
// default, 4 of 4 such runs stayed at ~800 faults/s. What it still covers is what the process
// allocates and frees in bursts elsewhere (copies of mid-size reads, the HTTP path).
#ifndef TETHER_MALLOC_TUNING_H_
#define TETHER_MALLOC_TUNING_H_

namespace tether::malloc_tuning {

// Sets glibc's M_TRIM_THRESHOLD (which also turns off its dynamic adjustment) for every arena
// of the process. bytes > 0. Returns false where the C library has no such setting (not glibc)
// or refuses the value.
bool SetTrimThreshold(int bytes);

}  // namespace tether::malloc_tuning

#endif  // TETHER_MALLOC_TUNING_H_
