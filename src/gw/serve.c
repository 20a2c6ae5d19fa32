/* serve — `drover serve`: loads the config, builds the registry from the static nodes,
 * starts the client and admin listeners, the health probes and the signal handlers, and runs
 * the loop. SIGTERM stops accepting, lets in-flight requests finish within the grace period
 * and exits 0; a second SIGTERM exits at once. SIGHUP reloads the config file, keeping the old
 * one when the new one is invalid or would fail open (drop a token or every static node without
 * the file's explicit opt-out; gw_config_reload_check), and saying why. Readiness is one line on
 * stdout: drover-serve ready listen=127.0.0.1:8080 admin=127.0.0.1:8081 The loop thread only. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "base/log.h"
#include "base/mem.h"
#include "gw/serve.h"
#include "gw/gw.h"
#include "gw/prefix_cache.h"
#include "gw/proxy.h"
#include "gw/admin.h"
#include "gw/api.h"
#include "gw/events.h"
#include "gw/health.h"
#include "gw/keys.h"
#include "gw/limits.h"
#include "gw/usage.h"
#include "gw/ui.h"
#include "gw/nodes.h"
#include "gw/models.h"
#include "gw/ops.h"
#include "gw/sync.h"

extern char **environ;

enum {
    SERVE_MAX_SETS = 128,
    SERVE_FD_MARGIN = 128, /* listeners, store, signals, logs, health probes in flight */
};

struct serve {
    struct gw g;
    int argc; /* the command line, for --node on every reload */
    char **argv;
    const char *config_path;
    const char *sets[SERVE_MAX_SETS];
    char *owned_sets[SERVE_MAX_SETS];
    size_t n_sets;
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t grace;
    uv_check_t drain_check;
    unsigned term_count;
    int exit_code;
};

static void usage(FILE *f)
{
    fprintf(f, "usage: drover serve [options]\n"
               "\n"
               "The gateway: one OpenAI-compatible endpoint in front of the nodes.\n"
               "\n"
               "  --config FILE         YAML config (see docs/config.md)\n"
               "  --listen HOST:PORT    client API (default 127.0.0.1:8080; port 0 picks one)\n"
               "  --admin-listen HOST:PORT  admin API and /metrics (default 127.0.0.1:8081)\n"
               "  --node NAME=URL[,KIND]    add a static node (repeatable)\n"
               "  --set KEY=VALUE       override any config key, e.g. --set health.interval=2s\n"
               "  --log-level LEVEL     debug, info, warn, error\n"
               "  --print-config        print the effective config and exit\n"
               "  -h, --help            this help\n"
               "\n"
               "Every key is also read from DROVER_<KEY> (dots as underscores), e.g.\n"
               "DROVER_HEALTH_INTERVAL=2s. Precedence: file < environment < flags.\n");
}

static void add_set(struct serve *s, const char *key, const char *val)
{
    if (s->n_sets >= SERVE_MAX_SETS) return;
    size_t n = strlen(key) + strlen(val) + 2;
    char *kv = xmalloc(n);
    snprintf(kv, n, "%s=%s", key, val);
    s->owned_sets[s->n_sets] = kv;
    s->sets[s->n_sets++] = kv;
}

/* The listener's TLS context from cert/key files, or NULL (plain) when cert is not set. */
static int make_server_tls(const char *cert, const char *key, const char *minv,
                           struct tls_ctx **out, struct gw_error *err)
{
    *out = NULL;
    if (!cert) return 0;
    struct tls_server_config tc = {.cert_file = cert, .key_file = key, .min_version = minv};
    return tls_server_ctx_new(&tc, out, err);
}

static int make_client_tls(const struct gw_config *cfg, struct tls_ctx **out, struct gw_error *err)
{
    struct tls_client_config tc = {
        .ca_file = cfg->upstream_ca_file,
        .cert_file = cfg->upstream_client_cert,
        .key_file = cfg->upstream_client_key,
    };
    return tls_client_ctx_new(&tc, out, err);
}

