/* agent_main — `drover agent`: flags and config, discovery, the state file, the listener, the
 * join loop, signals and the ready line:
 *   drover-agent ready listen=127.0.0.1:9300
 * SIGTERM/SIGINT stop accepting, let proxied requests and engine operations finish within the
 * grace period, then close everything and exit 0; a second signal exits at once. SIGHUP
 * re-reads the TLS files (listener certificate, key and client CA; the gateway's CA) for new
 * connections, keeping the previous ones when a file fails. The loop thread only. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/agent_discovery.h"
#include "base/log.h"
#include "base/mem.h"

extern char **environ;

enum { AGENT_MAX_SETS = 128 };

static void usage(FILE *f)
{
    fprintf(f,
            "usage: drover agent [options]\n"
            "\n"
            "The node agent: runs beside one inference engine, joins the gateway, reports the\n"
            "node's models and load, and passes inference through to the engine.\n"
            "\n"
            "  --config FILE          YAML config (see docs/agent.md)\n"
            "  --gateway URL          the gateway's client listener, e.g. http://10.0.0.1:8080\n"
            "                         (none: do not join; the secret comes from the state file)\n"
            "  --join-token TOKEN     the gateway's join token (or DROVER_AGENT_JOIN_TOKEN)\n"
            "  --engine KIND          llamacpp, ollama, vllm or openai (default llamacpp)\n"
            "  --engine-url URL       the engine's base URL (default per kind, on 127.0.0.1)\n"
            "  --name NAME            node name (default: the hostname)\n"
            "  --listen HOST:PORT     the agent's listener (default 127.0.0.1:9300; port 0 picks)\n"
            "  --advertise URL        the URL the gateway calls (default http(s)://<listen>)\n"
            "  --label KEY=VALUE      a label for placement (repeatable)\n"
            "  --state-file PATH      where the node secret is kept (default drover-agent.state)\n"
            "  --poll-interval DUR    join heartbeat until the gateway says otherwise (10s)\n"
            "  --nvidia-smi PROG      GPU probe program, or off (default nvidia-smi)\n"
            "  --tls-cert FILE        serve TLS with this certificate chain (and --tls-key)\n"
            "  --tls-key FILE         its private key\n"
            "  --tls-client-ca FILE   require a client certificate signed by these CAs (mTLS)\n"
            "  --gateway-ca-file FILE CAs for an https:// gateway (default: the system store)\n"
            "  --allow-plain-http     allow plain HTTP beyond loopback (listener, gateway URL)\n"
            "  --set KEY=VALUE        any config key, e.g. --set engine_timeout=2s\n"
            "  --log-level LEVEL      debug, info, warn, error\n"
            "  -h, --help             this help\n"
            "\n"
            "Every key is also read from DROVER_AGENT_<KEY>, e.g. DROVER_AGENT_JOIN_TOKEN.\n"
            "Precedence: file < environment < flags.\n");
}

static struct agent g_agent; /* lives for the process */

/* The listener's TLS context, or NULL (plain) without tls.cert. */
static int make_server_tls(const struct agent_config *c, struct tls_ctx **out, struct gw_error *err)
{
    *out = NULL;
    if (!agent_config_has_tls(c)) return 0;
    struct tls_server_config tc = {.cert_file = c->tls_cert,
                                   .key_file = c->tls_key,
                                   .min_version = c->tls_min_version,
                                   .client_ca_file = c->tls_client_ca};
    return tls_server_ctx_new(&tc, out, err);
}

/* The context for an https:// gateway, or NULL when the gateway is plain (or absent). */
static int make_client_tls(const struct agent_config *c, struct tls_ctx **out, struct gw_error *err)
{
    *out = NULL;
    if (!c->gateway || strncmp(c->gateway, "https://", 8) != 0) return 0;
    struct tls_client_config tc = {.ca_file = c->gateway_ca_file};
    return tls_client_ctx_new(&tc, out, err);
}

/* SIGHUP: the same files read again, as `drover serve` does (docs/tls.md "Certificate
 * reload"): new connections get the new contexts, open ones keep theirs. */
