/* yaml — libyaml event parser folded into a tree of maps, sequences and scalars with line
 * numbers. Refuses anchors/aliases/tags, duplicate keys and non-scalar keys. */
#include "base/yaml.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "base/buf.h"
#include "base/mem.h"
#include "base/strv.h"

enum { YAML_MAX_DEPTH = 32 };

static struct ynode *node_new(enum ynode_type t, int line)
{
    struct ynode *n = xcalloc(1, sizeof *n);
    n->type = t;
    n->line = line;
    return n;
}

void ynode_free(struct ynode *n)
{
    if (!n) return;
    xfree(n->scalar);
    for (size_t i = 0; i < n->n; i++) {
        if (n->keys) xfree(n->keys[i]);
        ynode_free(n->kids[i]);
    }
    xfree(n->keys);
    xfree(n->key_lines);
    xfree(n->kids);
    xfree(n);
}

static void push_kid(struct ynode *parent, char *key, int key_line, struct ynode *kid)
{
    parent->kids = xrealloc(parent->kids, (parent->n + 1) * sizeof *parent->kids);
    if (parent->type == YNODE_MAP) {
        parent->keys = xrealloc(parent->keys, (parent->n + 1) * sizeof *parent->keys);
        parent->key_lines = xrealloc(parent->key_lines, (parent->n + 1) * sizeof(int));
        parent->keys[parent->n] = key;
        parent->key_lines[parent->n] = key_line;
    }
    parent->kids[parent->n++] = kid;
}

struct ystate {
    yaml_parser_t parser;
    struct gw_error *err;
    int failed;
};

static int fail(struct ystate *st, int line, const char *fmt, const char *arg)
{
    char msg[200];
    snprintf(msg, sizeof msg, fmt, arg ? arg : "");
    gw_error_set(st->err, GW_E_PARSE, "line %d: %s", line, msg);
    st->failed = 1;
    return -1;
}

static int next_event(struct ystate *st, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&st->parser, ev)) {
        int line = (int)st->parser.problem_mark.line + 1;
        return fail(st, line, "%s", st->parser.problem ? st->parser.problem : "syntax error");
    }
    return 0;
}

static struct ynode *parse_node(struct ystate *st, yaml_event_t *ev, int depth);

static struct ynode *parse_collection(struct ystate *st, struct ynode *coll, int depth)
{
    for (;;) {
        yaml_event_t ev;
        if (next_event(st, &ev)) goto bad;
        if (ev.type == YAML_MAPPING_END_EVENT || ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            return coll;
        }
        if (coll->type == YNODE_SEQ) {
            struct ynode *kid = parse_node(st, &ev, depth + 1);
            yaml_event_delete(&ev);
            if (!kid) goto bad;
            push_kid(coll, NULL, 0, kid);
            continue;
        }
        /* map: key then value */
        int key_line = (int)ev.start_mark.line + 1;
        if (ev.type != YAML_SCALAR_EVENT) {
            yaml_event_delete(&ev);
            fail(st, key_line, "mapping keys must be plain scalars%s", NULL);
            goto bad;
        }
        char *key = xstrndup((const char *)ev.data.scalar.value, ev.data.scalar.length);
        yaml_event_delete(&ev);
        if (ynode_get(coll, key)) {
            fail(st, key_line, "duplicate key '%s'", key);
            xfree(key);
            goto bad;
        }
        if (next_event(st, &ev)) {
            xfree(key);
            goto bad;
        }
        struct ynode *val = parse_node(st, &ev, depth + 1);
        yaml_event_delete(&ev);
        if (!val) {
            xfree(key);
            goto bad;
        }
        push_kid(coll, key, key_line, val);
    }
bad:
    ynode_free(coll);
    return NULL;
}

static struct ynode *parse_node(struct ystate *st, yaml_event_t *ev, int depth)
{
    int line = (int)ev->start_mark.line + 1;
    if (depth > YAML_MAX_DEPTH) {
        fail(st, line, "nested too deep%s", NULL);
        return NULL;
    }
    switch (ev->type) {
    case YAML_SCALAR_EVENT: {
        if (ev->data.scalar.anchor || ev->data.scalar.tag) {
            fail(st, line, "anchors and tags are not supported%s", NULL);
            return NULL;
        }
        struct ynode *n = node_new(YNODE_SCALAR, line);
        n->scalar = xstrndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
        n->quoted = ev->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
                    ev->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
        return n;
    }
    case YAML_MAPPING_START_EVENT:
        if (ev->data.mapping_start.anchor || ev->data.mapping_start.tag) {
            fail(st, line, "anchors and tags are not supported%s", NULL);
            return NULL;
        }
        return parse_collection(st, node_new(YNODE_MAP, line), depth);
    case YAML_SEQUENCE_START_EVENT:
        if (ev->data.sequence_start.anchor || ev->data.sequence_start.tag) {
            fail(st, line, "anchors and tags are not supported%s", NULL);
            return NULL;
        }
        return parse_collection(st, node_new(YNODE_SEQ, line), depth);
    case YAML_ALIAS_EVENT:
        fail(st, line, "aliases are not supported%s", NULL);
        return NULL;
    default:
        fail(st, line, "unexpected YAML event%s", NULL);
        return NULL;
    }
}

