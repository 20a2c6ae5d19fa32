/* sse_load — holds thousands of concurrent SSE streams against one HTTP/1.1 endpoint (issue 7,
 * scenarios S2 and S4). One thread, one epoll loop, non-blocking sockets; each stream is its
 * own connection that POSTs the same body (read from a file) and counts `data: ` events.
 * Streams are opened at --rate per second up to --streams; the run ends after --duration s
 * (every connection is then closed) or when every stream has ended.
 *
 * Output (stdout, one line each, flushed):
 *   tick t_ms=… open=… opened=… events=… done=… error_event=… eof=… failed=…
 *   end id=… node=… kind=done|error|eof|http|connect t_ms=<CLOCK_REALTIME ms>   (--events;
 *       kind=open for streams still open when the run ends)
 *   summary … ttft_p50_ms=… ttft_p99_ms=…
 * `events` counts `data: ` events (token chunks; [DONE] and error events excluded). TTFT is
 * measured from the connect() call to the first `data: ` byte. `node` is X-Drover-Node when
 * the answer has it. An error event is a `data: {"error"` line; `eof` is a stream that
 * closed without [DONE] nor an error event (a cut the client cannot tell from a short answer).
 *
 * Usage: sse_load --port P --body-file F [--host 127.0.0.1] [--path /v1/chat/completions]
 *                 [--streams 5000] [--rate 1000] [--duration 30] [--tick-ms 1000] [--events]
 *                 [--header 'Name: value']...
 * Build: cc -O2 -o sse_load bench/sse_load.c */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
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

#include "base/mem.h"

enum st { ST_NEW, ST_CONNECTING, ST_HEAD, ST_BODY, ST_END };
enum end_kind { END_NONE, END_DONE, END_ERROR, END_EOF, END_HTTP, END_CONNECT };
static const char *const end_names[] = {"none", "done", "error", "eof", "http", "connect"};

struct conn {
    int fd;
    enum st st;
    enum end_kind end;
    size_t sent;
    uint64_t t_start_us, t_first_us;
    char head[2048];
    size_t head_len;
    char tail[24]; /* last bytes of the previous read, for markers split across reads */
    size_t tail_len;
    char node[48];
};

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}
static uint64_t real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static char *req;
static size_t req_len;
static struct sockaddr_in addr;
static int ep;
static bool print_events;
static struct conn *conns_base;
static size_t n_open, n_opened, n_done, n_error, n_eof, n_failed;
static uint64_t n_events;