/* Re-reads every certificate, key and CA file (SIGHUP): new connections use them, open ones
 * keep what they started with. A file that fails keeps the previous context for that side.
 * upstream.allow_plain_secrets takes effect for requests started from now on. */
static void reload_tls(struct gw *g, const struct gw_config *next)
{
    struct {
        struct http_server *srv;
        const char *name, *cert, *key, *minv;
    } sides[] = {
        {g->api_srv, "tls", next->tls_cert, next->tls_key, next->tls_min_version},
        {g->admin_srv, "admin_tls", next->admin_tls_cert, next->admin_tls_key,
         next->admin_tls_min_version},
    };
    for (size_t i = 0; i < 2; i++) {
        if (!sides[i].srv) continue;
        if (http_server_is_tls(sides[i].srv) != (sides[i].cert != NULL)) {
            LOGW("config_reload", "note=\"%s: turning TLS on or off takes a restart\"",
                 sides[i].name);
            continue;
        }
        if (!sides[i].cert) continue;
        struct tls_ctx *t = NULL;
        struct gw_error err = {0};
        if (make_server_tls(sides[i].cert, sides[i].key, sides[i].minv, &t, &err)) {
            LOGE("tls_reload_failed", "side=%s reason=\"%s\" keeping=previous", sides[i].name,
                 err.msg);
            continue;
        }
        if (http_server_set_tls(sides[i].srv, t) == 0)
            LOGI("tls_reloaded", "side=%s cert=%s", sides[i].name, sides[i].cert);
        tls_ctx_unref(t);
    }
    http_client_set_refuse_plain_auth(g->client, !next->upstream_allow_plain_secrets);
    struct tls_ctx *ct = NULL;
    struct gw_error err = {0};
    if (make_client_tls(next, &ct, &err)) {
        LOGE("tls_reload_failed", "side=upstream reason=\"%s\" keeping=previous", err.msg);
        return;
    }
    http_client_set_tls(g->client, ct);
    tls_ctx_unref(ct);
}

static int start_listener(struct gw *g, const char *addr, http_handler_fn *fn, struct tls_ctx *tls,
                          struct http_server **out, char *bound, size_t bound_cap)
{
    char host[128];
    int port;
    if (gw_parse_hostport(addr, host, sizeof host, &port)) {
        fprintf(stderr, "drover serve: bad listen address '%s'\n", addr);
        return -1;
    }
    struct http_server_config hc;
    http_server_config_defaults(&hc);
    hc.host = host;
    hc.port = port;
    hc.max_header_bytes = g->cfg.max_header_bytes;
    hc.max_body_bytes = g->cfg.max_body_bytes;
    hc.header_timeout_ms = g->cfg.header_timeout_ms;
    hc.body_timeout_ms = g->cfg.body_timeout_ms;
    hc.idle_timeout_ms = g->cfg.client_idle_timeout_ms;
    hc.max_connections = (unsigned)g->cfg.max_connections;
    hc.server_name = "drover";
    hc.tls = tls;
    struct gw_error err = {0};
    if (http_server_start(g->loop, &hc, fn, g, out, &err)) {
        fprintf(stderr, "drover serve: cannot listen on %s: %s\n", addr, err.msg);
        return -1;
    }
    snprintf(bound, bound_cap, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host,
             http_server_port(*out));
    return 0;
}

/* Adds the --node NAME=URL[,KIND] flags to cfg as static nodes (at start and on every reload:
 * flags outlive the file). Returns 0 or GW_E_INVALID with err saying which flag. */
