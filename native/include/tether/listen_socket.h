// A listening TCP socket with SO_REUSEPORT, for listeners Node 20's net cannot open that way
// (net.Server has no reusePort before Node 22.12). Each worker thread opens its own socket on
// the same address; the kernel spreads new connections over them. The caller hands the fd to
// net.Server.listen({ fd }), which adopts it (closes it on server.close() or thread exit).
//
// Not a pure function of bytes, unlike the rest of native/: it is the one place the addon
// makes system calls, kept apart so the parsers and crypto stay side-effect free.
#ifndef TETHER_LISTEN_SOCKET_H_
#define TETHER_LISTEN_SOCKET_H_

#include <cstdint>

namespace tether::listen_socket {

struct Result {
  int fd = -1;       // >= 0 on success
  int error = 0;     // errno of the failed call, 0 on success
  const char* call;  // the system call that failed ("socket", "setsockopt", "bind", "listen",
                     // or "address" when host is not a numeric IPv4/IPv6 address)
};

// host: a numeric IPv4 or IPv6 address (NUL-terminated), port 0..65535, backlog > 0.
// The socket is non-blocking, close-on-exec, SO_REUSEADDR + SO_REUSEPORT, IPv6-only for IPv6,
// and TCP_NODELAY, which Linux copies to every accepted socket: a relay's accepted connections
// need it, and inheriting it saves a setsockopt per connection.
Result OpenReusePort(const char* host, uint16_t port, int backlog);

}  // namespace tether::listen_socket

#endif  // TETHER_LISTEN_SOCKET_H_
