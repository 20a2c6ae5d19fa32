/* sim_main — `drover sim`: parses the config, starts K virtual nodes (one http_server each)
 * on consecutive ports of one loop, prints the readiness line once every listener is up, and
 * stops on SIGTERM/SIGINT (servers closed, in-flight requests aborted, exit 0; a second
 * signal exits at once). Main thread, which is the loop thread. */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "sim/sim.h"
#include "sim/sim_config.h"
#include "sim/sim_node.h"
#include "sim/sim_text.h"

enum { SIM_PORT_ATTEMPTS = 40, SIM_FDS_PER_NODE = 8, SIM_FDS_SPARE = 256 };

struct sim_proc {
    struct sim sim;
    uv_signal_t sig_term, sig_int;
    unsigned signals;
    uint64_t port_rng; /* differs per process, unlike the fault dice */
};

static void raise_nofile(unsigned nodes)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    rlim_t want = (rlim_t)nodes * SIM_FDS_PER_NODE + SIM_FDS_SPARE;
    if (rl.rlim_cur >= want || rl.rlim_cur == rl.rlim_max) return;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        LOGW("sim_nofile", "msg=\"cannot raise the open file limit\" errno=%d", errno);
}

static int host_addr(const char *host, int port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0) return 0;
    return uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss);
}

static socklen_t addr_len(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
}

static void set_port(struct sockaddr_storage *ss, int port)
{
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
}

/* Binds a throwaway socket to host:port; returns the bound port or -1. */
static int probe(struct sockaddr_storage *ss, int port)
{
    int fd = socket(ss->ss_family, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    int on = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    set_port(ss, port);
    int got = -1;
    if (bind(fd, (struct sockaddr *)ss, addr_len(ss)) == 0) {
        struct sockaddr_storage b;
        socklen_t len = sizeof b;
        if (getsockname(fd, (struct sockaddr *)&b, &len) == 0)
            got = b.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&b)->sin_port)
                                         : ntohs(((struct sockaddr_in6 *)&b)->sin6_port);
    }
    close(fd);
    return got;
}

/* A base port with `nodes` consecutive free ports, or -1. */
static int find_base(const char *host, unsigned nodes, uint64_t *rng, int attempt)
{
    struct sockaddr_storage ss;
    if (host_addr(host, 0, &ss)) return -1;
    int base = attempt == 0 ? probe(&ss, 0) : -1;
    if (base < 0 || base + (int)nodes - 1 > 65535) {
        unsigned span = 60000 - 20000 - nodes;
        base = 20000 + (int)(sim_text_rand(rng) % (span ? span : 1));
    }
    for (unsigned i = 0; i < nodes; i++)
        if (probe(&ss, base + (int)i) != base + (int)i) return -1;
    return base;
}

static int start_nodes(struct sim *sim, int base, struct gw_error *err)
{
    struct sim_config *c = sim->cfg;
    for (unsigned i = 0; i < sim->n_nodes; i++) {
        struct http_server_config hc;
        http_server_config_defaults(&hc);
        hc.host = c->host;
        hc.port = base + (int)i;
        hc.max_header_bytes = c->max_header_bytes;
        hc.max_body_bytes = c->max_body_bytes;
        hc.header_timeout_ms = c->header_timeout_ms;
        hc.body_timeout_ms = c->body_timeout_ms;
        hc.idle_timeout_ms = c->idle_timeout_ms;
        hc.max_connections = c->max_connections;
        hc.server_name = "drover-sim";
        struct sim_node *n = &sim->nodes[i];
        int rc = http_server_start(sim->loop, &hc, sim_api_handle, n, &n->server, err);
        if (rc) return rc;
        n->port = http_server_port(n->server);
    }
    return 0;
}

static void close_servers(struct sim *sim)
{
    for (unsigned i = 0; i < sim->n_nodes; i++) {
        if (sim->nodes[i].server) http_server_close(sim->nodes[i].server, NULL, NULL);
        sim->nodes[i].server = NULL;
    }
}

