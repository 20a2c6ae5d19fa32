/* bench_router — how long one routing decision takes with a large fleet (issue 7, S5).
 * Builds a registry of N nodes (default 1,000; each approved, healthy after `rise` good
 * probes, with a few models of which one is the benchmark model), then times `router_pick`
 * for PICKS picks (default 200,000) with the monotonic clock around each call, and prints
 * p50/p90/p99/max and the mean. In-flight counts are varied between picks the way the proxy
 * would (the picked node gets +1 and some other node -1) so the scan does not see one fixed
 * winner. MODE "busy" keeps every node at one request or more, so no pick can stop early at
 * an idle node and each one scans every candidate (the worst case); "mixed" (the default)
 * starts nodes at 0..6 in flight. Built by bench/run.sh against build/release/libdrover_core.a;
 * not part of CMake.
 * Usage: bench_router [NODES] [PICKS] [mixed|busy] */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/mem.h"

#include "base/log.h"
#include "gw/registry.h"
#include "gw/router.h"

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    size_t n_nodes = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000;
    size_t picks = argc > 2 ? strtoul(argv[2], NULL, 10) : 200000;
    const char *mode = argc > 3 ? argv[3] : "mixed";
    bool busy = strcmp(mode, "busy") == 0;
    if (n_nodes == 0 || picks == 0 || (!busy && strcmp(mode, "mixed") != 0)) {
        fprintf(stderr, "usage: bench_router [NODES] [PICKS] [mixed|busy]\n");
        return 2;
    }
    log_set_level(LOG_ERROR); /* no node_healthy line per node */
    struct registry_config cfg;
    registry_config_defaults(&cfg);
    struct registry reg;
    registry_init(&reg, &cfg);

    /* Every node lists four models; the benchmark model is the last one, so the model lookup
     * does its full work on every node (the realistic worst case for a multi-model fleet). */
    struct strv models[4] = {STRV_LIT("llama3:8b"), STRV_LIT("qwen2.5:14b"),
                             STRV_LIT("nomic-embed-text"), STRV_LIT("bench-model")};
    for (size_t i = 0; i < n_nodes; i++) {
        char name[32], url[64];
        snprintf(name, sizeof name, "sim-%zu", i + 1);
        snprintf(url, sizeof url, "http://127.0.0.1:%zu", 20000 + i);
        struct node *nd = NULL;
        struct gw_error err;
        if (registry_add(&reg, name, url, NODE_KIND_OPENAI, NULL, &nd, &err) != 0) {
            fprintf(stderr, "bench_router: registry_add %s failed\n", name);
            return 1;
        }
        registry_set_models(nd, models, 4);
        for (unsigned k = 0; k < cfg.rise + 1; k++) (void)registry_probe_ok(&reg, nd, 1000);
        nd->inflight = (unsigned)(i % 7) + busy;
    }
    size_t routable = registry_count_routable(&reg, 1000);
    if (routable != n_nodes) {
        fprintf(stderr, "bench_router: only %zu of %zu nodes routable\n", routable, n_nodes);
        return 1;
    }

    uint64_t *lat = xmalloc(picks * sizeof *lat);
    if (!lat) return 1;
    struct route_query q = {.model = STRV_LIT("bench-model"), .cap = CAP_CHAT, .now_ms = 2000};
    struct route_result res;
    size_t ok = 0;
    /* Warm-up (caches, branch predictors), not timed. */
    for (size_t i = 0; i < 1000; i++) router_pick(&reg, &q, &res);
    uint64_t t_all = now_ns();
    for (size_t i = 0; i < picks; i++) {
        uint64_t t0 = now_ns();
        router_pick(&reg, &q, &res);
        uint64_t t1 = now_ns();
        lat[i] = t1 - t0;
        if (res.status == ROUTE_OK) {
            ok++;
            res.node->inflight++;
            struct node *other = reg.nodes[(i * 7919) % n_nodes];
            if (other->inflight > (unsigned)busy) other->inflight--;
        }
    }
    t_all = now_ns() - t_all;
    qsort(lat, picks, sizeof *lat, cmp_u64);
    double p50 = lat[picks / 2] / 1000.0, p90 = lat[picks * 90 / 100] / 1000.0;
    double p99 = lat[picks * 99 / 100] / 1000.0, mx = lat[picks - 1] / 1000.0;
    printf("mode=%s nodes=%zu picks=%zu ok=%zu p50_us=%.2f p90_us=%.2f p99_us=%.2f max_us=%.2f "
           "mean_us=%.2f\n",
           mode, n_nodes, picks, ok, p50, p90, p99, mx, t_all / 1000.0 / (double)picks);
    xfree(lat);
    registry_free(&reg);
    return ok == picks ? 0 : 1;
}