static int add_flag_nodes(struct gw_config *cfg, int argc, char **argv, struct gw_error *err)
{
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--node") != 0) continue;
        const char *spec = argv[++i];
        const char *eq = strchr(spec, '=');
        if (!eq || eq == spec)
            return gw_error_set(err, GW_E_INVALID, "--node %s: expected NAME=URL[,KIND]", spec);
        enum node_kind kind = NODE_KIND_OPENAI;
        const char *comma = strchr(eq + 1, ',');
        if (comma && node_kind_parse(comma + 1, &kind))
            return gw_error_set(err, GW_E_INVALID, "--node %s: unknown kind '%s'", spec, comma + 1);
        cfg->nodes = xrealloc(cfg->nodes, (cfg->n_nodes + 1) * sizeof *cfg->nodes);
        struct gw_node_config *nc = &cfg->nodes[cfg->n_nodes++];
        memset(nc, 0, sizeof *nc);
        nc->name = xstrndup(spec, (size_t)(eq - spec));
        nc->url = comma ? xstrndup(eq + 1, (size_t)(comma - eq - 1)) : xstrdup(eq + 1);
        nc->kind = kind;
    }
    return 0;
}

/* Raises RLIMIT_NOFILE's soft limit to the hard one: every client and upstream connection is a
 * descriptor, and the default soft limit (often 1024) is far below limits.max_connections. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    if (rl.rlim_cur == rl.rlim_max) return;
    rlim_t was = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
        LOGW("nofile_limit", "soft=%llu hard=%llu reason=\"cannot raise the soft limit: %s\"",
             (unsigned long long)was, (unsigned long long)rl.rlim_max, strerror(errno));
        return;
    }
    LOGI("nofile_limit", "soft=%llu raised_from=%llu", (unsigned long long)rl.rlim_cur,
         (unsigned long long)was);
}

/* Warns when the descriptor limit is below what the config may need: every client connection
 * (limits.max_connections), every pooled upstream connection (nodes x
 * upstream.max_idle_per_node) and a margin. */
static void check_nofile(const struct gw *g)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return;
    size_t nodes = 0;
    for (size_t i = 0; i < g->reg.n; i++)
        if (g->reg.nodes[i]->admin != ADMIN_REMOVED) nodes++;
    unsigned long long need = (unsigned long long)g->cfg.max_connections +
                              (unsigned long long)nodes * g->cfg.max_idle_per_node +
                              SERVE_FD_MARGIN;
    if ((unsigned long long)rl.rlim_cur < need)
        LOGW("nofile_limit",
             "soft=%llu hard=%llu need=%llu max_connections=%llu nodes=%zu max_idle_per_node=%llu "
             "reason=\"the descriptor limit is below what the config may need; raise the hard "
             "limit (LimitNOFILE=, ulimit -Hn) or lower limits.max_connections\"",
             (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max, need,
             (unsigned long long)g->cfg.max_connections, nodes,
             (unsigned long long)g->cfg.max_idle_per_node);
}

static void add_nodes(struct gw *g, const struct gw_config *cfg)
{
    for (size_t i = 0; i < cfg->n_nodes; i++) {
        const struct gw_node_config *nc = &cfg->nodes[i];
        struct node *n = registry_find(&g->reg, strv_from_cstr(nc->name));
        if (n && !n->from_config) {
            LOGE("node_add_failed", "node=%s reason=\"the name belongs to a joined node\"",
                 nc->name);
            continue;
        }
        if (!n) {
            struct gw_error err = {0};
            if (registry_add(&g->reg, nc->name, nc->url, nc->kind, nc->api_key, &n, &err)) {
                LOGE("node_add_failed", "node=%s reason=\"%s\"", nc->name, err.msg);
                continue;
            }
            n->from_config = true;
            n->dirty = true;
            LOGI("node_added", "node=%s url=%s kind=%s", n->name, n->url, node_kind_name(n->kind));
        } else {
            if (strcmp(n->url, nc->url) != 0) {
                /* A new address is a new node as far as liveness goes. */
                if (registry_set_url(n, nc->url) == 0)
                    registry_reset_liveness(&g->reg, n, "new url in the config file");
            }
            n->kind = nc->kind;
            xfree(n->api_key);
            n->api_key = nc->api_key ? xstrdup(nc->api_key) : NULL;
            if (n->admin == ADMIN_REMOVED)
                registry_set_admin(&g->reg, n, ADMIN_APPROVED, "listed in the config file again");
        }
        registry_clear_labels(n); /* the file owns a static node's labels */
        for (size_t l = 0; l < nc->n_labels; l++)
            registry_set_label(n, nc->labels[l].key, nc->labels[l].value);
        health_attach(g, n);
        health_probe_now(g, n);
    }
}

