/* fuzz_node_api — every parser of proto/node_api.h (join request and answer, health, the
 * models answer, a bare MODEL array, discovery, the inventory) and the name parsers of
 * proto/op_result.h over arbitrary bytes. Byte 0 picks the message; the rest is the body (copied to
 * an exact-size buffer so ASan sees any overread). A refusal must be a negative code with a message
 * (and, for the join, a param naming the field when the body was JSON). An accepted message must
 * hold what the gateway relies on (valid name, http:// url, 64-hex secret or none, caps on labels,
 * gpus and models) and must round-trip: emit → parse gives the same struct, and emitting that
 * gives the same bytes. Any difference traps. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/json.h"
#include "base/mem.h"
#include "proto/node_api.h"
#include "proto/op_result.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum {
    MSG_JOIN,
    MSG_JOIN_ANSWER,
    MSG_HEALTH,
    MSG_MODELS_ANSWER,
    MSG_MODELS_ARRAY,
    MSG_DISCOVERY,
    MSG_NAMES,
    MSG_INVENTORY, /* after NAMES: the seeds' first bytes keep their messages */
    MSG_COUNT,
};

enum { FZ_OUT_CAP = 8 * 1024 * 1024 };

static void check_refusal(int rc, const struct gw_error *err)
{
    if (rc >= 0 || err->code != rc || !err->msg[0]) __builtin_trap();
}

static bool is_c_string(const char *s, size_t cap)
{
    return strnlen(s, cap) < cap;
}

/* emit → parse → emit: the second parse must equal the first (eq) and the bytes must agree */
#define ROUND_TRIP(type, first, emit, parse_again, eq, release)                                    \
    do {                                                                                           \
        struct buf b1, b2;                                                                         \
        buf_init(&b1, FZ_OUT_CAP);                                                                 \
        buf_init(&b2, FZ_OUT_CAP);                                                                 \
        if (emit(&b1, (first))) __builtin_trap();                                                  \
        type second;                                                                               \
        struct gw_error e2 = {0};                                                                  \
        if (parse_again) __builtin_trap();                                                         \
        if (!eq((first), &second)) __builtin_trap();                                               \
        if (emit(&b2, &second)) __builtin_trap();                                                  \
        if (!strv_eq(buf_view(&b1), buf_view(&b2))) __builtin_trap();                              \
        release;                                                                                   \
        buf_free(&b1);                                                                             \
        buf_free(&b2);                                                                             \
    } while (0)

/* --- equality ------------------------------------------------------------------------------ */

static bool models_eq(const struct node_api_models *a, const struct node_api_models *b)
{
    if (a->n != b->n) return false;
    for (size_t i = 0; i < a->n; i++) {
        const struct node_api_model *x = &a->v[i], *y = &b->v[i];
        if (strcmp(x->id, y->id) || x->status != y->status || x->caps != y->caps ||
            x->in_flight != y->in_flight)
            return false;
        /* size_mb: a negative one is "unknown" and not emitted */
        if ((x->size_mb < 0 ? -1 : x->size_mb) != (y->size_mb < 0 ? -1 : y->size_mb)) return false;
    }
    return true;
}

static bool gpu_eq(const struct node_api_gpu *a, const struct node_api_gpu *b)
{
    return a->index == b->index && !strcmp(a->name, b->name) &&
           (a->vram_total_mb < 0 ? -1 : a->vram_total_mb) ==
               (b->vram_total_mb < 0 ? -1 : b->vram_total_mb) &&
           (a->vram_free_mb < 0 ? -1 : a->vram_free_mb) ==
               (b->vram_free_mb < 0 ? -1 : b->vram_free_mb) &&
           !strcmp(a->compute_capability, b->compute_capability) &&
           !strcmp(a->driver_version, b->driver_version) &&
           !strcmp(a->cuda_version, b->cuda_version);
}

static bool discovery_eq(const struct node_api_discovery *a, const struct node_api_discovery *b)
{
    if (strcmp(a->hostname, b->hostname) || strcmp(a->os, b->os) || strcmp(a->kernel, b->kernel))
        return false;
    if ((a->cpus < 0 ? -1 : a->cpus) != (b->cpus < 0 ? -1 : b->cpus)) return false;
    if ((a->ram_mb < 0 ? -1 : a->ram_mb) != (b->ram_mb < 0 ? -1 : b->ram_mb)) return false;
    if (a->n_gpus != b->n_gpus) return false;
    for (size_t i = 0; i < a->n_gpus; i++)
        if (!gpu_eq(&a->gpus[i], &b->gpus[i])) return false;
    return true; /* ops are emitted but not parsed here (gw/ops.c reads them from the JSON) */
}

