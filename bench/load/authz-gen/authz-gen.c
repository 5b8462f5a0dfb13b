// authz-gen: the authz-handshakes scenario's load generator in C (a terminal fleet on the same
// two cores as the balancer, so what the generator costs is what the balancer cannot have).
// The Node generator (../scenarios/authz-handshakes.js handshakeClient) spent ~0.1 ms of CPU per
// handshake; this one does the same work per handshake for a fraction of that:
//
//   random user from the terminal key file (`<user> <64 hex>` lines)
//   POST <path>/hello {"user","nT"}           nT: 16 random bytes, base64url
//   200 {"user","nT","nB"}                    user and nT must be echoed; nB 56 bytes
//   POST <path>/proof {"user","nT","nB","proof"}   proof = HMAC-SHA256(K_T, "tether-authz-proof-v1"
//                                             | u16 len(user) | user | nT | nB)  (src/authz/protocol.ts)
//   200 {"f","box"}                           f 16 bytes; box nonce(12) | ciphertext | tag(16)
//
// One proof answer in --open-every per connection (its 1st, then every N-th) is opened with the
// user's key: HKDF-SHA256(K_T, salt f, info "tether-authz-terminal-v1") → AES-256-GCM with the info
// as additional data; the tag must verify and the msgpack plaintext must hold the user, nT and nB
// exactly as sent. Anything else is an error, by the kinds the Node generator uses.
//
// Every connection is one keep-alive HTTP/1.1 connection with one request in flight (a terminal
// does one handshake at a time), reconnected after a transport error or `Connection: close`. Each
// request has a deadline (--timeout-ms), each connect too (--connect-timeout-ms). No handshake
// starts after --duration, and none is sent its proof after it; a proof already sent is waited for
// (within its deadline), so every grant the balancer issued is counted, as the Node generator
// does. A connection also stops after --max-per-conn attempts. Threads (--threads) each run an
// epoll loop over their share of the connections.
//
// Output: one JSON object on stdout, the shape of ../node-load/index.js runLoad's result
// (requests = completed handshakes, p50Ms/p99Ms per handshake: hello written → proof answer
// read), plus cpuSeconds: the generator's own CPU time. Exit 0 after a run (errors are data), 2
// on bad arguments or an unreadable key file.
//
// Build: cc -O2 -Wall -Wextra -Werror authz-gen.c -lcrypto -lpthread (./build.js does it).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_USER 128
#define RBUF 8192
#define WBUF 1024
#define MAX_BOX 2048
#define MAX_LATENCIES 50000000u
#define RETRY_NS 10000000ull /* a refused connect is instant: do not spin */

enum { E_CONNECT, E_TIMEOUT, E_CLOSED, E_PARSE, E_SOCKET, E_BAD_REQUEST, E_DENIED, E_RATE_LIMITED, E_NO_SERVER, E_STATUS, E_BAD_CHALLENGE, E_BAD_GRANT, E_COUNT };
static const char *const kErrorNames[E_COUNT] = {"connect", "timeout", "closed", "parse", "socket", "badRequest", "denied", "rateLimited", "noServer", "status", "badChallenge", "badGrant"};

typedef struct {
  char name[MAX_USER + 1];
  size_t len;
  unsigned char key[32];
} User;

typedef struct {
  const char *host;
  int port;
  const char *path;
  const char *keys_file;
  int connections;
  int threads;
  double duration_s;
  long max_per_conn; /* 0: unbounded */
  long open_every;
  long timeout_ms;
  long connect_timeout_ms;
  User *users;
  size_t nusers;
  struct sockaddr_storage addr;
  socklen_t addr_len;
} Options;

enum { S_WAIT, S_CONNECTING, S_WRITING, S_READING, S_DONE };

typedef struct {
  int fd;
  int state;
  int step; /* 0: hello, 1: proof */
  uint64_t deadline;
  uint64_t retry_at;
  uint64_t started;
  long attempts;
  long completed;
  const User *user;
  unsigned char nT[16];
  unsigned char nB[56];
  char nT_b64[32];
  char wbuf[WBUF];
  size_t wlen, woff;
  char rbuf[RBUF];
  size_t rlen;
} Conn;