/* A generated join token is shown once, on stdout (never in the log, which is shipped and
 * kept); afterwards only its file names it. */
static void show_join_token(const char *token, const char *where)
{
    printf("drover serve: new join token (shown once; stored in %s): %s\n", where, token);
    fflush(stdout);
    LOGI("join_token_generated", "file=\"%s\"", where);
}

static void reload(struct serve *s)
{
    struct gw *g = &s->g;
    struct gw_config next;
    struct gw_error err = {0};
    if (gw_config_load(&next, s->config_path, environ, s->sets, s->n_sets, &err) ||
        add_flag_nodes(&next, s->argc, s->argv, &err)) {
        LOGE("config_reload_failed", "reason=\"%s\" keeping=previous", err.msg);
        gw_config_free(&next);
        return;
    }
    char *gen;
    const char *where;
    if (gw_config_join_token_resolve(&next, &gen, &where, &err)) {
        LOGE("config_reload_failed", "reason=\"%s\" keeping=previous", err.msg);
        gw_config_free(&next);
        return;
    }
    if (gen) show_join_token(gen, where);
    /* fail closed: a reload never drops auth or the whole fleet by accident (DESIGN §3) */
    if (gw_config_reload_check(&g->cfg, &next, &err)) {
        LOGE("config_reload_refused", "reason=\"%s\" keeping=previous", err.msg);
        gw_config_free(&next);
        return;
    }
    if (g->cfg.admin_token && !next.admin_token)
        LOGW("config_reload",
             "note=\"admin_token removed: the admin API is open (allow_no_auth)\"");
    if (g->cfg.api_key && !next.api_key)
        LOGW("config_reload", "note=\"api_key removed: the client API is open (allow_no_auth)\"");
    if (g->cfg.n_nodes && !next.n_nodes)
        LOGW("config_reload", "note=\"every static node removed (allow_empty_fleet)\"");
    if (strcmp(next.listen, g->cfg.listen) || strcmp(next.admin_listen, g->cfg.admin_listen))
        LOGW("config_reload", "note=\"listen addresses change only on restart\"");
    reload_tls(g, &next);
    /* nodes that left the file are removed (their in-flight requests finish) */
    for (size_t i = 0; i < g->reg.n; i++) {
        struct node *n = g->reg.nodes[i];
        if (!n->from_config) continue; /* joined nodes are not the file's */
        bool keep = false;
        for (size_t j = 0; j < next.n_nodes && !keep; j++)
            keep = strcmp(next.nodes[j].name, n->name) == 0;
        if (!keep && n->admin != ADMIN_REMOVED) {
            registry_tombstone(n);
            if (g->store) store_delete_node(g->store, n->name, NULL, NULL);
            n->dirty = false;
            LOGI("node_removed", "node=%s by=reload", n->name);
        }
    }
    /* keep the listeners' addresses; take everything else */
    char *listen = g->cfg.listen, *admin = g->cfg.admin_listen;
    g->cfg.listen = next.listen;
    g->cfg.admin_listen = next.admin_listen;
    next.listen = listen;
    next.admin_listen = admin;
    struct gw_config old = g->cfg;
    g->cfg = next;
    char *tmp_l = g->cfg.listen, *tmp_a = g->cfg.admin_listen;
    g->cfg.listen = old.listen;
    g->cfg.admin_listen = old.admin_listen;
    old.listen = tmp_l;
    old.admin_listen = tmp_a;
    gw_config_free(&old);
    g->reg.cfg = g->cfg.reg;
    log_set_level(g->cfg.log_level);
    add_nodes(g, &g->cfg);
    models_apply_config(g);
    LOGI("config_reloaded", "nodes=%zu models=%zu", g->cfg.n_nodes, g->cfg.n_models);
    check_nofile(g);
}

