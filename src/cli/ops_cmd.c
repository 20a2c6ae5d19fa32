/* ops_cmd — `drover ops …`: durable fleet operations through the admin API (docs/ops.md).
 * Tables (cli/table.h) by default, the server's JSON with --json; a refused call exits 1 with
 * the server's status, code and reason and what to do, bad usage exits 2. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/json.h"
#include "cli/admin_client.h"
#include "cli/commands.h"
#include "cli/table.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: drover ops [--admin URL] [--token TOKEN] [--json] COMMAND [ARGS]\n"
            "\n"
            "  install|upgrade|delete TARGET [--nodes A,B] [--selector K=V,...] [--param K=V]...\n"
            "  load|unload model:NAME --nodes A[,B]\n"
            "                          TARGET is model:NAME or backend:NAME; without --nodes\n"
            "                          and --selector the op goes to every joined node\n"
            "  ls [--all]              pending operations (--all: done ones too)\n"
            "  dead                    dead letters (failed 10 times)\n"
            "  retry ID                move a dead letter back to the queue\n"
            "  inventory               models and backends of every node, with digests\n"
            "  upgrades TARGET         which nodes have an outdated digest of TARGET\n"
            "\n"
            "  --admin URL    admin API (default $DROVER_ADMIN_URL or http://127.0.0.1:8081)\n"
            "  --token TOKEN  admin token (default $DROVER_ADMIN_TOKEN)\n"
            "  --json         print the server's JSON\n");
}

/* Appends "a,b" as a JSON array of strings, or "k=v,k2=v2" as an object. */
static int csv_json(struct buf *b, const char *csv, bool object)
{
    int rc = buf_append_cstr(b, object ? "{" : "[");
    const char *p = csv;
    bool first = true;
    while (*p && !rc) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len) {
            if (!first) rc = buf_append_cstr(b, ",");
            first = false;
            if (object) {
                const char *eq = memchr(p, '=', len);
                if (!eq || eq == p) return GW_E_INVALID;
                if (!rc) rc = json_append_str(b, p, (size_t)(eq - p));
                if (!rc) rc = buf_append_cstr(b, ":");
                if (!rc) rc = json_append_str(b, eq + 1, len - (size_t)(eq - p) - 1);
            } else if (!rc) {
                rc = json_append_str(b, p, len);
            }
        }
        p += len + (end ? 1 : 0);
    }
    if (!rc) rc = buf_append_cstr(b, object ? "}" : "]");
    return rc;
}

static void print_rows(struct json_object *arr, bool dead, const char *empty)
{
    static const char *const cols[] = {"ID",    "NODE",     "TARGET", "OP",
                                       "STATE", "ATTEMPTS", "CLASS",  "LAST ERROR"};
    static const char *const dead_cols[] = {"ID",       "NODE",  "TARGET",    "OP",
                                            "ATTEMPTS", "CLASS", "LAST ERROR"};
    struct table t;
    table_init(&t, dead ? dead_cols : cols, dead ? 7 : 8);
    for (size_t i = 0; i < json_object_array_length(arr); i++) {
        struct json_object *o = json_object_array_get_idx(arr, i);
        table_add(&t, admin_json_str(o, "id", "?"));
        table_add(&t, admin_json_str(o, "node", "?"));
        table_add(&t, admin_json_str(o, "target", "?"));
        table_add(&t, admin_json_str(o, "op", "?"));
        if (!dead) table_add(&t, admin_json_str(o, "state", "?"));
        table_add(&t, admin_json_str(o, "attempts", "?"));
        table_add(&t, admin_json_str(o, "last_class", "-"));
        table_add(&t, admin_json_str(o, "last_error", "-"));
    }
    table_print(&t, stdout, empty);
    table_free(&t);
}

static void print_results(struct json_object *arr)
{
    static const char *const cols[] = {"NODE", "RESULT", "REASON"};
    struct table t;
    table_init(&t, cols, 3);
    for (size_t i = 0; i < json_object_array_length(arr); i++) {
        struct json_object *o = json_object_array_get_idx(arr, i);
        table_add(&t, admin_json_str(o, "node", "?"));
        table_add(&t, admin_json_str(o, "result", "?"));
        table_add(&t, admin_json_str(o, "reason", "-"));
    }
    table_print(&t, stdout, "no node was targeted");
    table_free(&t);
}

