/* top_cmd — `drover top`: a terminal live view of the gateway over the admin API (nodes with
 * their three axes, models, request rates, latency and errors), redrawn in place every
 * interval with plain ANSI sequences (no curses): the alternate screen, cursor home, each line
 * cleared to its end. Works over SSH and inside tmux. `q` quits (raw keyboard input, restored
 * on every exit path, signals included); --once prints one frame without escapes (for scripts
 * and pipes). Rates per node are differences of requests_total between two polls; the
 * minute's latency, tokens and errors come from GET /admin/v1/history. The main thread only. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/mem.h"
#include "cli/admin_client.h"
#include "cli/commands.h"

int top_main(int argc, char **argv);

enum { TOP_MAX_NODES = 1024, TOP_NAME = 64 };

static volatile sig_atomic_t top_stop;
static struct termios saved_tio;
static bool raw_on;

static void on_signal(int sig)
{
    (void)sig;
    top_stop = 1;
}

static void term_restore(void)
{
    if (raw_on) {
        (void)tcsetattr(STDIN_FILENO, TCSANOW, &saved_tio);
        raw_on = false;
    }
}

static void term_raw(void)
{
    if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_tio)) return;
    struct termios t = saved_tio;
    t.c_lflag &= ~(tcflag_t)(ICANON | ECHO); /* ISIG stays: Ctrl-C is a signal, handled */
    t.c_cc[VMIN] = 0;
    t.c_cc[VTIME] = 0;
    if (tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0) raw_on = true;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: drover top [--admin URL] [--token TOKEN] [--interval SECONDS] [--once]\n"
            "\n"
            "A live view of the gateway: nodes (admin, liveness, exclusion, faults, in flight,\n"
            "requests per second), models, the minute's latency, tokens and errors. Redrawn\n"
            "in place; q quits.\n"
            "\n"
            "  --admin URL        admin API (default $DROVER_ADMIN_URL or http://127.0.0.1:8081)\n"
            "  --token TOKEN      admin token (default $DROVER_ADMIN_TOKEN)\n"
            "  --interval S       seconds between refreshes, 0.2-60 (default 1)\n"
            "  --once             print one frame, no escape sequences, and exit (1: no answer)\n");
}

struct prev_node {
    char name[TOP_NAME];
    uint64_t requests, faults;
};

struct top {
    struct admin_target t;
    struct prev_node prev[TOP_MAX_NODES];
    size_t n_prev;
    double prev_at;
    bool have_prev;
};

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t jget_u64(struct json_object *o, const char *k)
{
    struct json_object *v = NULL;
    if (!json_object_object_get_ex(o, k, &v) || !v) return 0;
    return (uint64_t)json_object_get_int64(v);
}

static double jget_num(struct json_object *o, const char *k, double dflt)
{
    struct json_object *v = NULL;
    if (!json_object_object_get_ex(o, k, &v) || !v || json_object_is_type(v, json_type_null))
        return dflt;
    return json_object_get_double(v);
}

/* One admin GET, parsed; NULL with why filled when there is no JSON answer. */
static struct json_object *get_json(struct top *tp, const char *path, char *why, size_t cap)
{
    struct buf out;
    buf_init(&out, 64u << 20);
    int status = 0;
    struct gw_error err = {0};
    struct json_object *root = NULL;
    if (admin_request(&tp->t, "GET", path, NULL, &status, &out, &err))
        snprintf(why, cap, "cannot reach the admin API at %s: %s", tp->t.url, err.msg);
    else if (status == 401)
        snprintf(why, cap, "the admin token was refused (set --token or DROVER_ADMIN_TOKEN)");
    else if (status != 200)
        snprintf(why, cap, "GET %s answered %d", path, status);
    else if (!(root = json_parse_strict(out.p ? out.p : "", out.len, 64, NULL)))
        snprintf(why, cap, "GET %s did not answer JSON", path);
    buf_free(&out);
    return root;
}

