/* nodes_cmd — `drover nodes …`: the admin API's node calls as a command. Tables (cli/table.h)
 * by default, the server's JSON with --json; a refused call exits 1 with the server's status,
 * code and reason and what to do, bad usage (an unknown command or option) exits 2. */
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
    fprintf(f, "usage: drover nodes [--admin URL] [--token TOKEN] [--json] COMMAND [ARGS]\n"
               "\n"
               "  ls [--all]               list nodes (--all: removed ones too)\n"
               "  show NAME                every axis of one node\n"
               "  approve NAME             a pending node may serve (its agent gets a secret)\n"
               "  reject NAME              refuse a pending node\n"
               "  drain NAME               no new requests; in-flight ones finish\n"
               "  resume NAME              take requests again after a drain\n"
               "  recover NAME             end an exclusion and reset the fault record\n"
               "  rm NAME                  remove the node and its secret\n"
               "  label NAME [KEY=VALUE | KEY-]...   show, set or delete labels\n"
               "\n"
               "  --admin URL    admin API (default $DROVER_ADMIN_URL or http://127.0.0.1:8081)\n"
               "  --token TOKEN  admin token (default $DROVER_ADMIN_TOKEN)\n"
               "  --json         print the server's JSON instead of a table\n");
}

static const char *const node_cols[] = {"NAME",     "ADMIN",  "LIVE",     "ROUTABLE",
                                        "EXCLUDED", "FAULTS", "INFLIGHT", "KIND",
                                        "SOURCE",   "LABELS", "MODELS"};

static void add_node_row(struct table *t, struct json_object *o)
{
    char labels[512], models[512];
    struct json_object *v = NULL;
    table_add(t, admin_json_str(o, "name", "?"));
    table_add(t, admin_json_str(o, "admin", "?"));
    table_add(t, admin_json_str(o, "liveness", "?"));
    table_add(t, admin_json_str(o, "routable", "?"));
    table_add(t, admin_json_str(o, "excluded", "?"));
    table_add(t, admin_json_str(o, "consecutive_faults", "?"));
    table_add(t, admin_json_str(o, "in_flight", "?"));
    table_add(t, admin_json_str(o, "kind", "?"));
    table_add(t, admin_json_str(o, "source", "?"));
    table_add(t, json_object_object_get_ex(o, "labels", &v)
                     ? table_json_cell(v, labels, sizeof labels)
                     : "-");
    v = NULL;
    table_add(t, json_object_object_get_ex(o, "models", &v)
                     ? table_json_cell(v, models, sizeof models)
                     : "-");
}

static void print_nodes(struct json_object *nodes, const char *empty)
{
    struct table t;
    table_init(&t, node_cols, sizeof node_cols / sizeof node_cols[0]);
    for (size_t i = 0; i < json_object_array_length(nodes); i++)
        add_node_row(&t, json_object_array_get_idx(nodes, i));
    table_print(&t, stdout, empty);
    table_free(&t);
}

static void print_kv(struct json_object *o, const char *empty)
{
    struct table t;
    table_init(&t, NULL, 2);
    table_add_json_kv(&t, NULL, o);
    table_print(&t, stdout, empty);
    table_free(&t);
}

/* Builds {"k":"v","k2":null} from KEY=VALUE and KEY- arguments. */
static int label_body(int argc, char **argv, struct buf *b)
{
    int rc = buf_append_cstr(b, "{");
    for (int i = 0; i < argc && !rc; i++) {
        const char *a = argv[i];
        const char *eq = strchr(a, '=');
        size_t alen = strlen(a);
        if (i) rc = buf_append_cstr(b, ",");
        if (eq && eq != a) {
            if (!rc) rc = json_append_str(b, a, (size_t)(eq - a));
            if (!rc) rc = buf_append_cstr(b, ":");
            if (!rc) rc = json_append_str(b, eq + 1, strlen(eq + 1));
        } else if (!eq && alen > 1 && a[alen - 1] == '-') {
            if (!rc) rc = json_append_str(b, a, alen - 1);
            if (!rc) rc = buf_append_cstr(b, ":null");
        } else {
            fprintf(stderr, "drover nodes: label '%s': expected KEY=VALUE or KEY-\n", a);
            return 2;
        }
    }
    if (!rc) rc = buf_append_cstr(b, "}");
    return rc ? 2 : 0;
}

static bool valid_name(const char *s)
{
    if (!*s || strlen(s) > 63) return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-'))
            return false;
    return true;
}

static const char commands_list[] = "ls, show, approve, reject, drain, resume, recover, rm, label";

