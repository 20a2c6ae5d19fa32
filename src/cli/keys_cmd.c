/* keys_cmd — `drover keys …`: client keys through the admin API (docs/security.md). Tables
 * (cli/table.h) by default, the server's JSON with --json; the secret of a new or rotated key
 * is printed once. A refused call exits 1 with the server's status, code and reason; bad usage
 * exits 2. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/yaml.h"
#include "cli/admin_client.h"
#include "cli/commands.h"
#include "cli/keys_cmd.h"
#include "cli/table.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: drover keys [--admin URL] [--token TOKEN] [--json] COMMAND [ARGS]\n"
               "\n"
               "  ls                       active keys with their limits and live state\n"
               "  show ID                  one key\n"
               "  create NAME [LIMITS]     a new key; its secret is printed once\n"
               "  set ID [LIMITS]          change a key's entitlements and limits\n"
               "  rotate ID                a new secret for the same key (the old one stops)\n"
               "  revoke ID                the key stops at once\n"
               "\n"
               "LIMITS:\n"
               "  --models GLOB,...        models the key may use (fnmatch globs; default all)\n"
               "  --endpoints E,...        chat, completions, embeddings, ollama, models\n"
               "  --rpm N  --tpm N         requests / tokens per minute (0: no limit)\n"
               "  --concurrency N          requests in flight at once (0: no limit)\n"
               "  --budget N[/day|/month]  tokens per UTC day (default) or month (0: none)\n"
               "  --expires DURATION       from now (30d, 12h, 90m; 0: never)\n"
               "  --owner NAME  --team NAME  --name NAME\n"
               "\n"
               "  --admin URL    admin API (default $DROVER_ADMIN_URL or http://127.0.0.1:8081)\n"
               "  --token TOKEN  admin token (default $DROVER_ADMIN_TOKEN)\n"
               "  --json         print the server's JSON\n");
}

static int csv_array(struct buf *b, const char *csv)
{
    int rc = buf_append_cstr(b, "[");
    bool first = true;
    for (const char *p = csv; *p && !rc;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len) {
            if (!first) rc = buf_append_cstr(b, ",");
            first = false;
            if (!rc) rc = json_append_str(b, p, len);
        }
        p += len + (end ? 1 : 0);
    }
    if (!rc) rc = buf_append_cstr(b, "]");
    return rc;
}

static bool is_uint(const char *s)
{
    if (!*s || strlen(s) > 16) return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return false;
    return true;
}

/* "30d" or any duration parse_duration_ms_str takes. */
static int duration_ms(const char *s, uint64_t *ms)
{
    size_t n = strlen(s);
    if (n > 1 && s[n - 1] == 'd') {
        char num[24];
        if (n - 1 >= sizeof num) return -1;
        memcpy(num, s, n - 1);
        num[n - 1] = '\0';
        if (!is_uint(num)) return -1;
        *ms = strtoull(num, NULL, 10) * 86400000ull;
        return 0;
    }
    return parse_duration_ms_str(s, ms) ? -1 : 0;
}