typedef struct {
  const Options *o;
  Conn *conns;
  int nconns;
  int ep;
  uint64_t end;
  uint64_t requests, granted, opened;
  uint64_t errors[E_COUNT];
  uint32_t *lat;
  size_t nlat, caplat;
  unsigned char rnd[4096];
  size_t rnd_pos;
  uint64_t rng;
  EVP_CIPHER_CTX *gcm;
  int failed; /* setup failure: message printed */
} Thread;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

// ---- base64url (no padding) ----------------------------------------------------------------

static const char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static size_t b64u_encode(const unsigned char *in, size_t n, char *out) {
  size_t o = 0, i = 0;
  for (; i + 3 <= n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    out[o++] = kB64[v >> 18];
    out[o++] = kB64[(v >> 12) & 63];
    out[o++] = kB64[(v >> 6) & 63];
    out[o++] = kB64[v & 63];
  }
  if (n - i == 1) {
    uint32_t v = (uint32_t)in[i] << 16;
    out[o++] = kB64[v >> 18];
    out[o++] = kB64[(v >> 12) & 63];
  } else if (n - i == 2) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
    out[o++] = kB64[v >> 18];
    out[o++] = kB64[(v >> 12) & 63];
    out[o++] = kB64[(v >> 6) & 63];
  }
  out[o] = '\0';
  return o;
}

static int b64u_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

/** Decodes n chars into out (capacity cap); returns the byte count or -1 (bad char, length, or too long). */
static long b64u_decode(const char *in, size_t n, unsigned char *out, size_t cap) {
  if (n % 4 == 1) return -1;
  size_t bytes = n / 4 * 3 + (n % 4 == 0 ? 0 : n % 4 - 1);
  if (bytes > cap) return -1;
  size_t o = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    int v = b64u_value(in[i]);
    if (v < 0) return -1;
    acc = acc << 6 | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (unsigned char)(acc >> bits);
      acc &= (1u << bits) - 1;
    }
  }
  if (acc != 0) return -1; /* non-canonical trailing bits */
  return (long)o;
}

// ---- JSON: the flat objects Tether answers with (string values without escapes) -----------

/** The string value of "key" in body[0..n), or NULL; *len gets its length. */
static const char *json_string(const char *body, size_t n, const char *key, size_t *len) {
  size_t klen = strlen(key);
  for (size_t i = 0; i + klen + 2 < n; i++) {
    if (body[i] != '"' || memcmp(body + i + 1, key, klen) != 0 || body[i + 1 + klen] != '"') continue;
    size_t j = i + klen + 2;
    while (j < n && (body[j] == ' ' || body[j] == '\t')) j++;
    if (j >= n || body[j] != ':') continue;
    j++;
    while (j < n && (body[j] == ' ' || body[j] == '\t')) j++;
    if (j >= n || body[j] != '"') return NULL;
    size_t start = ++j;
    while (j < n && body[j] != '"' && body[j] != '\\') j++;
    if (j >= n || body[j] != '"') return NULL;
    *len = j - start;
    return body + start;
  }
  return NULL;
}

// ---- crypto --------------------------------------------------------------------------------

static void random_bytes(Thread *t, unsigned char *out, size_t n) {
  if (t->rnd_pos + n > sizeof t->rnd) {
    if (RAND_bytes(t->rnd, sizeof t->rnd) != 1) {
      fprintf(stderr, "authz-gen: RAND_bytes failed\n");
      exit(1);
    }
    t->rnd_pos = 0;
  }
  memcpy(out, t->rnd + t->rnd_pos, n);
  t->rnd_pos += n;
}

static uint64_t next_random(Thread *t) { /* xorshift64*: which user, not a secret */
  t->rng ^= t->rng >> 12;
  t->rng ^= t->rng << 25;
  t->rng ^= t->rng >> 27;
  return t->rng * 2685821657736338717ull;
}

static const char kProofDomain[] = "tether-authz-proof-v1";
static const char kTerminalInfo[] = "tether-authz-terminal-v1";

static int proof_mac(const Conn *c, unsigned char mac[32]) {
  unsigned char input[sizeof kProofDomain - 1 + 2 + MAX_USER + 16 + 56];
  size_t n = 0;
  memcpy(input, kProofDomain, sizeof kProofDomain - 1);
  n += sizeof kProofDomain - 1;
  input[n++] = (unsigned char)(c->user->len >> 8);
  input[n++] = (unsigned char)(c->user->len & 0xff);
  memcpy(input + n, c->user->name, c->user->len);
  n += c->user->len;
  memcpy(input + n, c->nT, 16);
  n += 16;
  memcpy(input + n, c->nB, 56);
  n += 56;
  unsigned int len = 32;
  return HMAC(EVP_sha256(), c->user->key, 32, input, n, mac, &len) != NULL && len == 32;
}