int nodes_main(int argc, char **argv)
{
    struct admin_target t;
    admin_target_init(&t, 0);
    bool json = false, all = false;
    char *args[64];
    int nargs = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--json") == 0) {
            json = true;
        } else if (strcmp(a, "--all") == 0) {
            all = true;
        } else if (strcmp(a, "--admin") == 0 && i + 1 < argc) {
            t.url = argv[++i];
        } else if (strcmp(a, "--token") == 0 && i + 1 < argc) {
            t.token = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "drover nodes: unknown option '%s' (see 'drover nodes --help')\n", a);
            return 2;
        } else if (nargs < 64) {
            args[nargs++] = argv[i];
        } else {
            fprintf(stderr, "drover nodes: too many arguments\n");
            return 2;
        }
    }
    if (nargs == 0) {
        usage(stderr);
        return 2;
    }
    const char *cmd = args[0];
    char path[256];
    const char *method = "GET";
    struct buf body;
    buf_init(&body, 64 * 1024);
    enum { SHOW_LIST, SHOW_NODE, SHOW_ROW, SHOW_LABELS } show = SHOW_NODE;
    static const struct {
        const char *cmd, *action, *done;
    } actions[] = {{"approve", "approve", "approved"},  {"reject", "reject", "rejected"},
                   {"drain", "drain", "draining"},      {"resume", "resume", "resumed"},
                   {"recover", "recover", "recovered"}, {"rm", "remove", "removed"}};
    const char *action = NULL, *done = NULL;
    for (size_t k = 0; k < sizeof actions / sizeof actions[0]; k++)
        if (strcmp(cmd, actions[k].cmd) == 0) action = actions[k].action, done = actions[k].done;
    bool known = action || !strcmp(cmd, "ls") || !strcmp(cmd, "list") || !strcmp(cmd, "show") ||
                 !strcmp(cmd, "label") || !strcmp(cmd, "labels");
    if (!known) {
        buf_free(&body);
        return admin_unknown_command("drover nodes", cmd, commands_list);
    }
    if (strcmp(cmd, "ls") == 0 || strcmp(cmd, "list") == 0) {
        snprintf(path, sizeof path, "/admin/v1/nodes%s", all ? "?all=1" : "");
        show = SHOW_LIST;
    } else if (nargs < 2) {
        fprintf(stderr, "drover nodes: %s needs a node name (see 'drover nodes --help')\n", cmd);
        buf_free(&body);
        return 2;
    } else if (!valid_name(args[1])) {
        fprintf(stderr, "drover nodes: '%s' is not a node name (1-63 of A-Z a-z 0-9 . _ -)\n",
                args[1]);
        buf_free(&body);
        return 2;
    } else if (strcmp(cmd, "show") == 0) {
        snprintf(path, sizeof path, "/admin/v1/nodes/%s", args[1]);
    } else if (action) {
        snprintf(path, sizeof path, "/admin/v1/nodes/%s/%s", args[1], action);
        method = "POST";
        show = SHOW_ROW;
    } else {
        snprintf(path, sizeof path, "/admin/v1/nodes/%s/labels", args[1]);
        show = SHOW_LABELS;
        if (nargs > 2) {
            int rc = label_body(nargs - 2, args + 2, &body);
            if (rc) {
                buf_free(&body);
                return rc;
            }
            method = "PATCH";
        }
    }
    if (body.len && buf_append(&body, "", 1)) { /* NUL for the request */
        buf_free(&body);
        return 2;
    }
    struct buf out;
    buf_init(&out, 256u << 20);
    int status = 0;
    struct json_object *root = NULL;
    int code = admin_call("drover nodes", &t, method, path, body.len ? body.p : NULL, &status, &out,
                          json ? NULL : &root);
    buf_free(&body);
    if (code == 0 && json) {
        printf("%.*s\n", (int)out.len, out.p ? out.p : "");
    } else if (code == 0) {
        struct json_object *v = NULL;
        if (show == SHOW_LIST && json_get_arr(root, "nodes", &v) == 0) {
            print_nodes(v, all ? "no nodes" : "no nodes (removed ones are hidden; see --all)");
        } else if (show == SHOW_LABELS && json_get_obj(root, "labels", &v) == 0) {
            /* KEY=VALUE, the form `label` takes, so a listing can be pasted back */
            struct table lt;
            table_init(&lt, NULL, 1);
            json_object_object_foreach(v, k, lv)
            {
                table_addf(&lt, "%s=%s", k, json_object_get_string(lv));
            }
            table_print(&lt, stdout, "no labels");
            table_free(&lt);
        } else if (show == SHOW_ROW) {
            printf("node %s %s\n", args[1], done);
            struct json_object *one = json_object_new_array();
            json_object_array_add(one, json_object_get(root));
            print_nodes(one, NULL);
            json_object_put(one);
        } else {
            print_kv(root, "the gateway answered an empty object");
        }
    }
    if (root) json_object_put(root);
    buf_free(&out);
    return code;
}
