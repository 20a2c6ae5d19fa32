/* sim_sock — fd lookup over /proc/self/fd (falling back to a bounded scan) and RST by
 * connect(AF_UNSPEC). Only faults use it, so a linear scan is fine. Loop thread only. */
#include "sim/sim_sock.h"

#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <uv.h>

#include "base/strv.h"

enum { SIM_SOCK_SCAN_FDS = 65536 };

static bool parse_peer(const char *peer, struct sockaddr_storage *out)
{
    char host[64];
    const char *colon = strrchr(peer, ':');
    if (!colon) return false;
    uint64_t port;
    if (strv_to_u64(strv_from_cstr(colon + 1), &port) || port > 65535) return false;
    const char *h = peer;
    size_t hl = (size_t)(colon - peer);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') h++, hl -= 2;
    if (hl == 0 || hl >= sizeof host) return false;
    memcpy(host, h, hl);
    host[hl] = '\0';
    memset(out, 0, sizeof *out);
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)out) == 0) return true;
    return uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)out) == 0;
}

static int addr_port(const struct sockaddr_storage *a)
{
    if (a->ss_family == AF_INET) return ntohs(((const struct sockaddr_in *)a)->sin_port);
    if (a->ss_family == AF_INET6) return ntohs(((const struct sockaddr_in6 *)a)->sin6_port);
    return -1;
}

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family || addr_port(a) != addr_port(b)) return false;
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                  &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr)) == 0;
}

static bool fd_matches(int fd, int local_port, const struct sockaddr_storage *want)
{
    struct sockaddr_storage a;
    socklen_t len = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &len) != 0 || addr_port(&a) != local_port)
        return false;
    len = sizeof a;
    if (getpeername(fd, (struct sockaddr *)&a, &len) != 0) return false;
    return same_addr(&a, want);
}

bool sim_sock_matches(int fd, int local_port, const char *peer)
{
    struct sockaddr_storage want;
    if (fd < 0 || !parse_peer(peer, &want)) return false;
    return fd_matches(fd, local_port, &want);
}

static bool is_socket(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

int sim_sock_find(int local_port, const char *peer)
{
    struct sockaddr_storage want;
    if (!parse_peer(peer, &want)) return -1;
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        int found = -1, dfd = dirfd(d);
        struct dirent *de;
        while (found < 0 && (de = readdir(d)) != NULL) {
            uint64_t fd;
            if (strv_to_u64(strv_from_cstr(de->d_name), &fd) || fd > INT32_MAX) continue;
            if ((int)fd == dfd || !is_socket((int)fd)) continue;
            if (fd_matches((int)fd, local_port, &want)) found = (int)fd;
        }
        closedir(d);
        return found;
    }
    for (int fd = 0; fd < SIM_SOCK_SCAN_FDS; fd++)
        if (is_socket(fd) && fd_matches(fd, local_port, &want)) return fd;
    return -1;
}

int sim_sock_reset(int fd)
{
    struct sockaddr sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_family = AF_UNSPEC;
    if (connect(fd, &sa, sizeof sa) != 0) return -errno;
    return 0;
}
