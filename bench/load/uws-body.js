// Shared by the bench backends (backend.js, tls-backend.js): a large body streamed from one
// preallocated 1 MiB buffer (one tryEnd per MiB keeps syscalls few), honouring uWS
// backpressure.

const CHUNK = Buffer.alloc(1024 * 1024, 'tether-bench-');

/**
 * Writes body bytes [offset, total) until the socket pushes back. uWS's tryEnd writes what the
 * socket takes *without* buffering the rest, so on backpressure the onWritable handler resumes
 * from the offset uWS reports. Returns true once the whole response is out (tryEnd's `done`),
 * false on backpressure: exactly onWritable's contract.
 */
export function pumpBytes(res, offset, total) {
  while (offset < total) {
    const at = offset % CHUNK.length;
    const length = Math.min(CHUNK.length - at, total - offset);
    const [ok, done] = res.tryEnd(CHUNK.subarray(at, at + length), total);
    if (done) return true;
    if (!ok) return false;
    offset += length;
  }
  return true;
}
