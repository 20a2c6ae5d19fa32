/* Unit tests for net/http_server: a real server on 127.0.0.1 port 0, its loop on a thread,
 * driven by blocking client sockets with receive timeouts. Every wait is bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "base/clock.h"
#include "net/http_server.h"

struct fx {
    uv_loop_t loop;
    uv_async_t stop;
    struct http_server *srv;
    pthread_t thread;
    int port;
    int aborted; /* atomics: set on the loop thread, read by the test */
    int blocked;
    int drained;
    int closed;
    int writes;
    struct http_request *held;
};

static void on_stream_abort(struct http_request *req, void *ctx)
{
    struct fx *f = ctx;
    f->held = NULL;
    __atomic_store_n(&f->aborted, 1, __ATOMIC_SEQ_CST);
}

static void on_big_drain(struct http_request *req, void *ctx)
{
    struct fx *f = ctx;
    __atomic_store_n(&f->drained, 1, __ATOMIC_SEQ_CST);
    assert_false(http_request_write_blocked(req));
    assert_int_equal(http_stream_write(req, "END", 3), 0);
    assert_int_equal(http_stream_end(req), 0);
}

static void handler(struct http_request *req, void *ctx)
{
    struct fx *f = ctx;
    char body[128];
    if (strv_eq_cstr(req->path, "/chunked")) {
        struct http_header h = {STRV_LIT("Content-Type"), STRV_LIT("text/event-stream")};
        assert_int_equal(http_stream_start(req, 200, &h, 1, -1), 0);
        assert_int_equal(http_stream_write(req, "abc", 3), 0);
        assert_int_equal(http_stream_write(req, "defgh", 5), 0);
        assert_int_equal(http_stream_write(req, "abcdefghijklmnopqrstuvwxyz", 26), 0);
        assert_int_equal(http_stream_end(req), 0);
    } else if (strv_eq_cstr(req->path, "/stream")) {
        http_request_on_abort(req, on_stream_abort, f);
        assert_int_equal(http_stream_start(req, 200, NULL, 0, -1), 0);
        assert_int_equal(http_stream_write(req, "data: 1\n\n", 9), 0);
        f->held = req; /* never ended: the client will go away */
    } else if (strv_eq_cstr(req->path, "/big")) {
        static char chunk[16384];
        memset(chunk, 'x', sizeof chunk);
        http_request_on_drain(req, on_big_drain, f);
        assert_int_equal(http_stream_start(req, 200, NULL, 0, -1), 0);
        int i = 0;
        for (; i < 8192 && !http_request_write_blocked(req); i++)
            assert_int_equal(http_stream_write(req, chunk, sizeof chunk), 0);
        if (http_request_write_blocked(req)) __atomic_store_n(&f->blocked, 1, __ATOMIC_SEQ_CST);
        assert_true(http_request_write_queue_bytes(req) > 0);
        __atomic_store_n(&f->writes, i, __ATOMIC_SEQ_CST);
    } else {
        int n = snprintf(body, sizeof body, "hello id=%llu body=%.*s", (unsigned long long)req->id,
                         STRV_FMT(req->body));
        assert_int_equal(http_respond(req, 200, NULL, 0, body, (size_t)n), 0);
    }
}

static void on_closed(void *arg)
{
    struct fx *f = arg;
    __atomic_store_n(&f->closed, 1, __ATOMIC_SEQ_CST);
}

static void on_stop(uv_async_t *a)
{
    struct fx *f = a->data;
    http_server_close(f->srv, on_closed, f);
    uv_close((uv_handle_t *)a, NULL);
}

static void *loop_main(void *arg)
{
    struct fx *f = arg;
    uv_run(&f->loop, UV_RUN_DEFAULT);
    return NULL;
}

static struct fx fixture;

typedef void tune_fn(struct http_server_config *cfg);