static bool join_eq(const struct node_api_join *a, const struct node_api_join *b)
{
    if (strcmp(a->name, b->name) || strcmp(a->url, b->url) || a->engine != b->engine ||
        a->n_labels != b->n_labels || strcmp(a->secret, b->secret) ||
        a->has_discovery != b->has_discovery || strcmp(a->agent_version, b->agent_version))
        return false;
    for (size_t i = 0; i < a->n_labels; i++)
        if (strcmp(a->labels[i].key, b->labels[i].key) ||
            strcmp(a->labels[i].value, b->labels[i].value))
            return false;
    return !a->has_discovery || discovery_eq(&a->discovery, &b->discovery);
}

static bool join_answer_eq(const struct node_api_join_answer *a,
                           const struct node_api_join_answer *b)
{
    return !strcmp(a->name, b->name) && a->state == b->state && !strcmp(a->secret, b->secret) &&
           a->poll_ms == b->poll_ms;
}

static bool inv_items_eq(const struct node_api_inv_items *a, const struct node_api_inv_items *b)
{
    if (a->n != b->n) return false;
    for (size_t i = 0; i < a->n; i++) {
        const struct node_api_inv_item *x = &a->v[i], *y = &b->v[i];
        if (strcmp(x->name, y->name) || strcmp(x->version, y->version) ||
            strcmp(x->digest, y->digest) || strcmp(x->latest_digest, y->latest_digest))
            return false;
    }
    return true;
}

static bool inventory_eq(const struct node_api_inventory *a, const struct node_api_inventory *b)
{
    return inv_items_eq(&a->models, &b->models) && inv_items_eq(&a->backends, &b->backends);
}

static bool health_eq(const struct node_api_health *a, const struct node_api_health *b)
{
    return a->ok == b->ok && a->engine == b->engine && !strcmp(a->engine_url, b->engine_url) &&
           a->engine_reachable == b->engine_reachable && a->in_flight == b->in_flight &&
           a->queued == b->queued && models_eq(&a->models, &b->models);
}

/* --- invariants of an accepted message ----------------------------------------------------- */

static void check_models(const struct node_api_models *l)
{
    if (l->n > NODE_API_MAX_MODELS || l->n > l->cap) __builtin_trap();
    for (size_t i = 0; i < l->n; i++) {
        const struct node_api_model *m = &l->v[i];
        if (!is_c_string(m->id, sizeof m->id)) __builtin_trap();
        if ((unsigned)m->status > NODE_API_MODEL_ON_DISK) __builtin_trap();
        if (m->caps & ~(unsigned)CAP_ALL) __builtin_trap(); /* the six CAP_* bits */
    }
}

static void check_discovery(const struct node_api_discovery *d)
{
    if (d->n_gpus > NODE_API_MAX_GPUS || d->n_ops > sizeof d->ops / sizeof d->ops[0])
        __builtin_trap();
    if (!is_c_string(d->hostname, sizeof d->hostname) || !is_c_string(d->os, sizeof d->os) ||
        !is_c_string(d->kernel, sizeof d->kernel))
        __builtin_trap();
}

static void check_join(const struct node_api_join *j)
{
    if (!node_api_name_is_valid(strv_from_cstr(j->name))) __builtin_trap();
    if ((strncmp(j->url, "http://", 7) != 0 && strncmp(j->url, "https://", 8) != 0) ||
        !is_c_string(j->url, sizeof j->url))
        __builtin_trap();
    if ((unsigned)j->engine > NODE_KIND_VLLM) __builtin_trap();
    if (j->n_labels > NODE_API_MAX_LABELS) __builtin_trap();
    for (size_t i = 0; i < j->n_labels; i++)
        if (!j->labels[i].key[0]) __builtin_trap();
    if (j->secret[0] && !node_api_secret_is_valid(strv_from_cstr(j->secret))) __builtin_trap();
    if (j->has_discovery) check_discovery(&j->discovery);
}

/* --- one message type each ----------------------------------------------------------------- */