static int contains(const unsigned char *hay, size_t n, const unsigned char *needle, size_t m) {
  return memmem(hay, n, needle, m) != NULL;
}

/** Opens the terminal's box and checks it names this user, nT and nB: 1 if so. */
static int open_box(Thread *t, const Conn *c, const unsigned char f[16], const unsigned char *box, size_t box_len) {
  if (box_len < 12 + 16 + 1) return 0;
  unsigned char prk[32], key[32];
  unsigned int len = 32;
  if (!HMAC(EVP_sha256(), f, 16, c->user->key, 32, prk, &len)) return 0;
  unsigned char info[sizeof kTerminalInfo];
  memcpy(info, kTerminalInfo, sizeof kTerminalInfo - 1);
  info[sizeof kTerminalInfo - 1] = 1;
  if (!HMAC(EVP_sha256(), prk, 32, info, sizeof info, key, &len)) return 0;
  unsigned char plain[MAX_BOX];
  size_t ct_len = box_len - 12 - 16;
  int outl = 0, fin = 0;
  EVP_CIPHER_CTX *g = t->gcm;
  if (EVP_DecryptInit_ex(g, EVP_aes_256_gcm(), NULL, key, box) != 1) return 0;
  if (EVP_DecryptUpdate(g, NULL, &outl, (const unsigned char *)kTerminalInfo, sizeof kTerminalInfo - 1) != 1) return 0;
  if (EVP_DecryptUpdate(g, plain, &outl, box + 12, (int)ct_len) != 1) return 0;
  if (EVP_CIPHER_CTX_ctrl(g, EVP_CTRL_GCM_SET_TAG, 16, (void *)(box + box_len - 16)) != 1) return 0;
  if (EVP_DecryptFinal_ex(g, plain + outl, &fin) != 1) return 0;
  size_t plain_len = (size_t)outl + (size_t)fin;
  /* msgpack as msgpackr writes it: bin8 for the byte fields, fixstr or str8 for the user. */
  unsigned char want[2 + 56];
  want[0] = 0xc4;
  want[1] = 16;
  memcpy(want + 2, c->nT, 16);
  if (!contains(plain, plain_len, want, 18)) return 0;
  want[1] = 56;
  memcpy(want + 2, c->nB, 56);
  if (!contains(plain, plain_len, want, 58)) return 0;
  unsigned char user[2 + MAX_USER];
  size_t ul = 0;
  if (c->user->len < 32) user[ul++] = (unsigned char)(0xa0 | c->user->len);
  else {
    user[ul++] = 0xd9;
    user[ul++] = (unsigned char)c->user->len;
  }
  memcpy(user + ul, c->user->name, c->user->len);
  return contains(plain, plain_len, user, ul + c->user->len);
}

// ---- connections ---------------------------------------------------------------------------

static void fail(Thread *t, Conn *c, int kind, int drop_connection) {
  t->errors[kind]++;
  if (drop_connection && c->fd >= 0) {
    close(c->fd); /* also leaves the epoll set */
    c->fd = -1;
  }
}

static void start_connect(Thread *t, Conn *c, uint64_t now);
static void start_handshake(Thread *t, Conn *c, uint64_t now);

/** After a handshake or a failed step: the next handshake, or the end of this connection's run. */
static void next(Thread *t, Conn *c, uint64_t now) {
  if (now >= t->end || (t->o->max_per_conn > 0 && c->attempts >= t->o->max_per_conn)) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->state = S_DONE;
    return;
  }
  if (c->fd < 0) {
    c->state = S_WAIT;
    c->retry_at = now;
    start_connect(t, c, now);
    return;
  }
  start_handshake(t, c, now);
}