/* Builds the spec body from the LIMITS flags; returns 0, or 2 after printing why. */
static int spec_body(int argc, char **argv, const char *name, struct buf *b)
{
    int rc = buf_append_cstr(b, "{");
    const char *sep = "";
    if (name) {
        rc = rc ? rc : buf_append_cstr(b, "\"name\":");
        rc = rc ? rc : json_append_str(b, name, strlen(name));
        sep = ",";
    }
    for (int i = 0; i < argc && !rc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "drover keys: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--models") || !strcmp(a, "--endpoints")) {
            rc = buf_appendf(b, "%s\"%s\":", sep, a + 2);
            if (!rc) rc = csv_array(b, v);
        } else if (!strcmp(a, "--rpm") || !strcmp(a, "--tpm") || !strcmp(a, "--concurrency")) {
            if (!is_uint(v)) {
                fprintf(stderr, "drover keys: %s: '%s' is not a non-negative integer\n", a, v);
                return 2;
            }
            rc = buf_appendf(b, "%s\"%s\":%s", sep,
                             !strcmp(a, "--concurrency") ? "max_concurrent" : a + 2, v);
        } else if (!strcmp(a, "--budget")) {
            char num[24];
            const char *slash = strchr(v, '/');
            size_t nl = slash ? (size_t)(slash - v) : strlen(v);
            const char *period = slash ? slash + 1 : "day";
            if (nl >= sizeof num || (strcmp(period, "day") && strcmp(period, "month"))) {
                fprintf(stderr, "drover keys: --budget: expected N, N/day or N/month\n");
                return 2;
            }
            memcpy(num, v, nl);
            num[nl] = '\0';
            if (!is_uint(num)) {
                fprintf(stderr, "drover keys: --budget: expected N, N/day or N/month\n");
                return 2;
            }
            rc =
                buf_appendf(b, "%s\"budget_tokens\":%s,\"budget_period\":\"%s\"", sep, num, period);
        } else if (!strcmp(a, "--expires")) {
            uint64_t ms = 0;
            if (strcmp(v, "0") && duration_ms(v, &ms)) {
                fprintf(stderr, "drover keys: --expires: '%s' is not a duration (30d, 12h)\n", v);
                return 2;
            }
            struct timeval tv;
            gettimeofday(&tv, NULL);
            uint64_t now = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
            rc = buf_appendf(b, "%s\"expires_ms\":%llu", sep,
                             (unsigned long long)(ms ? now + ms : 0));
        } else if (!strcmp(a, "--owner") || !strcmp(a, "--team") || !strcmp(a, "--name")) {
            rc = buf_appendf(b, "%s\"%s\":", sep, a + 2);
            if (!rc) rc = json_append_str(b, v, strlen(v));
        } else {
            fprintf(stderr, "drover keys: unknown option '%s' (see 'drover keys --help')\n", a);
            return 2;
        }
        sep = ",";
    }
    if (!rc) rc = buf_append_cstr(b, "}");
    if (!rc) rc = buf_append(b, "", 1);
    return rc ? 2 : 0;
}

static const char *const key_cols[] = {"ID",  "NAME", "OWNER", "TEAM",   "PREFIX",   "STATUS",
                                       "RPM", "TPM",  "CONC",  "BUDGET", "INFLIGHT", "MODELS"};

static void add_key_row(struct table *t, struct json_object *k)
{
    struct json_object *spec = NULL, *v = NULL;
    if (json_get_obj(k, "spec", &spec)) spec = NULL;
    char cell[256];
    table_add(t, admin_json_str(k, "id", "?"));
    table_add(t, spec ? admin_json_str(spec, "name", "-") : "-");
    table_add(t, spec ? admin_json_str(spec, "owner", "-") : "-");
    table_add(t, spec ? admin_json_str(spec, "team", "-") : "-");
    table_addf(t, "%s...", admin_json_str(k, "prefix", ""));
    table_add(t, admin_json_str(k, "status", "?"));
    table_add(t, spec ? admin_json_str(spec, "rpm", "-") : "-");
    table_add(t, spec ? admin_json_str(spec, "tpm", "-") : "-");
    table_add(t, spec ? admin_json_str(spec, "max_concurrent", "-") : "-");
    if (spec && strcmp(admin_json_str(spec, "budget_tokens", "0"), "0"))
        table_addf(t, "%s/%s (used %s)", admin_json_str(spec, "budget_tokens", "0"),
                   admin_json_str(spec, "budget_period", "day"),
                   admin_json_str(k, "budget_used", "0"));
    else
        table_add(t, "-");
    table_add(t, admin_json_str(k, "in_flight", "0"));
    table_add(t, spec && json_object_object_get_ex(spec, "models", &v)
                     ? table_json_cell(v, cell, sizeof cell)
                     : "-");
}

static void print_keys(struct json_object *arr)
{
    struct table t;
    table_init(&t, key_cols, sizeof key_cols / sizeof key_cols[0]);
    for (size_t i = 0; i < json_object_array_length(arr); i++)
        add_key_row(&t, json_object_array_get_idx(arr, i));
    table_print(&t, stdout, "no keys (create one with 'drover keys create NAME')");
    table_free(&t);
}