/* A frame past its cap is cut short; nothing else can fail here. */
static void put(struct buf *b, const void *p, size_t n)
{
    if (buf_append(b, p, n)) return;
}

static struct prev_node *find_prev(struct top *tp, const char *name)
{
    for (size_t i = 0; i < tp->n_prev; i++)
        if (!strcmp(tp->prev[i].name, name)) return &tp->prev[i];
    return NULL;
}

/* Appends one line, cut to width columns (bytes; names are ASCII in practice). */
static void line(struct buf *f, int width, const char *fmt, ...) PRINTF_LIKE(3, 4);
static void line(struct buf *f, int width, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof tmp) n = sizeof tmp - 1;
    if (width > 0 && n > width) n = width;
    put(f, tmp, (size_t)n);
    put(f, "\n", 1);
}

static void ms_text(char *out, size_t cap, double v)
{
    if (v < 0)
        snprintf(out, cap, "-");
    else
        snprintf(out, cap, "%.0f ms", v);
}

/* Returns false when the admin API gave no answer to show (the frame says why). */
static bool frame(struct top *tp, struct buf *f, int width, int height)
{
    char why[512] = "";
    struct json_object *nodes_doc = get_json(tp, "/admin/v1/nodes", why, sizeof why);
    struct json_object *hist =
        nodes_doc ? get_json(tp, "/admin/v1/history", why, sizeof why) : NULL;
    double now = mono_s(), dt = tp->have_prev ? now - tp->prev_at : 0;
    char clock[32];
    time_t wall = time(NULL);
    struct tm tmv;
    strftime(clock, sizeof clock, "%H:%M:%S", localtime_r(&wall, &tmv));
    line(f, width, "drover top - %s - %s - q quits", tp->t.url, clock);
    if (!nodes_doc || !hist) {
        line(f, width, "%s", "");
        line(f, width, "%s", why);
        if (nodes_doc) json_object_put(nodes_doc);
        return false;
    }
    struct json_object *points = NULL, *series = NULL, *last = NULL;
    json_object_object_get_ex(hist, "points", &points);
    json_object_object_get_ex(hist, "series", &series);
    size_t np = points ? json_object_array_length(points) : 0;
    if (np) last = json_object_array_get_idx(points, np - 1);
    struct json_object *nodes = NULL;
    json_object_object_get_ex(nodes_doc, "nodes", &nodes);
    size_t nn = nodes ? json_object_array_length(nodes) : 0;

    /* totals: this poll's request rate from the node counters, the minute from history */
    double total_rps = 0;
    size_t routable = 0;
    for (size_t i = 0; i < nn; i++) {
        struct json_object *n = json_object_array_get_idx(nodes, i);
        struct prev_node *p = find_prev(tp, admin_json_str(n, "name", ""));
        if (p && dt > 0) total_rps += (double)(jget_u64(n, "requests_total") - p->requests) / dt;
        routable += !strcmp(admin_json_str(n, "routable", "false"), "true");
    }
    char p50[24], p99[24], t50[24];
    struct json_object *oc = NULL;
    if (last) json_object_object_get_ex(last, "outcomes", &oc);
    ms_text(p50, sizeof p50, last ? jget_num(last, "latency_p50_ms", -1) : -1);
    ms_text(p99, sizeof p99, last ? jget_num(last, "latency_p99_ms", -1) : -1);
    ms_text(t50, sizeof t50, last ? jget_num(last, "ttft_p50_ms", -1) : -1);
    line(f, width,
         "nodes %zu (%zu routable)   requests/s %.1f   this minute: %llu requests, "
         "p50 %s, p99 %s, ttfb p50 %s, %llu tokens",
         nn, routable, total_rps, (unsigned long long)(last ? jget_u64(last, "requests") : 0), p50,
         p99, t50, (unsigned long long)(last ? jget_u64(last, "tokens") : 0));
    line(f, width,
         "errors this minute: client %llu, unavailable %llu, upstream %llu, "
         "stream %llu, client gone %llu",
         (unsigned long long)(oc ? jget_u64(oc, "client_error") : 0),
         (unsigned long long)(oc ? jget_u64(oc, "unavailable") : 0),
         (unsigned long long)(oc ? jget_u64(oc, "upstream") : 0),
         (unsigned long long)(oc ? jget_u64(oc, "stream_error") : 0),
         (unsigned long long)(oc ? jget_u64(oc, "client_gone") : 0));
    line(f, width, "%s", "");
    line(f, width, "%-16s %-9s %-10s %-9s %6s %9s %7s  %s", "NODE", "ADMIN", "LIVE", "EXCLUDED",
         "FAULTS", "INFL/LIM", "REQ/S", "MODELS");
    int rows_left = height > 0 ? height - 10 : 1 << 30;
    size_t n_prev = 0;
    static struct prev_node next[TOP_MAX_NODES];
    for (size_t i = 0; i < nn; i++) {
        struct json_object *n = json_object_array_get_idx(nodes, i);
        const char *name = admin_json_str(n, "name", "?");
        struct prev_node *p = find_prev(tp, name);
        uint64_t req = jget_u64(n, "requests_total");
        double rps = p && dt > 0 ? (double)(req - p->requests) / dt : 0;
        char models[256] = "", lim[32];
        struct json_object *ms = NULL;
        json_object_object_get_ex(n, "models", &ms);
        for (size_t k = 0; ms && k < json_object_array_length(ms); k++) {
            size_t used = strlen(models);
            snprintf(models + used, sizeof models - used, "%s%s", k ? "," : "",
                     admin_json_str(json_object_array_get_idx(ms, k), "id", "?"));
        }
        snprintf(lim, sizeof lim, "%llu/%llu", (unsigned long long)jget_u64(n, "in_flight"),
                 (unsigned long long)jget_u64(n, "concurrency_limit"));
        if (rows_left-- > 0)
            line(f, width, "%-16.16s %-9s %-10s %-9s %6llu %9s %7.1f  %s", name,
                 admin_json_str(n, "admin", "?"), admin_json_str(n, "liveness", "?"),
                 !strcmp(admin_json_str(n, "excluded", "false"), "true") ? "excluded" : "-",
                 (unsigned long long)jget_u64(n, "consecutive_faults"), lim, rps, models);
        if (n_prev < TOP_MAX_NODES) {
            snprintf(next[n_prev].name, TOP_NAME, "%s", name);
            next[n_prev].requests = req;
            next[n_prev].faults = jget_u64(n, "faults_total");
            n_prev++;
        }
    }
    if (rows_left < 0) line(f, width, "... %d more nodes", -rows_left);
    memcpy(tp->prev, next, n_prev * sizeof next[0]);
    tp->n_prev = n_prev;
    tp->prev_at = now;
    tp->have_prev = true;
    line(f, width, "%s", "");
    line(f, width, "%-16s %-24s %10s %9s %7s", "NODE", "MODEL", "REQ/MIN", "TOK/S", "ERRORS");
    size_t ns = series ? json_object_array_length(series) : 0;
    for (size_t i = 0; i < ns && rows_left-- > 2; i++) {
        struct json_object *s = json_object_array_get_idx(series, i), *rps = NULL, *tps = NULL,
                           *errs = NULL;
        json_object_object_get_ex(s, "rps", &rps);
        json_object_object_get_ex(s, "tokens_per_s", &tps);
        json_object_object_get_ex(s, "errors", &errs);
        size_t k = rps ? json_object_array_length(rps) : 0;
        if (!k || !tps || !errs) continue;
        line(f, width, "%-16.16s %-24.24s %10.0f %9.1f %7lld", admin_json_str(s, "node", "?"),
             admin_json_str(s, "model", "?"),
             json_object_get_double(json_object_array_get_idx(rps, k - 1)) * 60.0,
             json_object_get_double(json_object_array_get_idx(tps, k - 1)),
             (long long)json_object_get_int64(json_object_array_get_idx(errs, k - 1)));
    }
    if (!ns) line(f, width, "(no traffic in the last hour)");
    json_object_put(hist);
    json_object_put(nodes_doc);
    return true;
}

