/* nodes_cmd — `drover nodes …`: the admin API's node calls as a command. Readable tables by
 * default, the server's JSON with --json; a refused call exits 1 with the server's status, code
 * and reason on one line, bad usage exits 2. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/mem.h"
#include "cli/admin_client.h"
#include "cli/commands.h"

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

static void print_table(struct json_object *nodes)
{
    printf("%-20s %-9s %-9s %-8s %-8s %6s %8s %-8s %-6s %-24s %s\n", "NAME", "ADMIN", "LIVE",
           "ROUTABLE", "EXCLUDED", "FAULTS", "INFLIGHT", "KIND", "SOURCE", "LABELS", "MODELS");
    size_t n = json_object_array_length(nodes);
    for (size_t i = 0; i < n; i++) {
        struct json_object *o = json_object_array_get_idx(nodes, i);
        struct json_object *v = NULL;
        char labels[256] = "", models[256] = "";
        size_t lu = 0, mu = 0;
        if (json_object_object_get_ex(o, "labels", &v) &&
            json_object_is_type(v, json_type_object)) {
            json_object_object_foreach(v, k, lv)
            {
                int w = snprintf(labels + lu, sizeof labels - lu, "%s%s=%s", lu ? "," : "", k,
                                 json_object_get_string(lv));
                if (w < 0 || (size_t)w >= sizeof labels - lu) break;
                lu += (size_t)w;
            }
        }
        if (json_object_object_get_ex(o, "models", &v) && json_object_is_type(v, json_type_array)) {
            for (size_t m = 0; m < json_object_array_length(v); m++) {
                int w = snprintf(models + mu, sizeof models - mu, "%s%s", mu ? "," : "",
                                 admin_json_str(json_object_array_get_idx(v, m), "id", "?"));
                if (w < 0 || (size_t)w >= sizeof models - mu) break;
                mu += (size_t)w;
            }
        }
        printf("%-20s %-9s %-9s %-8s %-8s %6s %8s %-8s %-6s %-24s %s\n",
               admin_json_str(o, "name", "?"), admin_json_str(o, "admin", "?"),
               admin_json_str(o, "liveness", "?"), admin_json_str(o, "routable", "?"),
               admin_json_str(o, "excluded", "?"), admin_json_str(o, "consecutive_faults", "?"),
               admin_json_str(o, "in_flight", "?"), admin_json_str(o, "kind", "?"),
               admin_json_str(o, "source", "?"), lu ? labels : "-", mu ? models : "-");
    }
}

static void print_node(struct json_object *o)
{
    json_object_object_foreach(o, k, v)
    {
        const char *s = json_object_is_type(v, json_type_string)
                            ? json_object_get_string(v)
                            : json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);
        printf("%-20s %s\n", k, s);
    }
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

int nodes_main(int argc, char **argv)
{
    struct admin_target t = {
        .url = getenv("DROVER_ADMIN_URL") ? getenv("DROVER_ADMIN_URL") : "http://127.0.0.1:8081",
        .token = getenv("DROVER_ADMIN_TOKEN"),
    };
    bool json = false, all = false;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--json") == 0) {
            json = true;
        } else if (strcmp(a, "--admin") == 0 && i + 1 < argc) {
            t.url = argv[++i];
        } else if (strcmp(a, "--token") == 0 && i + 1 < argc) {
            t.token = argv[++i];
        } else {
            fprintf(stderr, "drover nodes: unknown option '%s' (see --help)\n", a);
            return 2;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[i++];
    /* options after the command: --json and --all */
    char *args[64];
    int nargs = 0;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (strcmp(argv[i], "--all") == 0)
            all = true;
        else if (nargs < 64)
            args[nargs++] = argv[i];
    }
    char path[256];
    const char *method = "GET";
    struct buf body;
    buf_init(&body, 64 * 1024);
    bool want_list = false, want_labels = false;
    static const struct {
        const char *cmd, *action;
    } actions[] = {{"approve", "approve"}, {"reject", "reject"},   {"drain", "drain"},
                   {"resume", "resume"},   {"recover", "recover"}, {"rm", "remove"}};
    const char *action = NULL;
    for (size_t k = 0; k < sizeof actions / sizeof actions[0]; k++)
        if (strcmp(cmd, actions[k].cmd) == 0) action = actions[k].action;
    if (strcmp(cmd, "ls") == 0 || strcmp(cmd, "list") == 0) {
        snprintf(path, sizeof path, "/admin/v1/nodes%s", all ? "?all=1" : "");
        want_list = true;
    } else if (nargs < 1) {
        fprintf(stderr, "drover nodes: %s needs a node name (see --help)\n", cmd);
        buf_free(&body);
        return 2;
    } else if (!valid_name(args[0])) {
        fprintf(stderr, "drover nodes: '%s' is not a node name\n", args[0]);
        buf_free(&body);
        return 2;
    } else if (strcmp(cmd, "show") == 0) {
        snprintf(path, sizeof path, "/admin/v1/nodes/%s", args[0]);
    } else if (action) {
        snprintf(path, sizeof path, "/admin/v1/nodes/%s/%s", args[0], action);
        method = "POST";
    } else if (strcmp(cmd, "label") == 0 || strcmp(cmd, "labels") == 0) {
        snprintf(path, sizeof path, "/admin/v1/nodes/%s/labels", args[0]);
        want_labels = true;
        if (nargs > 1) {
            int rc = label_body(nargs - 1, args + 1, &body);
            if (rc) {
                buf_free(&body);
                return rc;
            }
            method = "PATCH";
            want_labels = false;
        }
    } else {
        fprintf(stderr, "drover nodes: unknown command '%s' (see --help)\n", cmd);
        buf_free(&body);
        return 2;
    }
    if (body.len && buf_append(&body, "", 1)) { /* NUL for the request */
        buf_free(&body);
        return 2;
    }
    struct buf out;
    buf_init(&out, 256u << 20);
    int status = 0;
    struct gw_error err = {0};
    if (admin_request(&t, method, path, body.len ? body.p : NULL, &status, &out, &err)) {
        fprintf(stderr, "drover nodes: %s\n", err.msg);
        buf_free(&body);
        buf_free(&out);
        return 1;
    }
    buf_free(&body);
    int code = 0;
    if (status != 200) {
        code = admin_print_refusal("drover nodes", status, &out);
    } else if (json) {
        printf("%.*s\n", (int)out.len, out.p ? out.p : "");
    } else {
        struct json_object *root = json_parse_strict(out.p ? out.p : "", out.len, 64, NULL);
        struct json_object *v = NULL;
        if (!root) {
            fprintf(stderr, "drover nodes: the server's answer is not JSON\n");
            code = 1;
        } else if (want_list && json_get_arr(root, "nodes", &v) == 0) {
            print_table(v);
        } else if (want_labels && json_get_obj(root, "labels", &v) == 0) {
            json_object_object_foreach(v, k, lv) printf("%s=%s\n", k, json_object_get_string(lv));
        } else {
            print_node(root);
        }
        if (root) json_object_put(root);
    }
    buf_free(&out);
    return code;
}
