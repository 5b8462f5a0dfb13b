// Scenario large-body: 100 MiB downloads and 100 MiB uploads through the balancer. What it
// shows: whether a balancer streams bodies with backpressure (flat peak RSS, which the harness
// samples) or buffers them, and how fast it moves bytes. wrk cannot upload or verify sizes, so
// measure() drives the load itself with node:http.
//
// Load: DOWNLOADS + UPLOADS lanes run at the same time for the whole duration, each one
// transfer after another on its own keep-alive connection (one agent, one socket per lane):
// a download lane does GET /large?bytes=N, an upload lane POST /upload with N bytes
// (Content-Length). Every transfer is verified (downloaded byte count = N; the backend's
// acknowledged count = N) and has its own deadline; a failure is counted and its connection
// dropped, never retried in place. A lane starts no transfer after the duration ends; the one
// in flight finishes (bounded by its deadline). Throughput per direction = bytes of verified
// transfers / time from start to that direction's last transfer end. p50/p99 are per-transfer
// times, both directions together. No cookies: the peers balance round robin.
//
// Sizes are module constants, and measure()/prepare() take overrides (bytes, downloads,
// uploads, transferDeadlineMs) so tests can run the same code with small bodies.

import http from 'node:http';
import { performance } from 'node:perf_hooks';

export const name = 'large-body';
export const description = '100 MiB downloads and 100 MiB uploads streamed through the balancer, every byte count verified';
export const warmup = false;
export const columns = [
  { key: 'downloadMiBps', label: 'down MiB/s', digits: 0 },
  { key: 'uploadMiBps', label: 'up MiB/s', digits: 0 },
];

export const BODY_BYTES = 100 * 1024 * 1024;
export const DOWNLOADS = 2;
export const UPLOADS = 2;
export const TRANSFER_DEADLINE_MS = 60_000;
/** A lane that fails this many transfers in a row stops (a dead peer must not spin the loop). */
const MAX_CONSECUTIVE_FAILURES = 3;
// Over nginx's default 1 MiB body limit, so a peer that refuses big bodies fails here, not mid-run.
const PREPARE_BYTES = 8 * 1024 * 1024;
const MiB = 1024 * 1024;

/** The upload body: one preallocated buffer written again and again. */
const UPLOAD_CHUNK = Buffer.alloc(MiB, 'upload-');

export function loadDescription() {
  return (
    `node:http client, ${DOWNLOADS} download + ${UPLOADS} upload lanes of ${BODY_BYTES / MiB} MiB each,` +
    ` back to back on keep-alive connections for the duration; req/s = transfers/s, p50/p99 = transfer time`
  );
}

/**
 * GET base/large?bytes=N. Resolves { ok, kind, error?, bytes, ms }; never rejects. `error`
 * is one of: status, short, socket, timeout.
 */
export function download(base, bytes, { agent, deadlineMs = TRANSFER_DEADLINE_MS } = {}) {
  return new Promise((resolve) => {
    const started = performance.now();
    let received = 0;
    let settled = false;
    let req = null;
    const finish = (error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      // A failed transfer's connection is in an unknown state: never hand it back to the agent.
      if (error) req?.destroy();
      resolve({ ok: !error, kind: 'download', ...(error ? { error } : {}), bytes: received, ms: performance.now() - started });
    };
    const timer = setTimeout(() => finish('timeout'), deadlineMs);
    req = http.get(new URL(`/large?bytes=${bytes}`, base), { agent }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        finish('status');
        return;
      }
      res.on('data', (chunk) => {
        received += chunk.length;
      });
      res.on('end', () => finish(received === bytes ? null : 'short'));
      res.on('error', () => finish('short'));
      res.on('close', () => finish(res.complete && received === bytes ? null : 'short'));
    });
    req.on('error', () => finish('socket'));
  });
}

/**
 * POST base/upload with `bytes` bytes (Content-Length, or chunked when `chunked`), written
 * with backpressure (wait for 'drain'). The backend answers the count it received. Resolves
 * { ok, kind, error?, bytes, ms }; never rejects. `error`: status, mismatch, socket, timeout.
 */
