/* sim_sock — raw socket tricks the simulator needs and http_server.h does not offer: find the
 * fd of one accepted connection and make the kernel send a TCP RST on it. The RST comes from
 * connect(AF_UNSPEC) (Linux: tcp_disconnect), which leaves the fd open and libuv's handle
 * intact; the server then sees an error on its next read or write and closes as usual.
 * Loop thread only. A stop-gap until the server exposes a reset call. */
#ifndef DROVER_SIM_SIM_SOCK_H
#define DROVER_SIM_SIM_SOCK_H
#include <stdbool.h>

/* The fd of the TCP connection with local port local_port and peer "ip:port" (IPv6 as
 * "[ip]:port"), or -1. */
int sim_sock_find(int local_port, const char *peer);
/* True if fd is still that connection. */
bool sim_sock_matches(int fd, int local_port, const char *peer);
/* Aborts the connection on fd with a RST; the fd stays open. 0 or -errno. */
int sim_sock_reset(int fd);

#endif
