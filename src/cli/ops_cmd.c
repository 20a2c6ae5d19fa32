/* ops_cmd — `drover ops …`: durable fleet operations through the admin API (docs/ops.md).
 * Tables (cli/table.h) by default, the server's JSON with --json; a refused call exits 1 with
 * the server's status, code and reason and what to do, bad usage exits 2. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/mem.h"
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
            "  cancel ID               give up on a dead letter for good\n"
            "  inventory               models and backends of every node, with digests\n"
            "  upgrades TARGET         which nodes have an outdated digest of TARGET\n"
            "  upgrades [--apply]      every node's installed models and backends from its\n"
            "                          agent's reports: what is behind the source's latest\n"
            "                          digest and which nodes disagree with the others;\n"
            "                          --apply queues upgrade operations to bring them level\n"
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

/* ---- the fleet's upgrade view (issue 18): from every node's reported "installed" ---------- */

struct up_row {
    const char *node, *kind, *name, *digest, *latest;
};

/* The digest a node should have for (kind, name): the latest one an agent's check reported
 * (the most recent check wins), else the one most nodes have. Borrowed from rows. */
static const char *up_target(const struct up_row *r, size_t n, const char *kind, const char *name)
{
    const char *latest = NULL, *best = NULL;
    size_t best_votes = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(r[i].kind, kind) || strcmp(r[i].name, name)) continue;
        if (r[i].latest[0] && !latest) latest = r[i].latest;
        size_t votes = 0;
        for (size_t j = 0; j < n; j++)
            votes += !strcmp(r[j].kind, kind) && !strcmp(r[j].name, name) &&
                     !strcmp(r[j].digest, r[i].digest);
        if (r[i].digest[0] && votes > best_votes) best = r[i].digest, best_votes = votes;
    }
    return latest ? latest : best;
}