static void close_all(struct serve *s)
{
    struct gw *g = &s->g;
    limits_stop(g); /* its last round gives back what this gateway holds */
    sync_stop(g);
    health_stop(g);
    events_stop(g);
    ui_stop(g);
    proxy_stop(g);
    ops_stop(g);
    models_stop(g);
    nodes_flush_stop(g);
    usage_stop(g); /* the last usage batch goes to the store before it closes */
    if (g->api_srv) http_server_close(g->api_srv, NULL, NULL);
    if (g->admin_srv) http_server_close(g->admin_srv, NULL, NULL);
    g->api_srv = g->admin_srv = NULL;
    if (g->client) http_client_free(g->client);
    g->client = NULL;
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sighup, NULL);
    uv_close((uv_handle_t *)&s->grace, NULL);
    uv_close((uv_handle_t *)&s->drain_check, NULL);
}

static void on_drain_check(uv_check_t *c)
{
    struct serve *s = c->data;
    if (s->g.active_requests == 0) {
        LOGI("shutdown", "reason=drained");
        uv_check_stop(c);
        close_all(s);
    }
}

static void on_grace(uv_timer_t *t)
{
    struct serve *s = t->data;
    LOGW("shutdown", "reason=grace_expired in_flight=%u", s->g.active_requests);
    uv_check_stop(&s->drain_check);
    close_all(s);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct serve *s = h->data;
    if (signum == SIGHUP) {
        LOGI("sighup", "action=reload");
        reload(s);
        return;
    }
    if (++s->term_count > 1) {
        LOGW("shutdown", "reason=second_signal");
        _exit(0);
    }
    LOGI("shutdown", "reason=signal signal=%d in_flight=%u grace_ms=%llu", signum,
         s->g.active_requests, (unsigned long long)s->g.cfg.shutdown_grace_ms);
    s->g.stopping = true;
    http_server_stop_accepting(s->g.api_srv);
    http_server_stop_accepting(s->g.admin_srv);
    if (s->g.active_requests == 0) {
        LOGI("shutdown", "reason=idle");
        close_all(s);
        return;
    }
    uv_timer_start(&s->grace, on_grace, s->g.cfg.shutdown_grace_ms, 0);
    uv_check_start(&s->drain_check, on_drain_check);
}

static void print_line(const char *line, void *ctx)
{
    (void)ctx;
    printf("%s\n", line);
}