static bool valid_id(const char *s)
{
    if (strncmp(s, "key_", 4) || strlen(s) > 40) return false;
    for (s += 4; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f'))) return false;
    return true;
}

int keys_main(int argc, char **argv)
{
    struct admin_target t;
    admin_target_init(&t, 0);
    bool json = false;
    char *args[64];
    int nargs = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "--admin") && i + 1 < argc) {
            t.url = argv[++i];
        } else if (!strcmp(a, "--token") && i + 1 < argc) {
            t.token = argv[++i];
        } else if (nargs < 64) {
            args[nargs++] = argv[i]; /* LIMITS flags are checked by spec_body */
        } else {
            fprintf(stderr, "drover keys: too many arguments\n");
            return 2;
        }
    }
    if (nargs == 0) {
        usage(stderr);
        return 2;
    }
    const char *cmd = args[0];
    char path[128];
    const char *method = "GET";
    struct buf body;
    buf_init(&body, 64 * 1024);
    bool list = false, secret = false;
    if (!strcmp(cmd, "ls") || !strcmp(cmd, "list")) {
        snprintf(path, sizeof path, "/admin/v1/keys");
        list = true;
    } else if (!strcmp(cmd, "create")) {
        if (nargs < 2 || args[1][0] == '-') {
            fprintf(stderr, "drover keys: create needs a NAME (see 'drover keys --help')\n");
            buf_free(&body);
            return 2;
        }
        int rc = spec_body(nargs - 2, args + 2, args[1], &body);
        if (rc) {
            buf_free(&body);
            return rc;
        }
        snprintf(path, sizeof path, "/admin/v1/keys");
        method = "POST";
        secret = true;
    } else if (!strcmp(cmd, "show") || !strcmp(cmd, "set") || !strcmp(cmd, "rotate") ||
               !strcmp(cmd, "revoke")) {
        if (nargs < 2 || !valid_id(args[1])) {
            fprintf(stderr, "drover keys: %s needs a key id (key_ and hex, see 'drover keys ls')\n",
                    cmd);
            buf_free(&body);
            return 2;
        }
        snprintf(path, sizeof path, "/admin/v1/keys/%s", args[1]);
        if (!strcmp(cmd, "set")) {
            int rc = spec_body(nargs - 2, args + 2, NULL, &body);
            if (rc) {
                buf_free(&body);
                return rc;
            }
            method = "PATCH";
        } else if (strcmp(cmd, "show")) {
            snprintf(path, sizeof path, "/admin/v1/keys/%s/%s", args[1], cmd);
            method = "POST";
            secret = !strcmp(cmd, "rotate");
        }
    } else {
        buf_free(&body);
        return admin_unknown_command("drover keys", cmd, "ls, show, create, set, rotate, revoke");
    }
    if (!list && !secret && strcmp(cmd, "set") && nargs > 2) {
        fprintf(stderr, "drover keys: %s takes only a key id\n", cmd);
        buf_free(&body);
        return 2;
    }
    struct buf out;
    buf_init(&out, 64u << 20);
    int status = 0;
    struct json_object *root = NULL;
    int code = admin_call("drover keys", &t, method, path, body.len ? body.p : NULL, &status, &out,
                          json ? NULL : &root);
    buf_free(&body);
    if (code == 0 && json) {
        printf("%.*s\n", (int)out.len, out.p ? out.p : "");
    } else if (code == 0) {
        struct json_object *v = NULL;
        if (list && json_get_arr(root, "keys", &v) == 0) {
            print_keys(v);
        } else {
            struct json_object *k = root;
            if (json_get_obj(root, "key", &v) == 0) k = v;
            struct json_object *one = json_object_new_array();
            json_object_array_add(one, json_object_get(k));
            print_keys(one);
            json_object_put(one);
            if (secret)
                printf("\nsecret: %s\n(shown once: the gateway keeps only its SHA-256)\n",
                       admin_json_str(root, "secret", "?"));
        }
    }
    if (root) json_object_put(root);
    buf_free(&out);
    return code;
}