static void fuzz_join(const char *p, size_t n)
{
    struct node_api_join *j = xcalloc(1, sizeof *j); /* ~25 KiB: off the fuzzer's stack */
    struct node_api_join *j2 = xcalloc(1, sizeof *j2);
    char param[NODE_API_MAX_PARAM];
    struct gw_error err = {0};
    int rc = node_api_join_parse(p, n, j, param, &err);
    if (rc) {
        check_refusal(rc, &err);
        if (!is_c_string(param, sizeof param)) __builtin_trap();
        /* a body that parsed as a JSON object names the field it was refused for */
        if (rc == GW_E_INVALID && !param[0]) {
            struct gw_error e = {0};
            struct json_object *o = json_parse_strict(p, n, NODE_API_MAX_DEPTH, &e);
            if (o && json_object_is_type(o, json_type_object)) __builtin_trap();
            json_object_put(o);
        }
    } else {
        check_join(j);
        struct buf b1, b2;
        buf_init(&b1, FZ_OUT_CAP);
        buf_init(&b2, FZ_OUT_CAP);
        if (node_api_join_emit(&b1, j)) __builtin_trap();
        struct gw_error e2 = {0};
        if (node_api_join_parse(b1.p, b1.len, j2, NULL, &e2)) __builtin_trap();
        if (!join_eq(j, j2)) __builtin_trap();
        if (node_api_join_emit(&b2, j2)) __builtin_trap();
        if (!strv_eq(buf_view(&b1), buf_view(&b2))) __builtin_trap();
        buf_free(&b1);
        buf_free(&b2);
    }
    xfree(j);
    xfree(j2);
}

static void fuzz_join_answer(const char *p, size_t n)
{
    struct node_api_join_answer a;
    struct gw_error err = {0};
    int rc = node_api_join_answer_parse(p, n, &a, &err);
    if (rc) {
        check_refusal(rc, &err);
        return;
    }
    if (!is_c_string(a.name, sizeof a.name)) __builtin_trap();
    if (a.secret[0] && !node_api_secret_is_valid(strv_from_cstr(a.secret))) __builtin_trap();
    ROUND_TRIP(struct node_api_join_answer, &a, node_api_join_answer_emit,
               node_api_join_answer_parse(b1.p, b1.len, &second, &e2), join_answer_eq, (void)0);
}

static void fuzz_health(const char *p, size_t n)
{
    struct node_api_health h;
    struct gw_error err = {0};
    int rc = node_api_health_parse(p, n, &h, &err);
    if (rc) {
        check_refusal(rc, &err);
        node_api_health_free(&h);
        return;
    }
    check_models(&h.models);
    if ((unsigned)h.engine > NODE_KIND_VLLM) __builtin_trap();
    ROUND_TRIP(struct node_api_health, &h, node_api_health_emit,
               node_api_health_parse(b1.p, b1.len, &second, &e2), health_eq,
               node_api_health_free(&second));
    node_api_health_free(&h);
}

static void fuzz_models_array(const char *p, size_t n);

/* The agent's models answer has no parser on the gateway's side any more (proto removed it);
 * its MODEL list is fuzzed through the health answer that carries the same list. */
static void fuzz_models_answer(const char *p, size_t n)
{
    fuzz_models_array(p, n);
}

static struct json_object *parse_json(const char *p, size_t n, struct gw_error *err)
{
    return json_parse_strict(p, n, NODE_API_MAX_DEPTH, err);
}

/* A bare MODEL array: the list parser is internal to proto now, so the array goes in as the
 * "models" of a health answer (the one message that carries it) and round-trips there. */
static void fuzz_models_array(const char *p, size_t n)
{
    static const char pre[] = "{\"status\":\"ok\",\"engine\":\"openai\",\"models\":";
    size_t len = sizeof pre - 1 + n + 1;
    char *w = xmalloc(len);
    memcpy(w, pre, sizeof pre - 1);
    if (n) memcpy(w + sizeof pre - 1, p, n);
    w[len - 1] = '}';
    fuzz_health(w, len);
    xfree(w);
}