static int fleet_upgrades(struct admin_target *t, bool json, bool apply)
{
    struct buf out;
    buf_init(&out, 256u << 20);
    int status = 0;
    struct json_object *root = NULL, *nodes = NULL;
    int code = admin_call("drover ops", t, "GET", "/admin/v1/nodes", NULL, &status, &out, &root);
    if (code) {
        buf_free(&out);
        return code;
    }
    struct up_row *rows = NULL;
    size_t n = 0;
    for (size_t i = 0;
         json_get_arr(root, "nodes", &nodes) == 0 && i < json_object_array_length(nodes); i++) {
        struct json_object *nd = json_object_array_get_idx(nodes, i), *disc = NULL, *arr = NULL;
        if (!json_object_object_get_ex(nd, "discovery", &disc) ||
            json_get_arr(disc, "installed", &arr))
            continue;
        for (size_t k = 0; k < json_object_array_length(arr); k++) {
            struct json_object *it = json_object_array_get_idx(arr, k);
            rows = xrealloc(rows, (n + 1) * sizeof *rows);
            rows[n++] =
                (struct up_row){admin_json_str(nd, "name", "?"), admin_json_str(it, "kind", "?"),
                                admin_json_str(it, "name", "?"), admin_json_str(it, "digest", ""),
                                admin_json_str(it, "latest_digest", "")};
        }
    }
    struct buf j;
    buf_init(&j, 16u << 20);
    int rc = buf_append_cstr(&j, "{\"items\":[");
    static const char *const cols[] = {"NODE", "KIND", "NAME", "DIGEST", "LATEST", "STATE"};
    struct table tb;
    table_init(&tb, cols, 6);
    for (size_t i = 0; i < n && !rc; i++) {
        const char *want = up_target(rows, n, rows[i].kind, rows[i].name);
        bool others_differ = false;
        for (size_t k = 0; k < n; k++)
            others_differ |= !strcmp(rows[k].kind, rows[i].kind) &&
                             !strcmp(rows[k].name, rows[i].name) &&
                             strcmp(rows[k].digest, rows[i].digest) != 0;
        /* checked against the source: current or behind; unchecked: agrees with most nodes
         * or not (a node that disagrees is the one to look at) */
        const char *state = !rows[i].digest[0] ? "unknown"
                            : rows[i].latest[0]
                                ? (strcmp(rows[i].digest, rows[i].latest) ? "behind" : "current")
                            : want && strcmp(rows[i].digest, want) ? "disagrees"
                            : others_differ                        ? "majority"
                                                                   : "unchecked";
        table_add(&tb, rows[i].node);
        table_add(&tb, rows[i].kind);
        table_add(&tb, rows[i].name);
        table_add(&tb, rows[i].digest[0] ? rows[i].digest : "-");
        table_add(&tb, rows[i].latest[0] ? rows[i].latest : "-");
        table_add(&tb, state);
        rc = buf_appendf(&j, "%s{\"node\":", i ? "," : "");
        if (!rc) rc = json_append_str(&j, rows[i].node, strlen(rows[i].node));
        char tgt[400];
        snprintf(tgt, sizeof tgt, "%s:%s", rows[i].kind, rows[i].name);
        if (!rc) rc = buf_append_cstr(&j, ",\"target\":");
        if (!rc) rc = json_append_str(&j, tgt, strlen(tgt));
        if (!rc) rc = buf_append_cstr(&j, ",\"digest\":");
        if (!rc) rc = json_append_str(&j, rows[i].digest, strlen(rows[i].digest));
        if (!rc) rc = buf_append_cstr(&j, ",\"want\":");
        if (!rc) rc = want ? json_append_str(&j, want, strlen(want)) : buf_append_cstr(&j, "null");
        if (!rc) rc = buf_appendf(&j, ",\"state\":\"%s\"}", state);
    }
    if (!rc) rc = buf_append_cstr(&j, "]}");
    if (json && !apply)
        printf("%.*s\n", (int)j.len, j.p);
    else if (!json)
        table_print(&tb, stdout,
                    "no node reports installed items (agents report them with "
                    "upgrade checks configured)");
    table_free(&tb);
    buf_free(&j);
    /* --apply: one upgrade operation per item, to the nodes whose digest is not the wanted one */
    for (size_t i = 0; apply && i < n && code == 0; i++) {
        bool first_of_item = true;
        for (size_t k = 0; k < i; k++)
            first_of_item &=
                strcmp(rows[k].kind, rows[i].kind) || strcmp(rows[k].name, rows[i].name);
        const char *want = up_target(rows, n, rows[i].kind, rows[i].name);
        if (!first_of_item || !want) continue;
        struct buf body, res;
        buf_init(&body, 1u << 20);
        char tgt[400];
        snprintf(tgt, sizeof tgt, "%s:%s", rows[i].kind, rows[i].name);
        int brc = buf_append_cstr(&body, "{\"op\":\"upgrade\",\"target\":");
        if (!brc) brc = json_append_str(&body, tgt, strlen(tgt));
        if (!brc) brc = buf_append_cstr(&body, ",\"nodes\":[");
        size_t k2 = 0;
        for (size_t k = 0; k < n && !brc; k++) {
            if (strcmp(rows[k].kind, rows[i].kind) || strcmp(rows[k].name, rows[i].name) ||
                !strcmp(rows[k].digest, want))
                continue;
            if (k2++) brc = buf_append_cstr(&body, ",");
            if (!brc) brc = json_append_str(&body, rows[k].node, strlen(rows[k].node));
        }
        if (!brc) brc = buf_append_cstr(&body, "]}");
        if (brc || !k2 || buf_append(&body, "", 1)) {
            buf_free(&body);
            continue;
        }
        struct json_object *ans = NULL, *v = NULL;
        buf_init(&res, 16u << 20);
        code = admin_call("drover ops", t, "POST", "/admin/v1/ops", body.p, &status, &res,
                          json ? NULL : &ans);
        if (code == 0 && json)
            printf("%.*s\n", (int)res.len, res.p ? res.p : "");
        else if (code == 0 && json_get_arr(ans, "results", &v) == 0) {
            printf("upgrade %s (to %s):\n", tgt, want);
            print_results(v);
        }
        if (ans) json_object_put(ans);
        buf_free(&res);
        buf_free(&body);
    }
    xfree(rows);
    json_object_put(root);
    buf_free(&out);
    return code;
}

static const char commands_list[] =
    "install, upgrade, delete, load, unload, ls, dead, retry, cancel, inventory, upgrades";

int ops_main(int argc, char **argv)
{
    struct admin_target t;
    admin_target_init(&t, 15 * 60 * 1000);
    bool json = false, all = false, apply = false;
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
        } else if (!strcmp(a, "--apply")) {
            apply = true;
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
    } else if (!strcmp(cmd, "retry") || !strcmp(cmd, "cancel")) {
        bool retry = !strcmp(cmd, "retry");
        if (nargs != 2 || !*args[1] || strspn(args[1], "0123456789") != strlen(args[1]) ||
            strlen(args[1]) > 18) {
            fprintf(stderr,
                    "drover ops: %s needs the ID of a dead letter (see 'drover ops "
                    "dead')\n",
                    cmd);
            buf_free(&body);
            return 2;
        }
        snprintf(path, sizeof path, "/admin/v1/ops/dead/%s%s", args[1], retry ? "/retry" : "");
        method = retry ? "POST" : "DELETE";
        show = SHOW_ROW;
    } else if (!strcmp(cmd, "inventory")) {
        snprintf(path, sizeof path, "/admin/v1/inventory");
        show = SHOW_INV;
    } else if (!strcmp(cmd, "upgrades") && nargs == 1) {
        buf_free(&body);
        return fleet_upgrades(&t, json, apply);
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