static void print_inventory(struct json_object *nodes)
{
    static const char *const cols[] = {"NODE", "KIND", "NAME", "VERSION", "DIGEST"};
    struct table t;
    table_init(&t, cols, 5);
    for (size_t i = 0; i < json_object_array_length(nodes); i++) {
        struct json_object *n = json_object_array_get_idx(nodes, i);
        if (admin_json_str(n, "error", NULL)) {
            table_add(&t, admin_json_str(n, "name", "?"));
            table_add(&t, "-");
            table_addf(&t, "(%s)", admin_json_str(n, "error", ""));
            table_add(&t, "-");
            table_add(&t, "-");
            continue;
        }
        static const char *const lists[] = {"models", "backends"};
        for (int l = 0; l < 2; l++) {
            struct json_object *arr = NULL;
            if (json_get_arr(n, lists[l], &arr)) continue;
            for (size_t k = 0; k < json_object_array_length(arr); k++) {
                struct json_object *it = json_object_array_get_idx(arr, k);
                table_add(&t, admin_json_str(n, "name", "?"));
                table_add(&t, l ? "backend" : "model");
                table_add(&t, admin_json_str(it, "name", "?"));
                table_add(&t, admin_json_str(it, "version", "-"));
                table_add(&t, admin_json_str(it, "digest", "-"));
            }
        }
    }
    table_print(&t, stdout, "no inventory (no approved agent node to ask)");
    table_free(&t);
}

static void print_upgrades(struct json_object *root)
{
    static const char *const cols[] = {"NODE", "OUTDATED", "DIGEST", "LATEST", "BASIS"};
    struct json_object *nodes = NULL;
    printf("target %s, fleet digest %s\n", admin_json_str(root, "target", "?"),
           admin_json_str(root, "fleet_digest", "unknown"));
    struct table t;
    table_init(&t, cols, 5);
    for (size_t i = 0;
         json_get_arr(root, "nodes", &nodes) == 0 && i < json_object_array_length(nodes); i++) {
        struct json_object *o = json_object_array_get_idx(nodes, i);
        table_add(&t, admin_json_str(o, "node", "?"));
        table_add(&t, admin_json_str(o, "outdated", "?"));
        table_add(&t, admin_json_str(o, "digest", "-"));
        table_add(&t, admin_json_str(o, "latest_digest", "-"));
        table_add(&t, admin_json_str(o, "basis", "-"));
    }
    table_print(&t, stdout, "no node has it");
    table_free(&t);
}

static const char commands_list[] =
    "install, upgrade, delete, load, unload, ls, dead, retry, inventory, upgrades";

