/* store_cmd — `drover store migrate --from ENGINE:WHERE --to ENGINE:WHERE`: copies a store
 * offline (no gateway may be writing either side), e.g. one gateway's SQLite file into the
 * PostgreSQL that several gateways will share. Both sides are opened (and so migrated to this
 * build's schema) with the store itself; the copy is one transaction on the destination, which
 * must be empty. Never prints a URL (it may hold a password). Bad usage exits 2, a refused or
 * failed copy exits 1. */
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "base/log.h"
#include "cli/commands.h"
#include "store/store.h"
#include "store/store_copy.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: drover store migrate --from sqlite:PATH --to postgres:URL\n"
               "\n"
               "  Copies every durable row (nodes, labels, catalogue, operations, dead letters)\n"
               "  from one store into another, in one transaction; the destination must be\n"
               "  empty. Stop the gateways first. Either side may be sqlite:PATH or\n"
               "  postgres:URL (a libpq connection string or URI, e.g.\n"
               "  postgres:'host=db1,db2 dbname=drover target_session_attrs=read-write').\n");
}

/* "sqlite:PATH" or "postgres:URL" into cfg; false if neither. */
static bool parse_side(const char *s, struct store_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    if (!strncmp(s, "sqlite:", 7) && s[7]) {
        cfg->engine = STORE_ENGINE_SQLITE;
        cfg->path = s + 7;
        return true;
    }
    if (!strncmp(s, "postgres:", 9) && s[9]) {
        cfg->engine = STORE_ENGINE_POSTGRES;
        cfg->url = s + 9;
        return true;
    }
    return false;
}

static int migrate(const struct store_config *from, const struct store_config *to)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct store *src = NULL, *dst = NULL;
    struct gw_error err = {0};
    int rc = store_open(&loop, from, &src, &err);
    if (rc) {
        fprintf(stderr, "drover store migrate: from: %s\n", err.msg);
    } else if ((rc = store_open(&loop, to, &dst, &err))) {
        fprintf(stderr, "drover store migrate: to: %s\n", err.msg);
    } else {
        size_t counts[32] = {0};
        rc = store_copy(src, dst, counts, &err);
        if (rc) {
            fprintf(stderr, "drover store migrate: %s\n", err.msg);
        } else {
            printf("copied");
            for (size_t i = 0; i < 32 && store_copy_tables[i]; i++)
                printf(" %s=%zu", store_copy_tables[i], counts[i]);
            printf(" schema_version=%d\n", store_schema_version(dst));
        }
    }
    store_close(src);
    store_close(dst);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return rc ? 1 : 0;
}

int store_cmd_main(int argc, char **argv)
{
    const char *from = NULL, *to = NULL, *sub = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_v = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--from") && has_v) {
            from = argv[++i];
        } else if (!strcmp(a, "--to") && has_v) {
            to = argv[++i];
        } else if (a[0] == '-') {
            fprintf(stderr, "drover store: unknown option '%s' (see 'drover store --help')\n", a);
            return 2;
        } else if (!sub) {
            sub = a;
        } else {
            fprintf(stderr, "drover store: unexpected argument '%s'\n", a);
            return 2;
        }
    }
    if (!sub || strcmp(sub, "migrate") != 0) {
        fprintf(stderr, "drover store: %s (see 'drover store --help')\n",
                sub ? "unknown command" : "no command");
        return 2;
    }
    struct store_config cf, ct;
    if (!from || !to) {
        fprintf(stderr, "drover store migrate: needs --from and --to\n");
        return 2;
    }
    if (!parse_side(from, &cf) || !parse_side(to, &ct)) {
        fprintf(stderr, "drover store migrate: --from and --to take sqlite:PATH or postgres:URL\n");
        return 2;
    }
    log_set_level(LOG_WARN);
    return migrate(&cf, &ct);
}
