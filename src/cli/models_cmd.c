/* models_cmd — `drover models …`: the catalogue through the admin API (/admin/v1/models,
 * docs/placement.md): list, show, put (create or replace one entry) and delete, each entry
 * with where it is loaded, where it could load and the reconciler's reason when it cannot
 * reach its replicas. Tables (cli/table.h) by default, the server's JSON with --json; a
 * refused call exits 1 with the server's reason and what to do, bad usage exits 2. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/json.h"
#include "cli/admin_client.h"
#include "cli/commands.h"
#include "cli/table.h"

enum { MODELS_MAX_FILE_BYTES = 1 << 20, MODELS_MAX_ID = 200 };

static void usage(FILE *f)
{
    fprintf(f, "usage: drover models [--admin URL] [--token TOKEN] [--json] COMMAND [ARGS]\n"
               "\n"
               "  ls                       catalogue entries, where each is loaded and why not\n"
               "  show ID                  one entry, with its placement\n"
               "  put ID [FIELDS]          create or replace an entry (every field not given\n"
               "                           takes its default):\n"
               "      --from FILE          the entry as JSON (- for stdin); flags override it\n"
               "      --alias NAME         another name clients may use (repeatable)\n"
               "      --engine E           llamacpp, ollama, vllm, openai or any\n"
               "      --capabilities LIST  chat,completions,embeddings\n"
               "      --min-devices N      --min-vram-mb N\n"
               "      --selector K=V,...   labels a node must carry\n"
               "      --replicas MIN[:MAX] replicas to keep loaded (MAX 0: no limit)\n"
               "      --pinned             never evicted\n"
               "      --load-options JSON  the engine's load options (an object)\n"
               "  rm|delete ID             remove an entry added through the admin API\n"
               "\n"
               "  --admin URL    admin API (default $DROVER_ADMIN_URL or http://127.0.0.1:8081)\n"
               "  --token TOKEN  admin token (default $DROVER_ADMIN_TOKEN)\n"
               "  --json         print the server's JSON instead of a table\n");
}

static const char commands_list[] = "ls, show, put, rm";

/* An id the admin API can address in a path: what the catalogue accepts, minus the bytes a
 * URL gives a meaning to. */
static bool id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= MODELS_MAX_ID) return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= 0x20 || *p == 0x7f || strchr("\"\\?#%", *p)) return false;
    return true;
}

static const char *replicas_cell(struct json_object *m, char *out, size_t cap)
{
    struct json_object *r = NULL;
    if (!json_object_object_get_ex(m, "replicas", &r) || !json_object_is_type(r, json_type_object))
        return "-";
    const char *max = admin_json_str(r, "max", "0");
    snprintf(out, cap, "%s/%s..%s", admin_json_str(m, "replicas_routable", "?"),
             admin_json_str(r, "min", "0"), strcmp(max, "0") ? max : "any");
    return out;
}

static void print_models(struct json_object *arr)
{
    static const char *const cols[] = {
        "ID",        "ALIASES",       "ENGINE", "REPLICAS",      "LOADING",
        "LOADED ON", "COULD LOAD ON", "SOURCE", "WHY NOT PLACED"};
    struct table t;
    table_init(&t, cols, sizeof cols / sizeof cols[0]);
    for (size_t i = 0; i < json_object_array_length(arr); i++) {
        struct json_object *m = json_object_array_get_idx(arr, i), *v = NULL;
        char cell[512];
        table_add(&t, admin_json_str(m, "id", "?"));
        table_add(&t, json_object_object_get_ex(m, "aliases", &v)
                          ? table_json_cell(v, cell, sizeof cell)
                          : "-");
        table_add(&t, admin_json_str(m, "engine", "any"));
        table_add(&t, replicas_cell(m, cell, sizeof cell));
        table_add(&t, admin_json_str(m, "loading", "0"));
        v = NULL;
        table_add(&t, json_object_object_get_ex(m, "loaded_on", &v)
                          ? table_json_cell(v, cell, sizeof cell)
                          : "-");
        v = NULL;
        table_add(&t, json_object_object_get_ex(m, "could_load_on", &v)
                          ? table_json_cell(v, cell, sizeof cell)
                          : "-");
        table_add(&t, admin_json_str(m, "source", "?"));
        table_add(&t, admin_json_str(m, "reconciler", "-"));
    }
    table_print(&t, stdout, "no models in the catalogue (add one with 'drover models put ID')");
    table_free(&t);
}

static void print_model(struct json_object *m)
{
    struct table t;
    table_init(&t, NULL, 2);
    table_add_json_kv(&t, NULL, m);
    if (!json_object_object_get_ex(m, "reconciler", NULL)) {
        table_add(&t, "reconciler");
        table_add(&t, "- (nothing stands in the way of its replicas)");
    }
    table_print(&t, stdout, "the gateway answered an empty entry");
    table_free(&t);
}