export function upload(base, bytes, { agent, deadlineMs = TRANSFER_DEADLINE_MS, chunked = false } = {}) {
  return new Promise((resolve) => {
    const started = performance.now();
    let settled = false;
    let req = null;
    const finish = (error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error) req?.destroy();
      resolve({ ok: !error, kind: 'upload', ...(error ? { error } : {}), bytes: error ? 0 : bytes, ms: performance.now() - started });
    };
    const timer = setTimeout(() => finish('timeout'), deadlineMs);
    const headers = { 'Content-Type': 'application/octet-stream', ...(chunked ? {} : { 'Content-Length': String(bytes) }) };
    req = http.request(new URL('/upload', base), { method: 'POST', agent, headers }, (res) => {
      let text = '';
      res.setEncoding('latin1');
      res.on('data', (chunk) => {
        if (text.length < 64) text += chunk;
      });
      res.on('end', () => {
        if (res.statusCode !== 200) finish('status');
        else finish(text.trim() === String(bytes) ? null : 'mismatch');
      });
      res.on('error', () => finish('socket'));
    });
    req.on('error', () => finish('socket'));
    let sent = 0;
    const writeMore = () => {
      while (sent < bytes && !settled) {
        const n = Math.min(UPLOAD_CHUNK.length, bytes - sent);
        sent += n;
        if (!req.write(n === UPLOAD_CHUNK.length ? UPLOAD_CHUNK : UPLOAD_CHUNK.subarray(0, n))) {
          req.once('drain', writeMore);
          return;
        }
      }
      if (!settled) req.end();
    };
    writeMore();
  });
}

/** Percentile (nearest rank) of an ascending array; null when empty. */
function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

/** A small download and upload through the peer, so a peer that cannot pass bodies fails here, named. */
export async function prepare({ url, peer, bytes = PREPARE_BYTES, transferDeadlineMs = 10_000 }) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const down = await download(url, bytes, { agent, deadlineMs: transferDeadlineMs });
    const up = await upload(url, bytes, { agent, deadlineMs: transferDeadlineMs });
    for (const r of [down, up]) {
      if (!r.ok) throw new Error(`${peer.name}: a ${bytes}-byte ${r.kind} through the peer failed (${r.error})`);
    }
    return { cookies: [], checks: { checkTransfersBytes: bytes, downloadVerified: true, uploadVerified: true } };
  } finally {
    agent.destroy();
  }
}

/**
 * Runs the lanes for `durationS` (see the header). Returns the harness's load record:
 * { requests, durationS, rps, p50Ms, p99Ms, errors, errorCount, extra }.
 */
export async function measure({
  url,
  durationS,
  bytes = BODY_BYTES,
  downloads = DOWNLOADS,
  uploads = UPLOADS,
  transferDeadlineMs = TRANSFER_DEADLINE_MS,
}) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: downloads + uploads });
  const started = performance.now();
  const endAt = started + durationS * 1000;
  const results = [];
  const lastEnd = { download: started, upload: started };
  const lane = async (transfer) => {
    let failures = 0;
    while (performance.now() < endAt && failures < MAX_CONSECUTIVE_FAILURES) {
      const r = await transfer(url, bytes, { agent, deadlineMs: transferDeadlineMs });
      results.push(r);
      failures = r.ok ? 0 : failures + 1;
      if (r.ok) lastEnd[r.kind] = performance.now();
    }
  };
  try {
    await Promise.all([
      ...Array.from({ length: downloads }, () => lane(download)),
      ...Array.from({ length: uploads }, () => lane(upload)),
    ]);
  } finally {
    agent.destroy();
  }
  const elapsedS = (performance.now() - started) / 1000;
  const ok = results.filter((r) => r.ok);
  const errors = { status: 0, short: 0, mismatch: 0, socket: 0, timeout: 0 };
  for (const r of results) if (!r.ok) errors[r.error] += 1;
  const mibps = (kind) => {
    const total = ok.filter((r) => r.kind === kind).reduce((sum, r) => sum + r.bytes, 0);
    const seconds = (lastEnd[kind] - started) / 1000;
    return seconds > 0 ? total / MiB / seconds : 0;
  };
  const times = ok.map((r) => r.ms).sort((a, b) => a - b);
  return {
    requests: ok.length,
    durationS: Number(elapsedS.toFixed(3)),
    rps: elapsedS > 0 ? ok.length / elapsedS : 0,
    p50Ms: percentile(times, 50) ?? 0,
    p99Ms: percentile(times, 99) ?? 0,
    errors,
    errorCount: results.length - ok.length,
    extra: {
      downloadMiBps: Number(mibps('download').toFixed(1)),
      uploadMiBps: Number(mibps('upload').toFixed(1)),
      downloads: ok.filter((r) => r.kind === 'download').length,
      uploads: ok.filter((r) => r.kind === 'upload').length,
    },
  };
}