static struct fx *fx_start(tune_fn *tune)
{
    struct fx *f = &fixture;
    memset(f, 0, sizeof *f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    struct http_server_config cfg;
    http_server_config_defaults(&cfg);
    cfg.port = 0;
    cfg.header_timeout_ms = 2000;
    cfg.body_timeout_ms = 2000;
    cfg.idle_timeout_ms = 2000;
    if (tune) tune(&cfg);
    struct gw_error err = {0};
    assert_int_equal(http_server_start(&f->loop, &cfg, handler, f, &f->srv, &err), 0);
    f->port = http_server_port(f->srv);
    assert_true(f->port > 0);
    assert_int_equal(uv_async_init(&f->loop, &f->stop, on_stop), 0);
    f->stop.data = f;
    assert_int_equal(pthread_create(&f->thread, NULL, loop_main, f), 0);
    return f;
}

static void fx_stop(struct fx *f)
{
    uv_async_send(&f->stop);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 5;
    assert_int_equal(pthread_timedjoin_np(f->thread, NULL, &ts), 0);
    assert_int_equal(__atomic_load_n(&f->closed, __ATOMIC_SEQ_CST), 1);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

/* --- blocking client ------------------------------------------------------------------ */

static uint64_t now_ms(void)
{
    return clock_mono_ms();
}

static int cl_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

static void cl_send(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        assert_true(w > 0);
        p += w;
        n -= (size_t)w;
    }
}

static void cl_send_str(int fd, const char *s)
{
    cl_send(fd, s, strlen(s));
}

/* Reads until `until` appears (if not NULL), EOF, or the deadline. Returns bytes read (NUL
 * terminated in out) and sets *eof when the peer closed. */
static size_t cl_read(int fd, char *out, size_t cap, const char *until, uint64_t timeout_ms,
                      bool *eof)
{
    size_t len = 0;
    uint64_t end = now_ms() + timeout_ms;
    *eof = false;
    out[0] = '\0';
    while (len + 1 < cap) {
        if (until && strstr(out, until)) break;
        uint64_t t = now_ms();
        if (t >= end) break;
        struct pollfd p = {fd, POLLIN, 0};
        int r = poll(&p, 1, (int)(end - t));
        if (r <= 0) continue;
        ssize_t n = recv(fd, out + len, cap - 1 - len, 0);
        if (n <= 0) {
            *eof = true;
            break;
        }
        len += (size_t)n;
        out[len] = '\0';
    }
    return len;
}

/* --- tests ---------------------------------------------------------------------------- */

static void tune_small_caps(struct http_server_config *c)
{
    c->max_header_bytes = 1024;
    c->max_body_bytes = 1024;
}

static void test_header_too_large(void **state)
{
    struct fx *f = fx_start(tune_small_caps);
    int fd = cl_connect(f->port);
    char req[4096];
    memset(req, 'a', sizeof req);
    memcpy(req, "GET / HTTP/1.1\r\nX: ", 19);
    memcpy(req + sizeof req - 4, "\r\n\r\n", 4);
    cl_send(fd, req, 2048); /* the server must answer before the head ends */
    char buf[4096];
    bool eof;
    cl_read(fd, buf, sizeof buf, NULL, 3000, &eof);
    assert_true(eof);
    assert_non_null(strstr(buf, "HTTP/1.1 431 "));
    assert_non_null(strstr(buf, "\"code\":\"request_header_fields_too_large\""));
    assert_non_null(strstr(buf, "\"type\":\"invalid_request_error\""));
    assert_non_null(strstr(buf, "Connection: close"));
    close(fd);
    fx_stop(f);
}

static void test_body_too_large(void **state)
{
    struct fx *f = fx_start(tune_small_caps);
    int fd = cl_connect(f->port);
    /* Announces 10 MB, sends 1 KB of it and waits: the answer must come anyway. */
    cl_send_str(fd, "POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 10000000\r\n\r\n");
    char part[1000];
    memset(part, 'b', sizeof part);
    cl_send(fd, part, sizeof part);
    char buf[4096];
    bool eof;
    cl_read(fd, buf, sizeof buf, NULL, 3000, &eof);
    assert_true(eof);
    assert_non_null(strstr(buf, "HTTP/1.1 413 "));
    assert_non_null(strstr(buf, "\"code\":\"request_too_large\""));
    close(fd);

    /* A body within the cap is served. */
    fd = cl_connect(f->port);
    cl_send_str(fd, "POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
    cl_read(fd, buf, sizeof buf, "body=hello", 3000, &eof);
    assert_non_null(strstr(buf, "HTTP/1.1 200 OK"));
    assert_non_null(strstr(buf, "body=hello"));
    close(fd);
    fx_stop(f);
}

static void test_bad_header_name(void **state)
{
    struct fx *f = fx_start(NULL);
    int fd = cl_connect(f->port);
    cl_send_str(fd, "GET / HTTP/1.1\r\nHost : a\r\n\r\n");
    char buf[4096];
    bool eof;
    cl_read(fd, buf, sizeof buf, NULL, 3000, &eof);
    assert_true(eof);
    assert_non_null(strstr(buf, "HTTP/1.1 400 "));
    close(fd);
    fx_stop(f);
}

static void tune_slow(struct http_server_config *c)
{
    c->header_timeout_ms = 300;
    c->idle_timeout_ms = 250;
}

static void test_slowloris_408(void **state)
{
    struct fx *f = fx_start(tune_slow);
    int fd = cl_connect(f->port);
    const char *head = "GET / HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                       "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    uint64_t t0 = now_ms();
    char buf[4096];
    size_t len = 0;
    bool eof = false;
    /* One byte every 50 ms; the connection must not outlive the header timeout for long. */
    for (size_t i = 0; i < strlen(head) && !eof; i++) {
        if (send(fd, head + i, 1, MSG_NOSIGNAL) != 1) break;
        len += cl_read(fd, buf + len, sizeof buf - len, "\"}}", 50, &eof);
        if (strstr(buf, "\"}}")) break;
    }
    if (!eof) len += cl_read(fd, buf + len, sizeof buf - len, NULL, 2000, &eof);
    uint64_t took = now_ms() - t0;
    assert_non_null(strstr(buf, "HTTP/1.1 408 "));
    assert_non_null(strstr(buf, "\"code\":\"request_timeout\""));
    assert_true(eof);
    assert_true(took >= 250);
    assert_true(took < 2500);
    close(fd);
    fx_stop(f);
}

static void test_idle_close(void **state)
{
    struct fx *f = fx_start(tune_slow);
    int fd = cl_connect(f->port);
    cl_send_str(fd, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    char buf[4096];
    bool eof;
    cl_read(fd, buf, sizeof buf, "id=", 3000, &eof);
    assert_non_null(strstr(buf, "HTTP/1.1 200 OK"));
    assert_non_null(strstr(buf, "Connection: keep-alive"));
    assert_false(eof);
    uint64_t t0 = now_ms();
    size_t n = cl_read(fd, buf, sizeof buf, NULL, 3000, &eof);
    uint64_t took = now_ms() - t0;
    assert_true(eof);
    assert_int_equal(n, 0); /* closed silently */
    assert_true(took >= 150 && took < 2000);
    close(fd);
    fx_stop(f);
}

/* Requests 150 ms apart on one keep-alive connection with a 250 ms idle timeout: each answer
 * moves the idle deadline later, so the timer set after the first answer must re-arm itself
 * instead of closing the connection; after the last answer it closes on time. */
static void test_idle_deadline_moves(void **state)
{
    struct fx *f = fx_start(tune_slow);
    int fd = cl_connect(f->port);
    char buf[4096];
    bool eof = false;
    for (int i = 0; i < 4; i++) {
        cl_send_str(fd, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
        memset(buf, 0, sizeof buf);
        cl_read(fd, buf, sizeof buf, "id=", 3000, &eof);
        assert_non_null(strstr(buf, "HTTP/1.1 200 OK"));
        assert_false(eof);
        struct timespec ts = {0, 150 * 1000000L};
        nanosleep(&ts, NULL);
    }
    uint64_t t0 = now_ms();
    size_t n = cl_read(fd, buf, sizeof buf, NULL, 3000, &eof);
    assert_true(eof);
    assert_int_equal(n, 0);
    assert_true(now_ms() - t0 < 2000);
    close(fd);
    fx_stop(f);
}

static void tune_two_conns(struct http_server_config *c)
{
    c->max_connections = 2;
}

static void test_max_connections(void **state)
{
    struct fx *f = fx_start(tune_two_conns);
    int fds[2];
    char buf[4096];
    bool eof;
    for (int i = 0; i < 2; i++) {
        fds[i] = cl_connect(f->port);
        cl_send_str(fds[i], "GET / HTTP/1.1\r\n\r\n");
        cl_read(fds[i], buf, sizeof buf, "id=", 3000, &eof);
        assert_non_null(strstr(buf, "HTTP/1.1 200 OK"));
    }
    int third = cl_connect(f->port);
    cl_read(third, buf, sizeof buf, NULL, 3000, &eof);
    assert_true(eof);
    assert_non_null(strstr(buf, "HTTP/1.1 503 "));
    assert_non_null(strstr(buf, "Retry-After: 1"));
    assert_non_null(strstr(buf, "\"type\":\"server_error\""));
    close(third);
    /* The first two still work. */
    cl_send_str(fds[0], "GET / HTTP/1.1\r\n\r\n");
    cl_read(fds[0], buf, sizeof buf, "id=", 3000, &eof);
    assert_non_null(strstr(buf, "HTTP/1.1 200 OK"));
    close(fds[0]);
    close(fds[1]);
    fx_stop(f);
}

static unsigned long long id_of(const char *buf)
{
    const char *p = strstr(buf, "id=");
    assert_non_null(p);
    return strtoull(p + 3, NULL, 10);
}

static void test_keep_alive_reuse(void **state)
{
    struct fx *f = fx_start(NULL);
    int fd = cl_connect(f->port);
    char buf[4096];
    bool eof;
    cl_send_str(fd, "GET /one HTTP/1.1\r\n\r\n");
    cl_read(fd, buf, sizeof buf, "body=", 3000, &eof);
    assert_non_null(strstr(buf, "HTTP/1.1 200 OK"));
    unsigned long long id1 = id_of(buf);
    cl_send_str(fd, "POST /two HTTP/1.1\r\nContent-Length: 2\r\n\r\nok");
    cl_read(fd, buf, sizeof buf, "body=ok", 3000, &eof);
    assert_non_null(strstr(buf, "HTTP/1.1 200 OK"));
    assert_false(eof);
    unsigned long long id2 = id_of(buf);
    assert_true(id2 > id1);
    /* Two pipelined requests in one segment get two answers in order. */
    cl_send_str(fd, "POST /p HTTP/1.1\r\nContent-Length: 1\r\n\r\nAGET /q HTTP/1.1\r\n"
                    "Connection: close\r\n\r\n");
    size_t n = cl_read(fd, buf, sizeof buf, NULL, 3000, &eof);
    assert_true(eof);
    assert_true(n > 0);
    char *first = strstr(buf, "body=A");
    assert_non_null(first);
    assert_non_null(strstr(first, "HTTP/1.1 200 OK"));
    assert_non_null(strstr(first, "Connection: close"));
    close(fd);
    fx_stop(f);
}

static void test_chunked_framing(void **state)
{
    struct fx *f = fx_start(NULL);
    int fd = cl_connect(f->port);
    char buf[4096];
    bool eof;
    cl_send_str(fd, "GET /chunked HTTP/1.1\r\n\r\n");
    cl_read(fd, buf, sizeof buf, "0\r\n\r\n", 3000, &eof);
    assert_non_null(strstr(buf, "Transfer-Encoding: chunked\r\n"));
    assert_non_null(strstr(buf, "Content-Type: text/event-stream\r\n"));
    assert_null(strstr(buf, "Content-Length"));
    const char *body = strstr(buf, "\r\n\r\n");
    assert_non_null(body);
    assert_string_equal(body + 4, "3\r\nabc\r\n5\r\ndefgh\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n"
                                  "0\r\n\r\n");
    close(fd);

    /* HTTP/1.0 gets the body unframed, ended by close. */
    fd = cl_connect(f->port);
    cl_send_str(fd, "GET /chunked HTTP/1.0\r\n\r\n");
    cl_read(fd, buf, sizeof buf, NULL, 3000, &eof);
    assert_true(eof);
    assert_null(strstr(buf, "chunked"));
    body = strstr(buf, "\r\n\r\n");
    assert_non_null(body);
    assert_string_equal(body + 4, "abcdefghabcdefghijklmnopqrstuvwxyz");
    close(fd);
    fx_stop(f);
}

static void test_abort_on_disconnect(void **state)
{
    struct fx *f = fx_start(NULL);
    int fd = cl_connect(f->port);
    char buf[4096];
    bool eof;
    cl_send_str(fd, "GET /stream HTTP/1.1\r\n\r\n");
    cl_read(fd, buf, sizeof buf, "data: 1", 3000, &eof);
    assert_non_null(strstr(buf, "data: 1"));
    assert_int_equal(__atomic_load_n(&f->aborted, __ATOMIC_SEQ_CST), 0);
    close(fd);
    uint64_t end = now_ms() + 3000;
    while (!__atomic_load_n(&f->aborted, __ATOMIC_SEQ_CST) && now_ms() < end) usleep(10 * 1000);
    assert_int_equal(__atomic_load_n(&f->aborted, __ATOMIC_SEQ_CST), 1);
    fx_stop(f);
}

static void tune_low_water(struct http_server_config *c)
{
    c->write_high_water_bytes = 64 * 1024;
    c->write_low_water_bytes = 16 * 1024;
}

static void test_drain_after_backpressure(void **state)
{
    struct fx *f = fx_start(tune_low_water);
    int fd = cl_connect(f->port);
    cl_send_str(fd, "GET /big HTTP/1.1\r\n\r\n");
    /* Do not read until the server saw its queue go above the high-water mark. */
    uint64_t end = now_ms() + 3000;
    while (!__atomic_load_n(&f->writes, __ATOMIC_SEQ_CST) && now_ms() < end) usleep(10 * 1000);
    assert_int_equal(__atomic_load_n(&f->blocked, __ATOMIC_SEQ_CST), 1);
    assert_int_equal(__atomic_load_n(&f->drained, __ATOMIC_SEQ_CST), 0);
    /* Read everything; the drain callback writes END and the last chunk. */
    static char big[1 << 16];
    char tail[33] = ""; /* the last bytes seen, across reads */
    size_t total = 0, tl = 0;
    bool eof = false;
    end = now_ms() + 10000;
    while (now_ms() < end && !eof && !strstr(tail, "END\r\n0\r\n\r\n")) {
        size_t n = cl_read(fd, big, sizeof big, NULL, 100, &eof);
        total += n;
        for (size_t i = 0; i < n; i++) {
            if (tl == 32) memmove(tail, tail + 1, --tl);
            tail[tl++] = big[i];
        }
        tail[tl] = '\0';
    }
    assert_non_null(strstr(tail, "END\r\n0\r\n\r\n"));
    assert_int_equal(__atomic_load_n(&f->drained, __ATOMIC_SEQ_CST), 1);
    assert_true(total > 64 * 1024);
    close(fd);
    fx_stop(f);
}

static void tune_ipv6(struct http_server_config *c)
{
    c->host = "::1";
}

static void test_ipv6(void **state)
{
    int probe = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 a = {0};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    bool has_v6 = probe >= 0 && bind(probe, (struct sockaddr *)&a, sizeof a) == 0;
    if (probe >= 0) close(probe);
    if (!has_v6) skip();
    struct fx *f = fx_start(tune_ipv6);
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    a.sin6_port = htons((uint16_t)f->port);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    cl_send_str(fd, "GET /v6 HTTP/1.1\r\n\r\n");
    char buf[4096];
    bool eof;
    cl_read(fd, buf, sizeof buf, "id=", 3000, &eof);
    assert_non_null(strstr(buf, "HTTP/1.1 200 OK"));
    close(fd);
    fx_stop(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_too_large),
        cmocka_unit_test(test_body_too_large),
        cmocka_unit_test(test_bad_header_name),
        cmocka_unit_test(test_slowloris_408),
        cmocka_unit_test(test_idle_close),
        cmocka_unit_test(test_idle_deadline_moves),
        cmocka_unit_test(test_max_connections),
        cmocka_unit_test(test_keep_alive_reuse),
        cmocka_unit_test(test_chunked_framing),
        cmocka_unit_test(test_abort_on_disconnect),
        cmocka_unit_test(test_drain_after_backpressure),
        cmocka_unit_test(test_ipv6),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