static void write_all(const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(STDOUT_FILENO, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        p += w, n -= (size_t)w;
    }
}

/* The frame drawn over the previous one: home, every line cleared to its end, the rest of
 * the screen cleared. */
static void draw(const struct buf *f)
{
    struct buf o;
    buf_init(&o, (64u << 20));
    put(&o, "\x1b[H", 3);
    size_t s = 0;
    for (size_t i = 0; i < f->len; i++) {
        if (f->p[i] != '\n') continue;
        put(&o, f->p + s, i - s);
        put(&o, "\x1b[K\r\n", 5);
        s = i + 1;
    }
    put(&o, "\x1b[J", 3);
    write_all(o.p, o.len);
    buf_free(&o);
}

int top_main(int argc, char **argv)
{
    static struct top tp;
    memset(&tp, 0, sizeof tp);
    admin_target_init(&tp.t, 5000);
    double interval = 1.0;
    bool once = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--once")) {
            once = true;
        } else if (!strcmp(a, "--admin") && i + 1 < argc) {
            tp.t.url = argv[++i];
        } else if (!strcmp(a, "--token") && i + 1 < argc) {
            tp.t.token = argv[++i];
        } else if (!strcmp(a, "--interval") && i + 1 < argc) {
            char *end = NULL;
            interval = strtod(argv[++i], &end);
            if (!end || *end || interval < 0.2 || interval > 60) {
                fprintf(stderr, "drover top: --interval wants seconds between 0.2 and 60\n");
                return 2;
            }
        } else {
            fprintf(stderr, "drover top: unknown option '%s' (see 'drover top --help')\n", a);
            return 2;
        }
    }
    char host[128];
    int port;
    if (admin_url_parse(tp.t.url, host, sizeof host, &port)) {
        fprintf(stderr, "drover top: the admin URL '%s' must look like http://HOST:PORT\n",
                tp.t.url);
        return 2;
    }
    struct buf f;
    if (once || !isatty(STDOUT_FILENO)) {
        /* one frame (two polls, so the rates mean something), plain text */
        buf_init(&f, 64u << 20);
        frame(&tp, &f, 0, 0);
        buf_reset(&f);
        struct timespec ts = {0, 300 * 1000 * 1000};
        nanosleep(&ts, NULL);
        bool ok = frame(&tp, &f, 0, 0);
        write_all(f.p, f.len);
        buf_free(&f);
        return ok ? 0 : 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    term_raw();
    write_all("\x1b[?1049h\x1b[?25l\x1b[2J", 18);
    while (!top_stop) {
        struct winsize ws = {0};
        int width = 0, height = 0;
        if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0) width = ws.ws_col, height = ws.ws_row;
        buf_init(&f, 64u << 20);
        (void)frame(&tp, &f, width, height);
        draw(&f);
        buf_free(&f);
        /* wait for the interval or a key */
        double until = mono_s() + interval;
        while (!top_stop) {
            double left = until - mono_s();
            if (left <= 0) break;
            struct pollfd pfd = {STDIN_FILENO, POLLIN, 0};
            int r = poll(&pfd, 1, (int)(left * 1000) + 1);
            if (r < 0 && errno != EINTR) break;
            if (r > 0) {
                char c[16];
                ssize_t n = read(STDIN_FILENO, c, sizeof c);
                if (n == 0) top_stop = 1; /* stdin closed: nobody can press q */
                for (ssize_t k = 0; k < n; k++)
                    if (c[k] == 'q' || c[k] == 'Q' || c[k] == 3) top_stop = 1;
            }
        }
    }
    write_all("\x1b[?25h\x1b[?1049l", 14);
    term_restore();
    return 0;
}