static void finish(struct conn *c, enum end_kind k)
{
    if (c->st == ST_END) return;
    n_open--;
    c->st = ST_END;
    c->end = k;
    switch (k) {
    case END_DONE:
        n_done++;
        break;
    case END_ERROR:
        n_error++;
        break;
    case END_EOF:
        n_eof++;
        break;
    default:
        n_failed++;
        break;
    }
    if (c->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    if (print_events)
        printf("end id=%ld node=%s kind=%s t_ms=%llu\n", (long)(c - conns_base),
               c->node[0] ? c->node : "-", end_names[k], (unsigned long long)real_ms());
}

static void start(struct conn *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    c->t_start_us = mono_us();
    n_opened++;
    n_open++;
    if (c->fd < 0) {
        c->st = ST_CONNECTING;
        finish(c, END_CONNECT);
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->st = ST_CONNECTING;
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        finish(c, END_CONNECT);
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

/* Counts markers in data (with the previous read's tail prepended logically). */
static void scan_body(struct conn *c, const char *p, size_t n)
{
    char buf[65536 + 32];
    size_t len = 0;
    memcpy(buf, c->tail, c->tail_len);
    len = c->tail_len;
    if (n > 65536) n = 65536;
    memcpy(buf + len, p, n);
    len += n;
    size_t skip = c->tail_len; /* markers wholly inside the old tail were counted already */
    const char *s = buf, *end = buf + len;
    while ((s = memmem(s, (size_t)(end - s), "data: ", 6)) != NULL) {
        size_t at = (size_t)(s - buf);
        if (at + 6 > skip) {
            size_t rest = (size_t)(end - s);
            if (rest < 16) break; /* decide once the marker's start is complete */
            if (!memcmp(s + 6, "[DONE]", 6)) {
                finish(c, END_DONE);
                return;
            }
            if (!memcmp(s + 6, "{\"error\"", 8)) {
                finish(c, END_ERROR);
                return;
            }
            if (!c->t_first_us) c->t_first_us = mono_us();
            n_events++;
        }
        s += 6;
    }
    /* Keep the last 23 bytes; a marker starting there was not counted yet unless it was
     * complete (>= 16 bytes after it), and then it lies before the kept window. */
    size_t keep = len < 23 ? len : 23;
    /* If the last counted marker lies inside the kept window, move the window after it. */
    const char *last = NULL, *q = buf;
    while ((q = memmem(q, (size_t)(end - q), "data: ", 6)) != NULL) {
        if ((size_t)(end - q) >= 16) last = q;
        q += 6;
    }
    if (last && (size_t)(end - (last + 6)) < keep) keep = (size_t)(end - (last + 6));
    memcpy(c->tail, end - keep, keep);
    c->tail_len = keep;
}

static void on_head(struct conn *c)
{
    char *eoh = memmem(c->head, c->head_len, "\r\n\r\n", 4);
    if (!eoh) {
        if (c->head_len >= sizeof c->head - 1) finish(c, END_HTTP);
        return;
    }
    int status = 0;
    if (sscanf(c->head, "HTTP/1.%*d %d", &status) != 1 || status != 200) {
        finish(c, END_HTTP);
        return;
    }
    *eoh = 0;
    char *h = strcasestr(c->head, "\r\nx-drover-node:");
    if (h) {
        h += 16;
        while (*h == ' ') h++;
        size_t k = 0;
        while (h[k] && h[k] != '\r' && k < sizeof c->node - 1) k++;
        memcpy(c->node, h, k);
        c->node[k] = 0;
    }
    size_t body_at = (size_t)(eoh + 4 - c->head);
    size_t rest = c->head_len - body_at;
    c->st = ST_BODY;
    if (rest) {
        char tmp[sizeof c->head];
        memcpy(tmp, c->head + body_at, rest);
        scan_body(c, tmp, rest);
    }
}

static void on_event(struct conn *c, uint32_t evs)
{
    if (c->st == ST_CONNECTING && (evs & EPOLLOUT)) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            finish(c, END_CONNECT);
            return;
        }
        while (c->sent < req_len) {
            ssize_t w = write(c->fd, req + c->sent, req_len - c->sent);
            if (w < 0) {
                if (errno == EAGAIN) return;
                finish(c, END_CONNECT);
                return;
            }
            c->sent += (size_t)w;
        }
        c->st = ST_HEAD;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        return;
    }
    if (!(evs & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) return;
    for (;;) {
        char buf[65536];
        ssize_t r;
        if (c->st == ST_HEAD) {
            r = read(c->fd, c->head + c->head_len, sizeof c->head - 1 - c->head_len);
            if (r > 0) {
                c->head_len += (size_t)r;
                c->head[c->head_len] = 0;
                on_head(c);
                if (c->st == ST_END) return;
                continue;
            }
        } else if (c->st == ST_BODY) {
            r = read(c->fd, buf, sizeof buf);
            if (r > 0) {
                scan_body(c, buf, (size_t)r);
                if (c->st == ST_END) return;
                continue;
            }
        } else {
            return;
        }
        if (r == 0) {
            finish(c, c->st == ST_HEAD ? END_HTTP : END_EOF);
            return;
        }
        if (errno == EAGAIN) return;
        finish(c, c->st == ST_HEAD ? END_HTTP : END_EOF);
        return;
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *path = "/v1/chat/completions", *body_file = NULL;
    int port = 0;
    size_t streams = 5000, rate = 1000;
    double duration = 30;
    unsigned tick_ms = 1000;
    char headers[4096] = "";
    size_t hl = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--events")) {
            print_events = true;
            continue;
        }
        if (!v) {
            fprintf(stderr, "sse_load: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--host"))
            host = v;
        else if (!strcmp(a, "--port"))
            port = (int)strtol(v, NULL, 10);
        else if (!strcmp(a, "--path"))
            path = v;
        else if (!strcmp(a, "--body-file"))
            body_file = v;
        else if (!strcmp(a, "--streams"))
            streams = strtoul(v, NULL, 10);
        else if (!strcmp(a, "--rate"))
            rate = strtoul(v, NULL, 10);
        else if (!strcmp(a, "--duration"))
            duration = strtod(v, NULL);
        else if (!strcmp(a, "--tick-ms"))
            tick_ms = (unsigned)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--header"))
            hl += (size_t)snprintf(headers + hl, sizeof headers - hl, "%s\r\n", v);
        else {
            fprintf(stderr, "sse_load: unknown option %s\n", a);
            return 2;
        }
    }
    if (!port || !body_file || !streams || !rate) {
        fprintf(stderr, "usage: sse_load --port P --body-file F [--streams N] [--rate R] ...\n");
        return 2;
    }
    FILE *f = fopen(body_file, "rb");
    if (!f) {
        perror(body_file);
        return 2;
    }
    char *body = xmalloc(1 << 22);
    size_t blen = fread(body, 1, (1 << 22) - 1, f);
    fclose(f);
    req = xmalloc(blen + 8192);
    req_len =
        (size_t)snprintf(req, 8192,
                         "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                         "Accept: text/event-stream\r\n%sContent-Length: %zu\r\n\r\n",
                         path, host, port, headers, blen);
    memcpy(req + req_len, body, blen);
    req_len += blen;

    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);

    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, host, &addr.sin_addr);
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct conn *conns = xcalloc(streams, sizeof *conns);
    for (size_t i = 0; i < streams; i++) conns[i].fd = -1;
    conns_base = conns;

    uint64_t t0 = mono_us(), next_tick = t0 + tick_ms * 1000ull;
    uint64_t t_end = t0 + (uint64_t)(duration * 1e6);
    size_t started = 0;
    struct epoll_event evs[512];
    for (;;) {
        uint64_t now = mono_us();
        size_t want = (size_t)((double)(now - t0) * (double)rate / 1e6) + 1;
        if (want > streams) want = streams;
        while (started < want) start(&conns[started++]);
        if (now >= next_tick) {
            printf(
                "tick t_ms=%llu open=%zu opened=%zu events=%llu done=%zu error_event=%zu eof=%zu "
                "failed=%zu\n",
                (unsigned long long)((now - t0) / 1000), n_open, n_opened,
                (unsigned long long)n_events, n_done, n_error, n_eof, n_failed);
            fflush(stdout);
            next_tick += tick_ms * 1000ull;
        }
        if (now >= t_end) break;
        if (started == streams && n_open == 0) break;
        int n = epoll_wait(ep, evs, 512, 5);
        for (int i = 0; i < n; i++) on_event(evs[i].data.ptr, evs[i].events);
        fflush(stdout);
    }
    size_t still_open = n_open;
    uint64_t *ttft = xcalloc(streams + 1, sizeof *ttft);
    size_t nt = 0;
    for (size_t i = 0; i < started; i++) {
        if (conns[i].t_first_us) ttft[nt++] = conns[i].t_first_us - conns[i].t_start_us;
        if (conns[i].fd >= 0) {
            if (print_events)
                printf("end id=%zu node=%s kind=open t_ms=%llu\n", i,
                       conns[i].node[0] ? conns[i].node : "-", (unsigned long long)real_ms());
            close(conns[i].fd);
        }
    }
    qsort(ttft, nt, sizeof *ttft, cmp_u64);
    double p50 = nt ? ttft[nt / 2] / 1000.0 : 0, p99 = nt ? ttft[nt * 99 / 100] / 1000.0 : 0;
    double p90 = nt ? ttft[nt * 90 / 100] / 1000.0 : 0;
    size_t over_1s = 0; /* a TTFT past 1 s is usually a SYN retransmit (a full accept queue) */
    for (size_t i = 0; i < nt; i++) over_1s += ttft[i] >= 1000000;
    printf("summary streams=%zu opened=%zu open_at_end=%zu events=%llu done=%zu error_event=%zu "
           "eof=%zu failed=%zu ttft_n=%zu ttft_p50_ms=%.2f ttft_p90_ms=%.2f ttft_p99_ms=%.2f "
           "ttft_over_1s=%zu\n",
           streams, n_opened, still_open, (unsigned long long)n_events, n_done, n_error, n_eof,
           n_failed, nt, p50, p90, p99, over_1s);
    fflush(stdout);
    return 0;
}