static int parse_uint(const char *flag, const char *s, unsigned long long max,
                      unsigned long long *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *s == '-' || errno || *end || v > max) {
        fprintf(stderr, "drover models: %s '%s': expected a whole number up to %llu\n", flag, s,
                max);
        return 2;
    }
    *out = v;
    return 0;
}

static struct json_object *csv_array(const char *csv)
{
    struct json_object *a = json_object_new_array();
    const char *p = csv;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len) json_object_array_add(a, json_object_new_string_len(p, (int)len));
        p += len + (end ? 1 : 0);
    }
    return a;
}

static struct json_object *csv_object(const char *csv)
{
    struct json_object *o = json_object_new_object();
    const char *p = csv;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        if (len && (!eq || eq == p)) {
            json_object_put(o);
            return NULL;
        }
        if (len) {
            char key[128];
            snprintf(key, sizeof key, "%.*s", (int)(eq - p), p);
            json_object_object_add(
                o, key, json_object_new_string_len(eq + 1, (int)(len - (size_t)(eq - p) - 1)));
        }
        p += len + (end ? 1 : 0);
    }
    return o;
}

static struct json_object *read_json_file(const char *path)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "drover models: --from %s: %s\n", path, strerror(errno));
        return NULL;
    }
    struct buf b;
    buf_init(&b, MODELS_MAX_FILE_BYTES);
    char chunk[4096];
    size_t n;
    int rc = 0;
    while (!rc && (n = fread(chunk, 1, sizeof chunk, f)) > 0) rc = buf_append(&b, chunk, n);
    if (f != stdin) fclose(f);
    struct gw_error err = {0};
    struct json_object *o = rc ? NULL : json_parse_strict(b.p ? b.p : "", b.len, 16, &err);
    if (rc)
        fprintf(stderr, "drover models: --from %s: larger than 1 MiB\n", path);
    else if (!o || !json_object_is_type(o, json_type_object))
        fprintf(stderr, "drover models: --from %s: not a JSON object%s%s\n", path,
                err.msg[0] ? ": " : "", err.msg);
    if (o && !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        o = NULL;
    }
    buf_free(&b);
    return o;
}

/* Builds the entry of `put` from --from and the field flags (argv[i..] after the id). */
static int put_body(const char *id, int argc, char **argv, struct buf *body)
{
    struct json_object *o = NULL, *aliases = NULL;
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--from") && i + 1 < argc && !(o = read_json_file(argv[i + 1])))
            return 2;
    if (!o) o = json_object_new_object();
    int rc = 0;
    for (int i = 0; i < argc && !rc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        unsigned long long x;
        if (!strcmp(a, "--pinned")) {
            json_object_object_add(o, "pinned", json_object_new_boolean(1));
            continue;
        }
        if (!v || a[0] != '-') {
            fprintf(stderr, "drover models: put: unexpected '%s' (see 'drover models --help')\n",
                    a);
            rc = 2;
            break;
        }
        i++;
        if (!strcmp(a, "--from")) {
            /* read above */
        } else if (!strcmp(a, "--alias")) {
            if (!aliases) {
                aliases = json_object_new_array();
                json_object_object_add(o, "aliases", aliases);
            }
            json_object_array_add(aliases, json_object_new_string(v));
        } else if (!strcmp(a, "--engine")) {
            json_object_object_add(o, "engine", json_object_new_string(v));
        } else if (!strcmp(a, "--capabilities")) {
            json_object_object_add(o, "capabilities", csv_array(v));
        } else if (!strcmp(a, "--min-devices") || !strcmp(a, "--min-vram-mb")) {
            rc = parse_uint(a, v, 1ull << 40, &x);
            if (!rc)
                json_object_object_add(o, a[6] == 'd' ? "min_devices" : "min_vram_mb",
                                       json_object_new_int64((int64_t)x));
        } else if (!strcmp(a, "--selector")) {
            struct json_object *sel = csv_object(v);
            if (!sel) {
                fprintf(stderr, "drover models: --selector '%s': expected K=V,...\n", v);
                rc = 2;
            } else {
                json_object_object_add(o, "selector", sel);
            }
        } else if (!strcmp(a, "--replicas")) {
            char lo[32] = "", *colon = strchr(v, ':');
            snprintf(lo, sizeof lo, "%.*s", colon ? (int)(colon - v) : (int)strlen(v), v);
            unsigned long long mn = 0, mx = 0;
            rc = parse_uint("--replicas", lo, 1000, &mn);
            if (!rc && colon) rc = parse_uint("--replicas", colon + 1, 1000, &mx);
            if (!rc) {
                struct json_object *r = json_object_new_object();
                json_object_object_add(r, "min", json_object_new_int64((int64_t)mn));
                if (colon) json_object_object_add(r, "max", json_object_new_int64((int64_t)mx));
                json_object_object_add(o, "replicas", r);
            }
        } else if (!strcmp(a, "--load-options")) {
            struct json_object *lo = json_parse_strict(v, strlen(v), 16, NULL);
            if (!lo || !json_object_is_type(lo, json_type_object)) {
                fprintf(stderr, "drover models: --load-options: expected a JSON object\n");
                if (lo) json_object_put(lo);
                rc = 2;
            } else {
                json_object_object_add(o, "load_options", lo);
            }
        } else {
            fprintf(stderr,
                    "drover models: put: unknown option '%s' (see 'drover models "
                    "--help')\n",
                    a);
            rc = 2;
        }
    }
    if (!rc) {
        /* the server refuses "source" (it says where an entry came from, not what it is) */
        json_object_object_del(o, "source");
        json_object_object_add(o, "id", json_object_new_string(id));
        if (buf_append_cstr(body, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN)) ||
            buf_append(body, "", 1)) {
            fprintf(stderr, "drover models: the entry is larger than 1 MiB\n");
            rc = 2;
        }
    }
    json_object_put(o);
    return rc;
}

