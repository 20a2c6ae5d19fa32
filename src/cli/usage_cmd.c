/* usage_cmd — `drover usage`: usage per key, model, node or minute from the admin API
 * (GET /admin/v1/usage). A table by default, the server's JSON with --json. */
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
    fprintf(f, "usage: drover usage [--admin URL] [--token TOKEN] [--json] [OPTIONS]\n"
               "\n"
               "  --key ID                 one key\n"
               "  --model NAME             one model\n"
               "  --since DURATION         how far back (default 24h; 90m, 7d)\n"
               "  --group-by WHAT          key (default), model, node or minute\n"
               "\n"
               "  --admin URL    admin API (default $DROVER_ADMIN_URL or http://127.0.0.1:8081)\n"
               "  --token TOKEN  admin token (default $DROVER_ADMIN_TOKEN)\n"
               "  --json         print the server's JSON\n");
}

static bool safe_arg(const char *s)
{
    if (!*s || strlen(s) > 200) return false;
    for (; *s; s++)
        if (*s == '&' || *s == '?' || *s == '#' || *s == '%' || *s == ' ' ||
            (unsigned char)*s < 0x21)
            return false;
    return true;
}

int usage_main(int argc, char **argv)
{
    struct admin_target t;
    admin_target_init(&t, 0);
    bool json = false;
    const char *key = NULL, *model = NULL, *since = "24h", *by = "key";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = true;
            continue;
        }
        if (!v || strncmp(a, "--", 2)) {
            fprintf(stderr, "drover usage: unexpected '%s' (see 'drover usage --help')\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--admin"))
            t.url = v;
        else if (!strcmp(a, "--token"))
            t.token = v;
        else if (!strcmp(a, "--key"))
            key = v;
        else if (!strcmp(a, "--model"))
            model = v;
        else if (!strcmp(a, "--since"))
            since = v;
        else if (!strcmp(a, "--group-by"))
            by = v;
        else {
            fprintf(stderr, "drover usage: unknown option '%s' (see 'drover usage --help')\n", a);
            return 2;
        }
    }
    if (strcmp(by, "key") && strcmp(by, "model") && strcmp(by, "node") && strcmp(by, "minute")) {
        fprintf(stderr, "drover usage: --group-by is key, model, node or minute\n");
        return 2;
    }
    if ((key && !safe_arg(key)) || (model && !safe_arg(model))) {
        fprintf(stderr, "drover usage: --key and --model take a plain id or model name\n");
        return 2;
    }
    uint64_t back_ms = 0;
    size_t sl = strlen(since);
    if (sl > 1 && since[sl - 1] == 'd' && sl < 12) {
        back_ms = strtoull(since, NULL, 10) * 86400000ull;
    } else if (parse_duration_ms_str(since, &back_ms)) {
        fprintf(stderr, "drover usage: --since: '%s' is not a duration (90m, 24h, 7d)\n", since);
        return 2;
    }
    struct timeval tv;
    gettimeofday(&tv, NULL);
    uint64_t now_s = (uint64_t)tv.tv_sec, back_s = back_ms / 1000;
    char path[700];
    int n = snprintf(path, sizeof path, "/admin/v1/usage?group_by=%s&from=%llu&to=%llu", by,
                     (unsigned long long)(now_s > back_s ? now_s - back_s : 0),
                     (unsigned long long)(now_s + 60));
    if (key) n += snprintf(path + n, sizeof path - (size_t)n, "&key=%s", key);
    if (model) snprintf(path + n, sizeof path - (size_t)n, "&model=%s", model);
    struct buf out;
    buf_init(&out, 64u << 20);
    int status = 0;
    struct json_object *root = NULL;
    int code =
        admin_call("drover usage", &t, "GET", path, NULL, &status, &out, json ? NULL : &root);
    if (code == 0 && json) {
        printf("%.*s\n", (int)out.len, out.p ? out.p : "");
    } else if (code == 0) {
        struct json_object *rows = NULL;
        char head[16];
        snprintf(head, sizeof head, "%s", by);
        for (char *p = head; *p; p++) *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
        const char *cols[] = {head, "REQUESTS", "ERRORS", "PROMPT", "COMPLETION", "TOTAL"};
        struct table tb;
        table_init(&tb, cols, 6);
        if (json_get_arr(root, "rows", &rows) == 0) {
            for (size_t i = 0; i < json_object_array_length(rows); i++) {
                struct json_object *r = json_object_array_get_idx(rows, i);
                table_add(&tb, admin_json_str(r, by, "-"));
                table_add(&tb, admin_json_str(r, "requests", "0"));
                table_add(&tb, admin_json_str(r, "errors", "0"));
                table_add(&tb, admin_json_str(r, "prompt_tokens", "0"));
                table_add(&tb, admin_json_str(r, "completion_tokens", "0"));
                table_add(&tb, admin_json_str(r, "total_tokens", "0"));
            }
        }
        table_print(&tb, stdout, "no usage in that window");
        table_free(&tb);
    }
    if (root) json_object_put(root);
    buf_free(&out);
    return code;
}
