// See tether/listen_socket.h.
#include "tether/listen_socket.h"

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

namespace tether::listen_socket {

Result OpenReusePort(const char* host, uint16_t port, int backlog) {
  Result r;
  r.call = "address";
  sockaddr_storage ss;
  std::memset(&ss, 0, sizeof ss);
  socklen_t length = 0;
  int family = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
    family = AF_INET;
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    length = sizeof *v4;
  } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
    family = AF_INET6;
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    length = sizeof *v6;
  } else {
    r.error = EINVAL;
    return r;
  }
  r.call = "socket";
  int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    r.error = errno;
    return r;
  }
  const int one = 1;
  r.call = "setsockopt";
  bool ok = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) == 0 &&
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0 &&
            (family != AF_INET6 || setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) == 0);
  if (ok) {
    r.call = "bind";
    ok = bind(fd, reinterpret_cast<sockaddr*>(&ss), length) == 0;
  }
  if (ok) {
    r.call = "listen";
    ok = listen(fd, backlog > 0 ? backlog : 511) == 0;
  }
  if (!ok) {
    r.error = errno;
    close(fd);
    return r;
  }
  r.fd = fd;
  r.error = 0;
  r.call = "";
  return r;
}

}  // namespace tether::listen_socket