static int write_port_file(const struct sim *sim, const char *path, struct gw_error *err)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) return gw_error_set(err, -errno, "--port-file %s: %s", path, strerror(errno));
    for (unsigned i = 0; i < sim->n_nodes; i++) fprintf(f, "%d\n", sim->nodes[i].port);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return gw_error_set(err, -e, "--port-file %s: %s", path, strerror(e));
    }
    return 0;
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct sim_proc *p = h->data;
    if (p->signals++) {
        LOGW("sim_exit", "msg=\"second signal, exiting now\"");
        _exit(0);
    }
    LOGI("sim_stop", "signal=%d", signum);
    p->sim.stopping = true;
    close_servers(&p->sim);
    for (unsigned i = 0; i < p->sim.n_nodes; i++) sim_node_close_handles(&p->sim.nodes[i]);
    /* The signal handles stay active for a second signal but do not keep the loop alive. */
    uv_unref((uv_handle_t *)&p->sig_term);
    uv_unref((uv_handle_t *)&p->sig_int);
}

static int run(struct sim_proc *p, struct sim_config *cfg)
{
    struct sim *sim = &p->sim;
    struct gw_error err = {0};
    int base = -1, rc = -1;
    for (int attempt = 0; attempt < SIM_PORT_ATTEMPTS; attempt++) {
        base = cfg->port ? cfg->port : find_base(cfg->host, cfg->nodes, &p->port_rng, attempt);
        if (base < 0) {
            if (cfg->port == 0 && attempt + 1 < SIM_PORT_ATTEMPTS) continue;
            gw_error_set(&err, GW_E_INVALID, "no %u consecutive free ports on %s", cfg->nodes,
                         cfg->host);
            break;
        }
        rc = start_nodes(sim, base, &err);
        if (rc == 0 || cfg->port) break;
        close_servers(sim); /* another process took a port between probe and bind: retry */
        uv_run(sim->loop, UV_RUN_NOWAIT);
    }
    if (rc == 0 && cfg->port_file) rc = write_port_file(sim, cfg->port_file, &err);
    if (rc) {
        fprintf(stderr, "drover sim: %s\n", err.msg[0] ? err.msg : gw_strerror(rc));
        close_servers(sim);
        for (unsigned i = 0; i < sim->n_nodes; i++) sim_node_close_handles(&sim->nodes[i]);
        uv_run(sim->loop, UV_RUN_DEFAULT);
        return 1;
    }
    uv_signal_init(sim->loop, &p->sig_term);
    uv_signal_init(sim->loop, &p->sig_int);
    p->sig_term.data = p->sig_int.data = p;
    uv_signal_start(&p->sig_term, on_signal, SIGTERM);
    uv_signal_start(&p->sig_int, on_signal, SIGINT);
    LOGI("sim_listen", "host=%s port=%d nodes=%u models=%zu", cfg->host, base, cfg->nodes,
         cfg->n_models);
    printf("drover-sim ready port=%d nodes=%u\n", base, cfg->nodes);
    fflush(stdout);
    uv_run(sim->loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&p->sig_term, NULL);
    uv_close((uv_handle_t *)&p->sig_int, NULL);
    uv_run(sim->loop, UV_RUN_DEFAULT);
    LOGI("sim_exit", "status=0");
    return 0;
}

int sim_main(int argc, char **argv)
{
    struct sim_config cfg;
    struct gw_error err = {0};
    sim_config_defaults(&cfg);
    int rc = sim_config_parse_args(&cfg, argc, argv, stdout, &err);
    if (rc) {
        if (rc < 0) fprintf(stderr, "drover sim: %s\n", err.msg);
        sim_config_free(&cfg);
        return rc == 1 ? 0 : 2;
    }
    log_set_level(cfg.log_level);
    signal(SIGPIPE, SIG_IGN);
    raise_nofile(cfg.nodes);

    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) {
        fprintf(stderr, "drover sim: cannot start the event loop\n");
        sim_config_free(&cfg);
        return 1;
    }
    struct sim_proc *p = xcalloc(1, sizeof *p);
    p->sim.loop = &loop;
    p->sim.cfg = &cfg;
    p->sim.rng = cfg.seed; /* fault dice: --seed alone, so a run can be replayed */
    p->port_rng = clock_mono_us() ^ ((uint64_t)getpid() << 32);
    p->sim.n_nodes = cfg.nodes;
    p->sim.nodes = xcalloc(cfg.nodes, sizeof *p->sim.nodes);
    for (unsigned i = 0; i < cfg.nodes; i++) sim_node_init(&p->sim.nodes[i], &p->sim, i);

    rc = run(p, &cfg);

    for (unsigned i = 0; i < cfg.nodes; i++) sim_node_free(&p->sim.nodes[i]);
    xfree(p->sim.nodes);
    xfree(p);
    if (uv_loop_close(&loop) != 0) LOGW("sim_loop", "msg=\"handles left open at exit\"");
    sim_config_free(&cfg);
    return rc;
}