static void fuzz_discovery(const char *p, size_t n)
{
    struct gw_error err = {0};
    struct json_object *o = parse_json(p, n, &err);
    if (!o) return;
    struct node_api_discovery *d = xmalloc(sizeof *d);
    struct node_api_discovery *d2 = xmalloc(sizeof *d2);
    node_api_discovery_init(d);
    int rc = node_api_discovery_parse_json(o, d, &err);
    json_object_put(o);
    if (rc) {
        check_refusal(rc, &err);
    } else {
        check_discovery(d);
        struct buf b1, b2;
        buf_init(&b1, FZ_OUT_CAP);
        buf_init(&b2, FZ_OUT_CAP);
        if (node_api_discovery_emit(&b1, d)) __builtin_trap();
        o = parse_json(b1.p, b1.len, &err);
        if (!o) __builtin_trap();
        node_api_discovery_init(d2);
        if (node_api_discovery_parse_json(o, d2, &err)) __builtin_trap();
        json_object_put(o);
        if (!discovery_eq(d, d2)) __builtin_trap();
        if (node_api_discovery_emit(&b2, d2)) __builtin_trap();
        if (!strv_eq(buf_view(&b1), buf_view(&b2))) __builtin_trap();
        buf_free(&b1);
        buf_free(&b2);
    }
    xfree(d);
    xfree(d2);
}

static void check_inv_items(const struct node_api_inv_items *l)
{
    if (l->n > NODE_API_MAX_INV_ITEMS || l->n > l->cap) __builtin_trap();
    for (size_t i = 0; i < l->n; i++) {
        const struct node_api_inv_item *it = &l->v[i];
        if (!it->name[0] || !is_c_string(it->name, sizeof it->name) ||
            !is_c_string(it->version, sizeof it->version) ||
            !is_c_string(it->digest, sizeof it->digest) ||
            !is_c_string(it->latest_digest, sizeof it->latest_digest))
            __builtin_trap();
    }
}

/* The gateway's parser of the agent's inventory: what it accepts the agent's emitter sends
 * back byte for byte. */
static void fuzz_inventory(const char *p, size_t n)
{
    struct node_api_inventory inv;
    struct gw_error err = {0};
    int rc = node_api_inventory_parse(p, n, &inv, &err);
    if (rc) {
        check_refusal(rc, &err);
        node_api_inventory_free(&inv);
        return;
    }
    check_inv_items(&inv.models);
    check_inv_items(&inv.backends);
    ROUND_TRIP(struct node_api_inventory, &inv, node_api_inventory_emit,
               node_api_inventory_parse(b1.p, b1.len, &second, &e2), inventory_eq,
               node_api_inventory_free(&second));
    node_api_inventory_free(&inv);
}

/* The small name parsers: whatever they accept prints back as the same name. */
static void fuzz_names(const char *p, size_t n)
{
    struct strv s = strv_make(p, n);
    char *z = xstrndup(p, n); /* node_kind_parse takes a C string */
    enum node_kind e;
    if (strlen(z) == n && node_kind_parse(z, &e) == 0 && !strv_eq_cstr(s, node_kind_name(e)))
        __builtin_trap();
    xfree(z);
    enum op_class c;
    if (op_class_parse(s, &c) == 0 && !strv_eq_cstr(s, op_class_name(c))) __builtin_trap();
    enum op_kind k;
    if (op_kind_parse(s, &k) == 0 && !strv_eq_cstr(s, op_kind_name(k))) __builtin_trap();
    if (node_api_name_is_valid(s) && (n == 0 || n >= NODE_API_MAX_NAME)) __builtin_trap();
    if (node_api_secret_is_valid(s) && n != NODE_API_SECRET_HEX) __builtin_trap();
    unsigned caps = node_api_caps_guess(s, s);
    if (caps != CAP_EMBEDDINGS && caps != (CAP_CHAT | CAP_COMPLETIONS)) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    size_t n = size - 1;
    char *p = xmalloc(n ? n : 1); /* exact size: an overread is ASan's to see */
    if (n) memcpy(p, data + 1, n);
    switch (data[0] % MSG_COUNT) {
    case MSG_JOIN:
        fuzz_join(p, n);
        break;
    case MSG_JOIN_ANSWER:
        fuzz_join_answer(p, n);
        break;
    case MSG_HEALTH:
        fuzz_health(p, n);
        break;
    case MSG_MODELS_ANSWER:
        fuzz_models_answer(p, n);
        break;
    case MSG_MODELS_ARRAY:
        fuzz_models_array(p, n);
        break;
    case MSG_DISCOVERY:
        fuzz_discovery(p, n);
        break;
    case MSG_INVENTORY:
        fuzz_inventory(p, n);
        break;
    default:
        fuzz_names(p, n);
        break;
    }
    xfree(p);
    return 0;
}