int ops_main(int argc, char **argv)
{
    struct admin_target t;
    admin_target_init(&t, 15 * 60 * 1000);
    bool json = false, all = false;
    const char *nodes = NULL, *selector = NULL;
    const char *params[32];
    int n_params = 0;
    char *args[8];
    int nargs = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_v = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "--all")) {
            all = true;
        } else if (!strcmp(a, "--admin") && has_v) {
            t.url = argv[++i];
        } else if (!strcmp(a, "--token") && has_v) {
            t.token = argv[++i];
        } else if (!strcmp(a, "--nodes") && has_v) {
            nodes = argv[++i];
        } else if (!strcmp(a, "--selector") && has_v) {
            selector = argv[++i];
        } else if (!strcmp(a, "--param") && has_v && n_params < 32) {
            params[n_params++] = argv[++i];
        } else if (a[0] == '-') {
            fprintf(stderr, "drover ops: unknown option '%s' (see 'drover ops --help')\n", a);
            return 2;
        } else if (nargs < 8) {
            args[nargs++] = argv[i];
        } else {
            fprintf(stderr, "drover ops: too many arguments\n");
            return 2;
        }
    }
    if (nargs == 0) {
        usage(stderr);
        return 2;
    }
    const char *cmd = args[0];
    const char *method = "GET";
    char path[400];
    struct buf body;
    buf_init(&body, 1u << 20);
    enum { SHOW_ROWS, SHOW_DEAD, SHOW_RESULTS, SHOW_ROW, SHOW_INV, SHOW_UPGRADES } show = SHOW_ROWS;
    static const char *const kinds[] = {"install", "upgrade", "delete", "load", "unload"};
    bool is_op = false;
    for (size_t k = 0; k < 5; k++) is_op = is_op || !strcmp(cmd, kinds[k]);
    int rc = 0;
    if (is_op) {
        if (nargs != 2) {
            fprintf(stderr, "drover ops: %s needs one TARGET (model:NAME or backend:NAME)\n", cmd);
            buf_free(&body);
            return 2;
        }
        if ((!strcmp(cmd, "load") || !strcmp(cmd, "unload")) && !nodes) {
            fprintf(stderr, "drover ops: %s needs --nodes\n", cmd);
            buf_free(&body);
            return 2;
        }
        method = "POST";
        snprintf(path, sizeof path, "/admin/v1/ops");
        rc = buf_appendf(&body, "{\"op\":\"%s\",\"target\":", cmd);
        if (!rc) rc = json_append_str(&body, args[1], strlen(args[1]));
        if (!rc && nodes) rc = buf_append_cstr(&body, ",\"nodes\":");
        if (!rc && nodes) rc = csv_json(&body, nodes, false);
        if (!rc && selector) rc = buf_append_cstr(&body, ",\"selector\":");
        if (!rc && selector) rc = csv_json(&body, selector, true);
        if (!rc && n_params) {
            rc = buf_append_cstr(&body, ",\"params\":{");
            for (int k = 0; k < n_params && !rc; k++) {
                const char *eq = strchr(params[k], '=');
                if (!eq || eq == params[k]) {
                    rc = GW_E_INVALID;
                    break;
                }
                if (k) rc = buf_append_cstr(&body, ",");
                if (!rc) rc = json_append_str(&body, params[k], (size_t)(eq - params[k]));
                if (!rc) rc = buf_append_cstr(&body, ":");
                if (!rc) rc = json_append_str(&body, eq + 1, strlen(eq + 1));
            }
            if (!rc) rc = buf_append_cstr(&body, "}");
        }
        if (!rc) rc = buf_append_cstr(&body, "}");
        show = SHOW_RESULTS;
    } else if (!strcmp(cmd, "ls") || !strcmp(cmd, "list")) {
        snprintf(path, sizeof path, "/admin/v1/ops%s", all ? "?all=1" : "");
        show = SHOW_ROWS;
    } else if (!strcmp(cmd, "dead")) {
        snprintf(path, sizeof path, "/admin/v1/ops/dead");
        show = SHOW_DEAD;
    } else if (!strcmp(cmd, "retry")) {
        if (nargs != 2 || !*args[1] || strspn(args[1], "0123456789") != strlen(args[1]) ||
            strlen(args[1]) > 18) {
            fprintf(stderr, "drover ops: retry needs the ID of a dead letter (see 'drover ops "
                            "dead')\n");
            buf_free(&body);
            return 2;
        }
        snprintf(path, sizeof path, "/admin/v1/ops/dead/%s/retry", args[1]);
        method = "POST";
        show = SHOW_ROW;
    } else if (!strcmp(cmd, "inventory")) {
        snprintf(path, sizeof path, "/admin/v1/inventory");
        show = SHOW_INV;
    } else if (!strcmp(cmd, "upgrades")) {
        if (nargs != 2 || strlen(args[1]) >= 300 || strpbrk(args[1], " &#%?")) {
            fprintf(stderr, "drover ops: upgrades needs one TARGET (model:NAME or "
                            "backend:NAME)\n");
            buf_free(&body);
            return 2;
        }
        snprintf(path, sizeof path, "/admin/v1/inventory/upgrades?target=%s", args[1]);
        show = SHOW_UPGRADES;
    } else {
        buf_free(&body);
        return admin_unknown_command("drover ops", cmd, commands_list);
    }
    if (rc || (body.len && buf_append(&body, "", 1))) {
        fprintf(stderr, "drover ops: bad --nodes, --selector or --param (expected K=V)\n");
        buf_free(&body);
        return 2;
    }
    struct buf out;
    buf_init(&out, 256u << 20);
    int status = 0;
    struct json_object *root = NULL;
    int code = admin_call("drover ops", &t, method, path, body.len ? body.p : NULL, &status, &out,
                          json ? NULL : &root);
    buf_free(&body);
    struct json_object *v = NULL;
    if (code == 0 && json) {
        printf("%.*s\n", (int)out.len, out.p ? out.p : "");
    } else if (code != 0) {
        /* printed by admin_call */
    } else if (show == SHOW_ROWS && json_get_arr(root, "ops", &v) == 0) {
        print_rows(v, false,
                   all ? "no operations" : "no operations (done ones are hidden; see --all)");
    } else if (show == SHOW_DEAD && json_get_arr(root, "dead", &v) == 0) {
        print_rows(v, true, "no dead letters");
    } else if (show == SHOW_RESULTS && json_get_arr(root, "results", &v) == 0) {
        print_results(v);
        /* any per-node error makes the command fail, so scripts notice */
        for (size_t i = 0; i < json_object_array_length(v); i++)
            if (!strcmp(admin_json_str(json_object_array_get_idx(v, i), "result", ""), "error"))
                code = 1;
    } else if (show == SHOW_ROW) {
        printf("operation %s is back in the queue\n", args[1]);
        struct json_object *one = json_object_new_array();
        json_object_array_add(one, json_object_get(root));
        print_rows(one, false, NULL);
        json_object_put(one);
    } else if (show == SHOW_INV && json_get_arr(root, "nodes", &v) == 0) {
        print_inventory(v);
    } else if (show == SHOW_UPGRADES) {
        print_upgrades(root);
    } else {
        fprintf(stderr, "drover ops: the gateway's answer has an unexpected shape (see --json)\n");
        code = 1;
    }
    if (root) json_object_put(root);
    buf_free(&out);
    return code;
}