int models_main(int argc, char **argv)
{
    struct admin_target t;
    admin_target_init(&t, 0);
    bool json = false;
    char *args[64];
    int nargs = 0;
    /* the common options may come anywhere; the rest (put's fields) stays in order */
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
        } else if (a[0] == '-' && a[1] && (nargs == 0 || strcmp(args[0], "put") != 0)) {
            fprintf(stderr, "drover models: unknown option '%s' (see 'drover models --help')\n", a);
            return 2;
        } else if (nargs < 64) {
            args[nargs++] = argv[i];
        } else {
            fprintf(stderr, "drover models: too many arguments\n");
            return 2;
        }
    }
    if (nargs == 0) {
        usage(stderr);
        return 2;
    }
    const char *cmd = args[0];
    enum { SHOW_LIST, SHOW_ONE, SHOW_PUT, SHOW_DELETED } show;
    const char *method = "GET";
    if (!strcmp(cmd, "ls") || !strcmp(cmd, "list"))
        show = SHOW_LIST;
    else if (!strcmp(cmd, "show"))
        show = SHOW_ONE;
    else if (!strcmp(cmd, "put"))
        show = SHOW_PUT, method = "PUT";
    else if (!strcmp(cmd, "rm") || !strcmp(cmd, "delete"))
        show = SHOW_DELETED, method = "DELETE";
    else
        return admin_unknown_command("drover models", cmd, commands_list);
    char path[300];
    snprintf(path, sizeof path, "/admin/v1/models");
    const char *id = NULL;
    if (show == SHOW_LIST) {
        if (nargs > 1) {
            fprintf(stderr, "drover models: ls takes no argument (see 'drover models show ID')\n");
            return 2;
        }
    } else {
        if (nargs < 2 || args[1][0] == '-') {
            fprintf(stderr, "drover models: %s needs a model id (see 'drover models --help')\n",
                    cmd);
            return 2;
        }
        id = args[1];
        if (!id_ok(id)) {
            fprintf(stderr,
                    "drover models: '%s' is not a model id the admin API can address (no "
                    "spaces, quotes, \\, ?, # or %%; under %d bytes)\n",
                    id, MODELS_MAX_ID);
            return 2;
        }
        if (show != SHOW_PUT && nargs > 2) {
            fprintf(stderr, "drover models: %s takes one model id\n", cmd);
            return 2;
        }
        snprintf(path, sizeof path, "/admin/v1/models/%s", id);
    }
    struct buf body;
    buf_init(&body, MODELS_MAX_FILE_BYTES + 64 * 1024);
    if (show == SHOW_PUT) {
        int rc = put_body(id, nargs - 2, args + 2, &body);
        if (rc) {
            buf_free(&body);
            return rc;
        }
    }
    struct buf out;
    buf_init(&out, 64u << 20);
    int status = 0;
    struct json_object *root = NULL;
    int code = admin_call("drover models", &t, method, path, body.len ? body.p : NULL, &status,
                          &out, json ? NULL : &root);
    buf_free(&body);
    struct json_object *v = NULL;
    if (code == 0 && json) {
        printf("%.*s\n", (int)out.len, out.p ? out.p : "");
    } else if (code != 0) {
        /* printed by admin_call */
    } else if (show == SHOW_LIST && json_get_arr(root, "models", &v) == 0) {
        print_models(v);
    } else if (show == SHOW_ONE) {
        print_model(root);
    } else if (show == SHOW_PUT) {
        printf("model %s %s\n", id, status == 201 ? "added" : "replaced");
        print_model(root);
    } else if (show == SHOW_DELETED) {
        printf("model %s deleted\n", id);
    } else {
        fprintf(stderr, "drover models: the gateway's answer has an unexpected shape (see "
                        "--json)\n");
        code = 1;
    }
    if (root) json_object_put(root);
    buf_free(&out);
    return code;
}