static void reload_tls(struct agent *a)
{
    struct gw_error err = {0};
    struct tls_ctx *t = NULL;
    bool listener = http_server_is_tls(a->srv);
    if (!listener && !a->gw_tls) {
        LOGI("sighup", "action=none note=\"no TLS: nothing to re-read\"");
        return;
    }
    if (listener && make_server_tls(&a->cfg, &t, &err)) {
        LOGE("tls_reload_failed", "side=listener reason=\"%s\" keeping=previous", err.msg);
    } else if (listener) {
        if (http_server_set_tls(a->srv, t) == 0)
            LOGI("tls_reloaded", "side=listener cert=%s client_ca=%s", a->cfg.tls_cert,
                 a->cfg.tls_client_ca ? a->cfg.tls_client_ca : "-");
        tls_ctx_unref(t);
    }
    if (!a->gw_tls) return;
    t = NULL;
    if (make_client_tls(&a->cfg, &t, &err)) {
        LOGE("tls_reload_failed", "side=gateway reason=\"%s\" keeping=previous", err.msg);
        return;
    }
    http_client_set_tls(a->client, t);
    tls_ctx_unref(t);
    LOGI("tls_reloaded", "side=gateway ca_file=%s",
         a->cfg.gateway_ca_file ? a->cfg.gateway_ca_file : "system");
}

static void on_gpus(int rc, const char *out, size_t len, void *ctx)
{
    struct agent *a = ctx;
    if (rc) {
        LOGD("gpu_refresh", "ok=0 reason=\"%s failed\"", a->cfg.nvidia_smi);
        return;
    }
    struct node_api_discovery *d = xmalloc(sizeof *d);
    *d = a->disc;
    struct gw_error err = {0};
    if (agent_discovery_parse_nvidia_smi(out, len, d, &err)) {
        LOGW("gpu_refresh", "ok=0 reason=\"%s\"", err.msg);
        xfree(d);
        return;
    }
    /* the CUDA version comes from the banner, read at start-up only */
    for (size_t i = 0; i < d->n_gpus; i++)
        for (size_t k = 0; k < a->disc.n_gpus; k++)
            if (a->disc.gpus[k].index == d->gpus[i].index)
                memcpy(d->gpus[i].cuda_version, a->disc.gpus[k].cuda_version,
                       sizeof d->gpus[i].cuda_version);
    if (agent_config_apply_discovery(&a->cfg, d, NULL) == 0) a->disc = *d;
    xfree(d);
}

static void on_gpu_timer(uv_timer_t *t)
{
    struct agent *a = t->data;
    if (!a->gpu || a->stopping) return;
    int rc = agent_gpu_probe_run(a->gpu, on_gpus, a);
    if (rc && rc != GW_E_STATE) LOGW("gpu_refresh", "ok=0 err=%s", gw_strerror(rc));
}

static void close_all(struct agent *a)
{
    agent_join_stop(a);
    agent_upgrade_stop(a);
    uv_close((uv_handle_t *)&a->gpu_timer, NULL);
    agent_gpu_probe_free(a->gpu);
    a->gpu = NULL;
    if (a->srv) http_server_close(a->srv, NULL, NULL);
    a->srv = NULL;
    if (a->client) http_client_free(a->client);
    a->client = NULL;
    uv_close((uv_handle_t *)&a->sigterm, NULL);
    uv_close((uv_handle_t *)&a->sigint, NULL);
    uv_close((uv_handle_t *)&a->sighup, NULL);
    uv_close((uv_handle_t *)&a->grace, NULL);
    uv_close((uv_handle_t *)&a->drain_check, NULL);
}

static void on_drain_check(uv_check_t *c)
{
    struct agent *a = c->data;
    if (a->pending == 0) {
        LOGI("shutdown", "reason=drained");
        uv_check_stop(c);
        uv_timer_stop(&a->grace);
        close_all(a);
    }
}

static void on_grace(uv_timer_t *t)
{
    struct agent *a = t->data;
    LOGW("shutdown", "reason=grace_expired pending=%u", a->pending);
    uv_check_stop(&a->drain_check);
    close_all(a);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct agent *a = h->data;
    if (signum == SIGHUP) {
        if (!a->stopping) reload_tls(a);
        return;
    }
    if (++a->term_count > 1) {
        LOGW("shutdown", "reason=second_signal");
        _exit(0);
    }
    LOGI("shutdown", "reason=signal signal=%d in_flight=%u pending=%u grace_ms=%llu", signum,
         a->in_flight, a->pending, (unsigned long long)a->cfg.shutdown_grace_ms);
    a->stopping = true;
    http_server_stop_accepting(a->srv);
    uv_timer_stop(&a->join_timer);
    agent_upgrade_stop(a); /* kills running checks; a listing under way is waited for */
    if (a->pending == 0) {
        close_all(a);
        return;
    }
    uv_timer_start(&a->grace, on_grace, a->cfg.shutdown_grace_ms, 0);
    uv_check_start(&a->drain_check, on_drain_check);
}

static int add_set(const char **sets, char **owned, size_t *n, const char *key, const char *val)
{
    if (*n >= AGENT_MAX_SETS) return -1;
    size_t len = strlen(key) + strlen(val) + 2;
    char *kv = xmalloc(len);
    snprintf(kv, len, "%s=%s", key, val);
    owned[*n] = kv;
    sets[(*n)++] = kv;
    return 0;
}