static void set_events(Thread *t, Conn *c, uint32_t events) {
  struct epoll_event ev = {.events = events, .data = {.ptr = c}};
  epoll_ctl(t->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void start_connect(Thread *t, Conn *c, uint64_t now) {
  int fd = socket(t->o->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    fail(t, c, E_CONNECT, 0);
    c->state = S_WAIT;
    c->retry_at = now + RETRY_NS;
    return;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  c->fd = fd;
  c->rlen = 0;
  struct epoll_event ev = {.events = EPOLLOUT, .data = {.ptr = c}};
  if (epoll_ctl(t->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
    fail(t, c, E_CONNECT, 1);
    c->state = S_WAIT;
    c->retry_at = now + RETRY_NS;
    return;
  }
  int r = connect(fd, (const struct sockaddr *)&t->o->addr, t->o->addr_len);
  if (r != 0 && errno != EINPROGRESS) {
    fail(t, c, E_CONNECT, 1);
    c->state = S_WAIT;
    c->retry_at = now + RETRY_NS;
    return;
  }
  c->state = S_CONNECTING;
  c->deadline = now + (uint64_t)t->o->connect_timeout_ms * 1000000ull;
}

/** Writes what is left of wbuf; on a partial write waits for EPOLLOUT. */
static void flush(Thread *t, Conn *c) {
  while (c->woff < c->wlen) {
    ssize_t n = write(c->fd, c->wbuf + c->woff, c->wlen - c->woff);
    if (n > 0) {
      c->woff += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (c->state != S_WRITING) set_events(t, c, EPOLLOUT);
      c->state = S_WRITING;
      return;
    }
    fail(t, c, E_SOCKET, 1);
    next(t, c, now_ns());
    return;
  }
  if (c->state == S_WRITING) set_events(t, c, EPOLLIN);
  c->state = S_READING;
}

static void send_request(Thread *t, Conn *c, const char *step, const char *body, size_t body_len, uint64_t now) {
  int n = snprintf(c->wbuf, sizeof c->wbuf,
                   "POST %s/%s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                   t->o->path, step, t->o->host, t->o->port, body_len);
  if (n < 0 || (size_t)n + body_len > sizeof c->wbuf) {
    fprintf(stderr, "authz-gen: request does not fit %d bytes\n", WBUF);
    exit(1);
  }
  memcpy(c->wbuf + n, body, body_len);
  c->wlen = (size_t)n + body_len;
  c->woff = 0;
  c->rlen = 0;
  c->deadline = now + (uint64_t)t->o->timeout_ms * 1000000ull;
  flush(t, c);
}

static void start_handshake(Thread *t, Conn *c, uint64_t now) {
  c->attempts++;
  c->user = &t->o->users[next_random(t) % t->o->nusers];
  random_bytes(t, c->nT, 16);
  b64u_encode(c->nT, 16, c->nT_b64);
  char body[64 + MAX_USER];
  int n = snprintf(body, sizeof body, "{\"user\":\"%s\",\"nT\":\"%s\"}", c->user->name, c->nT_b64);
  c->step = 0;
  c->started = now;
  send_request(t, c, "hello", body, (size_t)n, now);
}

static int status_error(int status) {
  switch (status) {
    case 400: return E_BAD_REQUEST;
    case 403: return E_DENIED;
    case 429: return E_RATE_LIMITED;
    case 503: return E_NO_SERVER;
    default: return E_STATUS;
  }
}

static int has_header(const char *head, size_t n, const char *line_start) {
  size_t m = strlen(line_start);
  for (size_t i = 0; i + m <= n; i++) {
    if (strncasecmp(head + i, line_start, m) == 0) return 1;
  }
  return 0;
}

/** A whole answer is in rbuf: 1 and status/body/close set; 0 not yet; -1 malformed. */
static int parse_response(Conn *c, int *status, const char **body, size_t *body_len, int *must_close) {
  const char *end = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
  if (!end) return c->rlen >= sizeof c->rbuf ? -1 : 0;
  size_t head_len = (size_t)(end - c->rbuf) + 4;
  if (head_len < 12 || memcmp(c->rbuf, "HTTP/1.1 ", 9) != 0) return -1;
  int s = 0;
  for (int i = 9; i < 12; i++) {
    if (c->rbuf[i] < '0' || c->rbuf[i] > '9') return -1;
    s = s * 10 + (c->rbuf[i] - '0');
  }
  long length = -1;
  for (size_t i = 0; i + 17 < head_len; i++) {
    if (strncasecmp(c->rbuf + i, "\r\ncontent-length:", 17) != 0) continue;
    size_t j = i + 17;
    while (j < head_len && c->rbuf[j] == ' ') j++;
    length = 0;
    size_t digits = 0;
    while (j < head_len && c->rbuf[j] >= '0' && c->rbuf[j] <= '9' && digits < 7) length = length * 10 + (c->rbuf[j++] - '0'), digits++;
    if (digits == 0 || j >= head_len || (c->rbuf[j] != '\r' && c->rbuf[j] != ' ')) return -1;
    break;
  }
  if (length < 0 || head_len + (size_t)length > sizeof c->rbuf) return -1;
  if (c->rlen < head_len + (size_t)length) return 0;
  if (c->rlen > head_len + (size_t)length) return -1; /* bytes nobody asked for */
  *status = s;
  *body = c->rbuf + head_len;
  *body_len = (size_t)length;
  *must_close = has_header(c->rbuf, head_len, "\r\nconnection: close");
  return 1;
}

static void on_answer(Thread *t, Conn *c, int status, const char *body, size_t body_len, int must_close, uint64_t now) {
  if (status != 200) {
    fail(t, c, status_error(status), must_close);
    next(t, c, now);
    return;
  }
  if (c->step == 0) {
    if (now >= t->end) { /* the run is over: no proof, so no grant, after it */
      close(c->fd);
      c->fd = -1;
      c->state = S_DONE;
      return;
    }
    size_t ul = 0, tl = 0, bl = 0;
    const char *user = json_string(body, body_len, "user", &ul);
    const char *nT = json_string(body, body_len, "nT", &tl);
    const char *nB = json_string(body, body_len, "nB", &bl);
    if (!user || ul != c->user->len || memcmp(user, c->user->name, ul) != 0 || !nT || tl != strlen(c->nT_b64) ||
        memcmp(nT, c->nT_b64, tl) != 0 || !nB || b64u_decode(nB, bl, c->nB, sizeof c->nB) != 56) {
      fail(t, c, E_BAD_CHALLENGE, must_close);
      next(t, c, now);
      return;
    }
    if (must_close) {
      fail(t, c, E_CLOSED, 1);
      next(t, c, now);
      return;
    }
    unsigned char mac[32];
    if (!proof_mac(c, mac)) {
      fprintf(stderr, "authz-gen: HMAC failed\n");
      exit(1);
    }
    char nB_b64[80], proof_b64[48];
    b64u_encode(c->nB, 56, nB_b64);
    b64u_encode(mac, 32, proof_b64);
    char req[256 + MAX_USER];
    int n = snprintf(req, sizeof req, "{\"user\":\"%s\",\"nT\":\"%s\",\"nB\":\"%s\",\"proof\":\"%s\"}", c->user->name, c->nT_b64, nB_b64, proof_b64);
    c->step = 1;
    send_request(t, c, "proof", req, (size_t)n, now);
    return;
  }
  t->granted++;
  size_t fl = 0, bl = 0;
  const char *f64 = json_string(body, body_len, "f", &fl);
  const char *box64 = json_string(body, body_len, "box", &bl);
  unsigned char f[16], box[MAX_BOX];
  long box_len = box64 ? b64u_decode(box64, bl, box, sizeof box) : -1;
  if (!f64 || b64u_decode(f64, fl, f, sizeof f) != 16 || box_len < 29) {
    fail(t, c, E_BAD_GRANT, must_close);
    next(t, c, now);
    return;
  }
  c->completed++;
  if (t->o->open_every > 0 && c->completed % t->o->open_every == 1 % t->o->open_every) {
    if (!open_box(t, c, f, box, (size_t)box_len)) {
      fail(t, c, E_BAD_GRANT, must_close);
      next(t, c, now);
      return;
    }
    t->opened++;
  }
  t->requests++;
  if (t->nlat < t->caplat) t->lat[t->nlat++] = (uint32_t)((now - c->started) / 1000u);
  if (must_close) {
    close(c->fd);
    c->fd = -1;
  }
  next(t, c, now);
}

static void on_readable(Thread *t, Conn *c) {
  for (;;) {
    if (c->rlen >= sizeof c->rbuf) {
      fail(t, c, E_PARSE, 1);
      next(t, c, now_ns());
      return;
    }
    ssize_t n = read(c->fd, c->rbuf + c->rlen, sizeof c->rbuf - c->rlen);
    if (n > 0) {
      c->rlen += (size_t)n;
      int status = 0, must_close = 0;
      const char *body = NULL;
      size_t body_len = 0;
      int r = parse_response(c, &status, &body, &body_len, &must_close);
      if (r < 0) {
        fail(t, c, E_PARSE, 1);
        next(t, c, now_ns());
        return;
      }
      if (r > 0) {
        on_answer(t, c, status, body, body_len, must_close, now_ns());
        return;
      }
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    fail(t, c, n == 0 ? E_CLOSED : E_SOCKET, 1);
    next(t, c, now_ns());
    return;
  }
}

static void on_event(Thread *t, Conn *c, uint32_t events) {
  uint64_t now = now_ns();
  switch (c->state) {
    case S_CONNECTING: {
      int err = 0;
      socklen_t len = sizeof err;
      if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0 || (events & EPOLLERR)) {
        fail(t, c, E_CONNECT, 1);
        c->state = S_WAIT;
        c->retry_at = now + RETRY_NS;
        return;
      }
      c->state = S_READING; /* flush() below moves it on */
      set_events(t, c, EPOLLIN);
      start_handshake(t, c, now);
      return;
    }
    case S_WRITING:
      flush(t, c);
      return;
    case S_READING:
      on_readable(t, c);
      return;
    default:
      return;
  }
}

static void *run_thread(void *arg) {
  Thread *t = arg;
  t->ep = epoll_create1(EPOLL_CLOEXEC);
  t->gcm = EVP_CIPHER_CTX_new();
  if (t->ep < 0 || !t->gcm) {
    fprintf(stderr, "authz-gen: epoll_create1 or EVP_CIPHER_CTX_new failed\n");
    t->failed = 1;
    return NULL;
  }
  uint64_t now = now_ns();
  for (int i = 0; i < t->nconns; i++) {
    t->conns[i].fd = -1;
    start_connect(t, &t->conns[i], now);
  }
  struct epoll_event evs[256];
  uint64_t last_sweep = now;
  int ended = 0;
  for (;;) {
    now = now_ns();
    if (now >= t->end && !ended) {
      /* Stop what has not sent a proof yet; proofs in flight are answered or time out. */
      ended = 1;
      for (int i = 0; i < t->nconns; i++) {
        Conn *c = &t->conns[i];
        if (c->state == S_DONE || ((c->state == S_WRITING || c->state == S_READING) && c->step == 1)) continue;
        if (c->fd >= 0) close(c->fd);
        c->fd = -1;
        c->state = S_DONE;
      }
    }
    int alive = 0;
    for (int i = 0; i < t->nconns; i++) alive += t->conns[i].state != S_DONE;
    if (alive == 0) break;
    uint64_t wait_ns = now < t->end ? t->end - now : 20000000ull;
    if (wait_ns > 20000000ull) wait_ns = 20000000ull;
    int n = epoll_wait(t->ep, evs, 256, (int)(wait_ns / 1000000ull) + 1);
    for (int i = 0; i < n; i++) on_event(t, evs[i].data.ptr, evs[i].events);
    now = now_ns();
    if (now - last_sweep >= 10000000ull) {
      last_sweep = now;
      for (int i = 0; i < t->nconns; i++) {
        Conn *c = &t->conns[i];
        if (c->state == S_WAIT && now >= c->retry_at) start_connect(t, c, now);
        else if ((c->state == S_CONNECTING || c->state == S_WRITING || c->state == S_READING) && now >= c->deadline) {
          fail(t, c, c->state == S_CONNECTING ? E_CONNECT : E_TIMEOUT, 1);
          if (c->state == S_CONNECTING) {
            c->state = S_WAIT;
            c->retry_at = now + RETRY_NS;
          } else next(t, c, now);
        }
      }
    }
  }
  for (int i = 0; i < t->nconns; i++) {
    if (t->conns[i].fd >= 0) close(t->conns[i].fd);
  }
  close(t->ep);
  EVP_CIPHER_CTX_free(t->gcm);
  return NULL;
}

// ---- setup and report ----------------------------------------------------------------------

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int valid_user(const char *s, size_t n) {
  if (n == 0 || n > MAX_USER) return 0;
  for (size_t i = 0; i < n; i++) {
    char ch = s[i];
    int ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || (i > 0 && (ch == '.' || ch == '_' || ch == '@' || ch == '-'));
    if (!ok) return 0;
  }
  return 1;
}

static int load_users(Options *o) {
  FILE *f = fopen(o->keys_file, "r");
  if (!f) {
    fprintf(stderr, "authz-gen: cannot read --keys %s: %s\n", o->keys_file, strerror(errno));
    return 0;
  }
  size_t cap = 1024;
  o->users = calloc(cap, sizeof(User));
  char line[512];
  while (o->users && fgets(line, sizeof line, f)) {
    char *user = strtok(line, " \t\r\n");
    char *hex = strtok(NULL, " \t\r\n");
    if (!user || user[0] == '#' || !hex || strlen(hex) != 64 || !valid_user(user, strlen(user))) continue;
    if (o->nusers == cap) {
      User *grown = realloc(o->users, cap * 2 * sizeof(User));
      if (!grown) break;
      o->users = grown;
      cap *= 2;
    }
    User *u = &o->users[o->nusers];
    int ok = 1;
    for (int i = 0; i < 32 && ok; i++) {
      int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
      if (hi < 0 || lo < 0) ok = 0;
      else u->key[i] = (unsigned char)(hi << 4 | lo);
    }
    if (!ok) continue;
    u->len = strlen(user);
    memcpy(u->name, user, u->len + 1);
    o->nusers++;
  }
  fclose(f);
  if (o->nusers == 0) {
    fprintf(stderr, "authz-gen: no '<user> <64 hex>' line in %s\n", o->keys_file);
    return 0;
  }
  return 1;
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

static void usage(const char *why) {
  fprintf(stderr,
          "authz-gen: %s\nusage: authz-gen --host IP --port N --keys FILE [--path /_tether/authz] [--connections 50] [--threads 1]\n"
          "                 [--duration S] [--max-per-conn N] [--open-every 100] [--timeout-ms 5000] [--connect-timeout-ms 2000]\n",
          why);
  exit(2);
}

static long number_arg(const char *flag, const char *v, long min, long max) {
  char *end = NULL;
  errno = 0;
  long n = strtol(v, &end, 10);
  if (errno != 0 || !end || *end != '\0' || n < min || n > max) {
    char why[160];
    snprintf(why, sizeof why, "%s: expected a whole number in %ld..%ld but received '%s'", flag, min, max, v);
    usage(why);
  }
  return n;
}

int main(int argc, char **argv) {
  Options o = {.host = NULL, .port = 0, .path = "/_tether/authz", .keys_file = NULL, .connections = 50, .threads = 1, .duration_s = 10, .max_per_conn = 0, .open_every = 100, .timeout_ms = 5000, .connect_timeout_ms = 2000};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (i + 1 >= argc) usage("every option takes a value");
    const char *v = argv[++i];
    if (strcmp(a, "--host") == 0) o.host = v;
    else if (strcmp(a, "--port") == 0) o.port = (int)number_arg(a, v, 1, 65535);
    else if (strcmp(a, "--path") == 0) o.path = v;
    else if (strcmp(a, "--keys") == 0) o.keys_file = v;
    else if (strcmp(a, "--connections") == 0) o.connections = (int)number_arg(a, v, 1, 10000);
    else if (strcmp(a, "--threads") == 0) o.threads = (int)number_arg(a, v, 1, 64);
    else if (strcmp(a, "--duration") == 0) {
      char *end = NULL;
      o.duration_s = strtod(v, &end);
      if (!end || *end != '\0' || !(o.duration_s > 0 && o.duration_s <= 3600)) usage("--duration: expected seconds in (0, 3600]");
    } else if (strcmp(a, "--max-per-conn") == 0) o.max_per_conn = number_arg(a, v, 0, 1000000000);
    else if (strcmp(a, "--open-every") == 0) o.open_every = number_arg(a, v, 0, 1000000000);
    else if (strcmp(a, "--timeout-ms") == 0) o.timeout_ms = number_arg(a, v, 1, 600000);
    else if (strcmp(a, "--connect-timeout-ms") == 0) o.connect_timeout_ms = number_arg(a, v, 1, 600000);
    else {
      char why[160];
      snprintf(why, sizeof why, "unknown option %.100s", a);
      usage(why);
    }
  }
  if (!o.host || !o.port || !o.keys_file) usage("--host, --port and --keys are required");
  if (strlen(o.path) > 256 || o.path[0] != '/') usage("--path: expected an absolute path of at most 256 characters");
  memset(&o.addr, 0, sizeof o.addr);
  struct sockaddr_in *v4 = (struct sockaddr_in *)&o.addr;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&o.addr;
  if (inet_pton(AF_INET, o.host, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons((uint16_t)o.port);
    o.addr_len = sizeof *v4;
  } else if (inet_pton(AF_INET6, o.host, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons((uint16_t)o.port);
    o.addr_len = sizeof *v6;
  } else usage("--host: expected a numeric IPv4 or IPv6 address");
  if (!load_users(&o)) return 2;
  if (o.threads > o.connections) o.threads = o.connections;

  Thread *threads = calloc((size_t)o.threads, sizeof(Thread));
  Conn *conns = calloc((size_t)o.connections, sizeof(Conn));
  pthread_t *ids = calloc((size_t)o.threads, sizeof(pthread_t));
  if (!threads || !conns || !ids) {
    fprintf(stderr, "authz-gen: out of memory\n");
    return 1;
  }
  uint64_t start = now_ns();
  uint64_t end = start + (uint64_t)(o.duration_s * 1e9);
  int first = 0;
  for (int i = 0; i < o.threads; i++) {
    Thread *t = &threads[i];
    t->o = &o;
    t->nconns = o.connections / o.threads + (i < o.connections % o.threads ? 1 : 0);
    t->conns = conns + first;
    first += t->nconns;
    t->end = end;
    t->rnd_pos = sizeof t->rnd;
    unsigned char seed[8];
    if (RAND_bytes(seed, sizeof seed) != 1) return 1;
    memcpy(&t->rng, seed, sizeof seed);
    t->rng |= 1;
    t->caplat = (size_t)(o.duration_s * 200000) + 1024; /* room for 200k handshakes/s */
    if (t->caplat > MAX_LATENCIES) t->caplat = MAX_LATENCIES;
    t->lat = malloc(t->caplat * sizeof(uint32_t));
    if (!t->lat || pthread_create(&ids[i], NULL, run_thread, t) != 0) {
      fprintf(stderr, "authz-gen: cannot start thread %d\n", i);
      return 1;
    }
  }
  for (int i = 0; i < o.threads; i++) pthread_join(ids[i], NULL);
  uint64_t stop = now_ns();
  double elapsed = (double)(stop - start) / 1e9;

  uint64_t requests = 0, granted = 0, opened = 0, errors[E_COUNT] = {0}, error_count = 0;
  size_t nlat = 0;
  for (int i = 0; i < o.threads; i++) {
    if (threads[i].failed) return 1;
    requests += threads[i].requests;
    granted += threads[i].granted;
    opened += threads[i].opened;
    nlat += threads[i].nlat;
    for (int k = 0; k < E_COUNT; k++) errors[k] += threads[i].errors[k];
  }
  uint32_t *all = malloc((nlat + 1) * sizeof(uint32_t));
  if (!all) return 1;
  size_t at = 0;
  for (int i = 0; i < o.threads; i++) {
    memcpy(all + at, threads[i].lat, threads[i].nlat * sizeof(uint32_t));
    at += threads[i].nlat;
  }
  qsort(all, nlat, sizeof(uint32_t), cmp_u32);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;

  printf("{\"requests\":%llu,\"durationS\":%.6f,\"rps\":%.3f,", (unsigned long long)requests, elapsed, elapsed > 0 ? (double)requests / elapsed : 0.0);
  if (nlat > 0) {
    /* nearest rank, as ../node-load/histogram.js reads its buckets */
    size_t r50 = (nlat * 50 + 99) / 100, r99 = (nlat * 99 + 99) / 100;
    printf("\"p50Ms\":%.3f,\"p99Ms\":%.3f,", all[r50 > 0 ? r50 - 1 : 0] / 1000.0, all[r99 > 0 ? r99 - 1 : 0] / 1000.0);
  } else printf("\"p50Ms\":null,\"p99Ms\":null,");
  printf("\"errors\":{");
  int comma = 0;
  for (int k = 0; k < E_COUNT; k++) {
    if (!errors[k]) continue;
    printf("%s\"%s\":%llu", comma ? "," : "", kErrorNames[k], (unsigned long long)errors[k]);
    comma = 1;
    error_count += errors[k];
  }
  printf("},\"errorCount\":%llu,\"counters\":{\"granted\":%llu,\"opened\":%llu},\"distinct\":{},\"threads\":%d,\"threadsLeft\":0,\"overran\":0,\"firstCrash\":null,\"cpuSeconds\":%.3f}\n",
         (unsigned long long)error_count, (unsigned long long)granted, (unsigned long long)opened, o.threads, cpu);
  return 0;
}