int serve_main(int argc, char **argv)
{
    static struct serve s; /* lives for the process */
    memset(&s, 0, sizeof s);
    bool print_config = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--print-config") == 0) {
            print_config = true;
            continue;
        }
        static const char *const valued[] = {"--config",    "--listen", "--admin-listen",
                                             "--log-level", "--set",    "--node"};
        bool known = false;
        for (size_t k = 0; k < sizeof valued / sizeof valued[0]; k++)
            if (strcmp(a, valued[k]) == 0) known = true;
        if (!known) {
            fprintf(stderr, "drover serve: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        if (!v) {
            fprintf(stderr, "drover serve: %s needs a value (see --help)\n", a);
            return 2;
        }
        i++;
        if (strcmp(a, "--config") == 0)
            s.config_path = v;
        else if (strcmp(a, "--listen") == 0)
            add_set(&s, "listen", v);
        else if (strcmp(a, "--admin-listen") == 0)
            add_set(&s, "admin_listen", v);
        else if (strcmp(a, "--log-level") == 0)
            add_set(&s, "log_level", v);
        else if (strcmp(a, "--set") == 0) {
            if (s.n_sets == SERVE_MAX_SETS) {
                fprintf(stderr, "drover serve: more than %d --set options\n", SERVE_MAX_SETS);
                return 2;
            }
            s.sets[s.n_sets++] = v;
        } else if (strcmp(a, "--node") == 0) {
            /* handled after the config is loaded */
            continue;
        } else {
            fprintf(stderr, "drover serve: unknown option '%s' (see --help)\n", a);
            return 2;
        }
    }
    struct gw *g = &s.g;
    struct gw_error err = {0};
    if (gw_config_load(&g->cfg, s.config_path, environ, s.sets, s.n_sets, &err)) {
        fprintf(stderr, "drover serve: %s\n", err.msg);
        gw_config_free(&g->cfg);
        return 2;
    }
    s.argc = argc;
    s.argv = argv;
    if (add_flag_nodes(&g->cfg, argc, argv, &err)) {
        fprintf(stderr, "drover serve: %s\n", err.msg);
        gw_config_free(&g->cfg);
        return 2;
    }
    if (print_config) {
        gw_config_dump(&g->cfg, print_line, NULL);
        for (size_t i = 0; i < g->cfg.n_nodes; i++)
            printf("node = %s %s %s\n", g->cfg.nodes[i].name, g->cfg.nodes[i].url,
                   node_kind_name(g->cfg.nodes[i].kind));
        gw_config_free(&g->cfg);
        return 0;
    }
    char *join_gen;
    const char *join_where;
    if (gw_config_exposure_check(&g->cfg, NULL, NULL, &err) ||
        gw_config_join_token_resolve(&g->cfg, &join_gen, &join_where, &err)) {
        fprintf(stderr, "drover serve: %s\n", err.msg);
        gw_config_free(&g->cfg);
        return 2;
    }
    log_set_level(g->cfg.log_level);
    /* shown at once: a start that fails later has stored it already (the file keeps it) */
    if (join_gen)
        show_join_token(join_gen, join_where);
    else if (g->cfg.join_token_from)
        LOGI("join_token", "file=\"%s\"", g->cfg.join_token_from);
    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    srand((unsigned)(uv_hrtime() ^ (uint64_t)getpid()));

    g->loop = uv_default_loop();
    g->started_ms = uv_now(g->loop);
    registry_init(&g->reg, &g->cfg.reg);
    metrics_init(&g->metrics);
    struct tls_ctx *api_tls = NULL, *admin_tls = NULL, *up_tls = NULL;
    if (make_server_tls(g->cfg.tls_cert, g->cfg.tls_key, g->cfg.tls_min_version, &api_tls, &err) ||
        make_server_tls(g->cfg.admin_tls_cert, g->cfg.admin_tls_key, g->cfg.admin_tls_min_version,
                        &admin_tls, &err) ||
        make_client_tls(&g->cfg, &up_tls, &err)) {
        fprintf(stderr, "drover serve: %s\n", err.msg);
        tls_ctx_unref(api_tls);
        tls_ctx_unref(admin_tls);
        return 2;
    }
    struct http_client_config cc;
    http_client_config_defaults(&cc);
    cc.max_idle_per_origin = (unsigned)g->cfg.max_idle_per_node;
    cc.tls = up_tls;
    cc.refuse_plain_auth = !g->cfg.upstream_allow_plain_secrets; /* DESIGN §10 */
    int crc = http_client_new(g->loop, &cc, &g->client);
    tls_ctx_unref(up_tls); /* the client holds its own reference */
    if (crc) {
        fprintf(stderr, "drover serve: cannot create the upstream client\n");
        return 1;
    }
    char api_addr[160], admin_addr[160];
    int lrc = start_listener(g, g->cfg.listen, api_handle, api_tls, &g->api_srv, api_addr,
                             sizeof api_addr);
    if (!lrc)
        lrc = start_listener(g, g->cfg.admin_listen, admin_handle, admin_tls, &g->admin_srv,
                             admin_addr, sizeof admin_addr);
    tls_ctx_unref(api_tls); /* the servers hold their own references */
    tls_ctx_unref(admin_tls);
    if (lrc) return 1;
    bool is_pg = g->cfg.store_engine && strcmp(g->cfg.store_engine, "postgres") == 0;
    sync_make_origin(g);
    struct store_config sc = {
        .origin = g->origin,
        .engine = is_pg ? STORE_ENGINE_POSTGRES : STORE_ENGINE_SQLITE,
        .path = g->cfg.store_path ? g->cfg.store_path : ":memory:",
        .busy_timeout_ms = 5000,
        .url = g->cfg.store_url,
    };
    if (store_open(g->loop, &sc, &g->store, &err)) {
        fprintf(stderr, "drover serve: store: %s\n", err.msg);
        return 1;
    }
    if (nodes_load(g, &err)) {
        fprintf(stderr, "drover serve: %s\n", err.msg);
        store_close(g->store);
        return 2;
    }
    if (models_load(g, &err)) {
        fprintf(stderr, "drover serve: catalogue: %s\n", err.msg);
        store_close(g->store);
        return 2;
    }
    if (keys_open(g, &err)) {
        fprintf(stderr, "drover serve: keys: %s\n", err.msg);
        store_close(g->store);
        return 2;
    }
    (void)usage_start(g);
    models_start(g);
    if (ops_start(g, &err)) {
        fprintf(stderr, "drover serve: operations: %s\n", err.msg);
        store_close(g->store);
        return 2;
    }
    if (sync_start(g, &err)) {
        fprintf(stderr, "drover serve: %s\n", err.msg);
        store_close(g->store);
        return 2;
    }
    if (limits_start(g)) {
        fprintf(stderr, "drover serve: limits\n");
        store_close(g->store);
        return 2;
    }
    check_nofile(g);
    nodes_flush_dirty(g); /* static nodes' rows before serving */
    nodes_flush_start(g);
    health_start(g);
    events_start(g);
    ui_start(g);

    uv_signal_init(g->loop, &s.sigterm);
    uv_signal_init(g->loop, &s.sigint);
    uv_signal_init(g->loop, &s.sighup);
    s.sigterm.data = s.sigint.data = s.sighup.data = &s;
    uv_signal_start(&s.sigterm, on_signal, SIGTERM);
    uv_signal_start(&s.sigint, on_signal, SIGINT);
    uv_signal_start(&s.sighup, on_signal, SIGHUP);
    uv_timer_init(g->loop, &s.grace);
    s.grace.data = &s;
    uv_check_init(g->loop, &s.drain_check);
    s.drain_check.data = &s;

    LOGI("start", "listen=%s admin=%s tls=%s admin_tls=%s nodes=%zu config=%s store=%s", api_addr,
         admin_addr, g->cfg.tls_cert ? "on" : "off", g->cfg.admin_tls_cert ? "on" : "off", g->reg.n,
         s.config_path ? s.config_path : "-", is_pg ? "postgres" : sc.path);
    printf("drover-serve ready listen=%s admin=%s\n", api_addr, admin_addr);
    fflush(stdout);

    uv_run(g->loop, UV_RUN_DEFAULT);
    store_close(g->store); /* runs every queued write and its completion */
    g->store = NULL;
    sync_free(g);
    uv_run(g->loop, UV_RUN_NOWAIT);
    uv_loop_close(g->loop);
    keys_close(g);
    registry_free(&g->reg);
    catalogue_free(&g->cat);
    proxy_free_spares(g);
    prefix_cache_free(g->prefix); /* the cache_aware policy's prefix table */
    g->prefix = NULL;
    metrics_free(&g->metrics);
    gw_config_free(&g->cfg);
    for (size_t i = 0; i < s.n_sets; i++) xfree(s.owned_sets[i]);
    LOGI("stopped", "code=0");
    return s.exit_code;
}