int agent_main(int argc, char **argv)
{
    struct agent *a = &g_agent;
    memset(a, 0, sizeof *a);
    const char *config_path = NULL;
    const char *sets[AGENT_MAX_SETS];
    char *owned[AGENT_MAX_SETS] = {0};
    size_t n_sets = 0;
    static const struct {
        const char *flag, *key;
    } flags[] = {
        {"--gateway", "gateway"},
        {"--join-token", "join_token"},
        {"--engine", "engine"},
        {"--engine-url", "engine_url"},
        {"--name", "name"},
        {"--listen", "listen"},
        {"--advertise", "advertise"},
        {"--label", "label"},
        {"--state-file", "state_file"},
        {"--poll-interval", "poll_interval"},
        {"--nvidia-smi", "nvidia_smi"},
        {"--tls-cert", "tls.cert"},
        {"--tls-key", "tls.key"},
        {"--tls-client-ca", "tls.client_ca"},
        {"--gateway-ca-file", "gateway_ca_file"},
        {"--allow-plain-http", "allow_plain_http"},
        {"--log-level", "log_level"},
        {"--set", NULL},
        {"--config", NULL},
    };
    int code = 2;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            usage(stdout);
            code = 0;
            goto out_sets;
        }
        char name[64];
        const char *val = NULL;
        const char *eq = strchr(arg, '=');
        if (strncmp(arg, "--", 2) == 0 && eq && (size_t)(eq - arg) < sizeof name) {
            snprintf(name, sizeof name, "%.*s", (int)(eq - arg), arg);
            val = eq + 1;
        } else {
            snprintf(name, sizeof name, "%s", arg);
        }
        size_t k = 0, nf = sizeof flags / sizeof flags[0];
        while (k < nf && strcmp(flags[k].flag, name) != 0) k++;
        if (k == nf) {
            fprintf(stderr, "drover agent: unknown option '%s' (see --help)\n", arg);
            goto out_sets;
        }
        if (!val && strcmp(name, "--allow-plain-http") == 0) val = "true"; /* a switch */
        if (!val) {
            if (i + 1 >= argc) {
                fprintf(stderr, "drover agent: %s needs a value (see --help)\n", name);
                goto out_sets;
            }
            val = argv[++i];
        }
        int rc = 0;
        if (strcmp(name, "--config") == 0)
            config_path = val;
        else if (strcmp(name, "--set") == 0)
            rc = n_sets < AGENT_MAX_SETS ? (sets[n_sets++] = val, 0) : -1;
        else
            rc = add_set(sets, owned, &n_sets, flags[k].key, val);
        if (rc) {
            fprintf(stderr, "drover agent: more than %d options\n", AGENT_MAX_SETS);
            goto out_sets;
        }
    }
    struct gw_error err = {0};
    if (agent_config_load(&a->cfg, config_path, environ, sets, n_sets, &err)) {
        fprintf(stderr, "drover agent: %s\n", err.msg);
        agent_config_free(&a->cfg);
        goto out_sets;
    }
    log_set_level(a->cfg.log_level);
    char host[128];
    int port;
    if (agent_config_split_hostport(a->cfg.listen, host, sizeof host, &port)) {
        fprintf(stderr, "drover agent: listen: '%s' is not HOST:PORT\n", a->cfg.listen);
        goto out_cfg;
    }
    a->engine.kind = a->cfg.engine;
    snprintf(a->engine.url, sizeof a->engine.url, "%s", a->cfg.engine_url);
    if (agent_engine_parse_url(a->cfg.engine_url, a->engine.host, sizeof a->engine.host,
                               &a->engine.port, &err)) {
        fprintf(stderr, "drover agent: engine_url: %s\n", err.msg);
        goto out_cfg;
    }
    a->engine.api_key = a->cfg.engine_api_key;
    a->engine.timeout_ms = a->cfg.engine_timeout_ms;
    a->engine.load_timeout_ms = a->cfg.load_timeout_ms;

    /* the secret from an earlier join */
    char secret[NODE_API_SECRET_HEX + 1];
    int rc = agent_state_load(a->cfg.state_file, secret, &err);
    if (rc == 0) {
        agent_set_secret(a, secret);
    } else if (rc != GW_E_NOTFOUND) {
        fprintf(stderr, "drover agent: state_file: %s\n", err.msg);
        goto out_cfg;
    }

    node_api_discovery_init(&a->disc);
    agent_discovery_collect(&a->disc, a->cfg.nvidia_smi);
    if (agent_config_apply_discovery(&a->cfg, &a->disc, &err)) {
        fprintf(stderr, "drover agent: discovery: %s\n", err.msg);
        goto out_cfg;
    }
    agent_ops_fill_discovery(a);

    struct tls_ctx *srv_tls = NULL, *gw_tls = NULL;
    if (make_server_tls(&a->cfg, &srv_tls, &err) || make_client_tls(&a->cfg, &gw_tls, &err)) {
        fprintf(stderr, "drover agent: %s\n", err.msg);
        tls_ctx_unref(srv_tls);
        goto out_cfg;
    }

    signal(SIGPIPE, SIG_IGN);
    a->loop = uv_default_loop();
    struct http_client_config cc;
    http_client_config_defaults(&cc);
    cc.tls = gw_tls; /* only the join uses it: the engine is plain http */
    rc = http_client_new(a->loop, &cc, &a->client);
    tls_ctx_unref(gw_tls); /* the client holds its own reference */
    if (rc) {
        fprintf(stderr, "drover agent: cannot create the HTTP client\n");
        tls_ctx_unref(srv_tls);
        goto out_cfg;
    }
    a->engine.client = a->client;
    struct http_server_config hc;
    http_server_config_defaults(&hc);
    hc.host = host;
    hc.port = port;
    hc.server_name = "drover-agent";
    hc.tls = srv_tls;
    rc = http_server_start(a->loop, &hc, agent_api_handle, a, &a->srv, &err);
    tls_ctx_unref(srv_tls); /* the server holds its own reference */
    if (rc) {
        fprintf(stderr, "drover agent: cannot listen on %s: %s\n", a->cfg.listen, err.msg);
        http_client_free(a->client);
        uv_run(a->loop, UV_RUN_NOWAIT);
        goto out_cfg;
    }
    snprintf(a->listen_addr, sizeof a->listen_addr, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host,
             http_server_port(a->srv));
    if (!a->cfg.advertise && (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0))
        LOGW("advertise",
             "listen=%s note=\"listening on every address: set --advertise to "
             "the URL the gateway should call\"",
             a->listen_addr);
    agent_config_advertise(&a->cfg, a->listen_addr, a->advertise, sizeof a->advertise);
    if (agent_join_start(a, &err)) {
        fprintf(stderr, "drover agent: %s\n", err.msg);
        http_server_close(a->srv, NULL, NULL);
        http_client_free(a->client);
        agent_join_stop(a);
        uv_run(a->loop, UV_RUN_DEFAULT);
        goto out_cfg;
    }

    uv_signal_init(a->loop, &a->sigterm);
    uv_signal_init(a->loop, &a->sigint);
    uv_signal_init(a->loop, &a->sighup);
    a->sigterm.data = a->sigint.data = a->sighup.data = a;
    uv_signal_start(&a->sigterm, on_signal, SIGTERM);
    uv_signal_start(&a->sigint, on_signal, SIGINT);
    uv_signal_start(&a->sighup, on_signal, SIGHUP);
    uv_timer_init(a->loop, &a->gpu_timer);
    a->gpu_timer.data = a;
    a->gpu = agent_gpu_probe_new(a->loop, a->cfg.nvidia_smi);
    if (a->gpu && a->disc.n_gpus > 0)
        uv_timer_start(&a->gpu_timer, on_gpu_timer, a->cfg.discovery_interval_ms,
                       a->cfg.discovery_interval_ms);
    uv_timer_init(a->loop, &a->grace);
    a->grace.data = a;
    uv_check_init(a->loop, &a->drain_check);
    a->drain_check.data = a;
    agent_upgrade_start(a);

    LOGI("start",
         "listen=%s advertise=%s tls=%s client_cert=%s name=%s engine=%s engine_url=%s "
         "gateway=%s has_secret=%d gpus=%zu",
         a->listen_addr, a->advertise, http_server_is_tls(a->srv) ? "on" : "off",
         a->cfg.tls_client_ca ? "required" : "off", a->cfg.name, node_kind_name(a->cfg.engine),
         a->cfg.engine_url, a->cfg.gateway ? a->cfg.gateway : "-", a->secret[0] != 0,
         a->disc.n_gpus);
    printf("drover-agent ready listen=%s\n", a->listen_addr);
    fflush(stdout);

    uv_run(a->loop, UV_RUN_DEFAULT);
    uv_loop_close(a->loop);
    LOGI("stopped", "code=0");
    code = 0;
out_cfg:
    agent_config_free(&a->cfg);
out_sets:
    for (size_t i = 0; i < n_sets; i++) xfree(owned[i]);
    return code;
}