struct ynode *yaml_parse(const char *p, size_t len, struct gw_error *err)
{
    struct ystate st = {.err = err};
    if (!yaml_parser_initialize(&st.parser)) {
        gw_error_set(err, GW_E_PARSE, "line 1: cannot initialise YAML parser");
        return NULL;
    }
    yaml_parser_set_input_string(&st.parser, (const unsigned char *)p, len);
    struct ynode *root = NULL;
    yaml_event_t ev;
    int done = 0;
    while (!done && !st.failed) {
        if (next_event(&st, &ev)) break;
        switch (ev.type) {
        case YAML_STREAM_START_EVENT:
        case YAML_DOCUMENT_START_EVENT:
            break;
        case YAML_DOCUMENT_END_EVENT:
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        default:
            if (root) {
                fail(&st, (int)ev.start_mark.line + 1, "more than one document%s", NULL);
                break;
            }
            root = parse_node(&st, &ev, 0);
            if (!root) st.failed = 1;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&st.parser);
    if (st.failed) {
        ynode_free(root);
        return NULL;
    }
    if (!root) return node_new(YNODE_MAP, 1);
    if (root->type == YNODE_SCALAR && root->scalar[0] == '\0') {
        ynode_free(root);
        return node_new(YNODE_MAP, 1);
    }
    return root;
}

struct ynode *yaml_load_file(const char *path, size_t max_bytes, struct gw_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        gw_error_set(err, -errno, "%s:0: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct buf b;
    buf_init(&b, max_bytes);
    char chunk[8192];
    size_t n;
    int rc = 0;
    while (!rc && (n = fread(chunk, 1, sizeof chunk, f)) > 0) rc = buf_append(&b, chunk, n);
    int ioerr = ferror(f);
    fclose(f);
    if (rc || ioerr) {
        gw_error_set(err, rc ? rc : GW_E_PARSE, "%s:0: %s", path,
                     rc ? "file larger than the YAML size cap" : "read error");
        buf_free(&b);
        return NULL;
    }
    struct gw_error perr = {0};
    struct ynode *root = yaml_parse(b.p ? b.p : "", b.len, &perr);
    buf_free(&b);
    if (!root) {
        /* perr.msg is "line N: reason"; turn it into "path:N: reason". */
        const char *m = perr.msg;
        if (strncmp(m, "line ", 5) == 0) m += 5;
        gw_error_set(err, GW_E_PARSE, "%s:%s", path, m);
    }
    return root;
}

struct ynode *ynode_get(const struct ynode *map, const char *key)
{
    if (!map || map->type != YNODE_MAP) return NULL;
    for (size_t i = 0; i < map->n; i++)
        if (strcmp(map->keys[i], key) == 0) return map->kids[i];
    return NULL;
}

int parse_bool_str(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) return *out = true, 0;
        if (strcasecmp(s, no[i]) == 0) return *out = false, 0;
    }
    return GW_E_INVALID;
}

static int split_unit(const char *s, uint64_t *num, const char **unit)
{
    size_t i = 0;
    while (s[i] >= '0' && s[i] <= '9') i++;
    if (i == 0) return GW_E_INVALID;
    if (strv_to_u64(strv_make(s, i), num)) return GW_E_INVALID;
    *unit = s + i;
    return 0;
}

int parse_duration_ms_str(const char *s, uint64_t *out)
{
    uint64_t v;
    const char *u;
    if (split_unit(s, &v, &u)) return GW_E_INVALID;
    uint64_t mul;
    if (!*u || strcmp(u, "ms") == 0)
        mul = 1;
    else if (strcmp(u, "s") == 0)
        mul = 1000;
    else if (strcmp(u, "m") == 0)
        mul = 60000;
    else if (strcmp(u, "h") == 0)
        mul = 3600000;
    else
        return GW_E_INVALID;
    if (v > UINT64_MAX / mul) return GW_E_INVALID;
    *out = v * mul;
    return 0;
}

int parse_size_bytes_str(const char *s, uint64_t *out)
{
    uint64_t v;
    const char *u;
    if (split_unit(s, &v, &u)) return GW_E_INVALID;
    uint64_t mul;
    if (!*u || strcmp(u, "B") == 0)
        mul = 1;
    else if (strcmp(u, "KiB") == 0 || strcmp(u, "KB") == 0 || strcmp(u, "k") == 0)
        mul = 1024;
    else if (strcmp(u, "MiB") == 0 || strcmp(u, "MB") == 0 || strcmp(u, "m") == 0)
        mul = 1 << 20;
    else if (strcmp(u, "GiB") == 0 || strcmp(u, "GB") == 0 || strcmp(u, "g") == 0)
        mul = 1 << 30;
    else
        return GW_E_INVALID;
    if (v > UINT64_MAX / mul) return GW_E_INVALID;
    *out = v * mul;
    return 0;
}

static const char *scalar_of(const struct ynode *n)
{
    return n && n->type == YNODE_SCALAR ? n->scalar : NULL;
}

int ynode_bool(const struct ynode *n, bool *out)
{
    const char *s = scalar_of(n);
    return s && !n->quoted ? parse_bool_str(s, out) : GW_E_INVALID;
}

int ynode_u64(const struct ynode *n, uint64_t *out)
{
    const char *s = scalar_of(n);
    return s ? (strv_to_u64(strv_from_cstr(s), out) ? GW_E_INVALID : 0) : GW_E_INVALID;
}

int ynode_double(const struct ynode *n, double *out)
{
    const char *s = scalar_of(n);
    if (!s || !*s) return GW_E_INVALID;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || errno) return GW_E_INVALID;
    *out = v;
    return 0;
}

int ynode_duration_ms(const struct ynode *n, uint64_t *out)
{
    const char *s = scalar_of(n);
    return s ? parse_duration_ms_str(s, out) : GW_E_INVALID;
}

int ynode_size_bytes(const struct ynode *n, uint64_t *out)
{
    const char *s = scalar_of(n);
    return s ? parse_size_bytes_str(s, out) : GW_E_INVALID;
}
