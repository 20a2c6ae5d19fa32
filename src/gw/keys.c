/* keys — the client key table, its entitlements and limits, and the data path's admission
 * hook (keys.h; docs/security.md). Invariant: the table (id index and secret-hash index) holds
 * exactly the active, unexpired-or-expired-but-not-revoked keys; a revoked key leaves both at
 * once and lives on only while grants hold a reference, and its id stays in the revoked set, so
 * no row re-read from the store (several gateways: keys_apply_remote) brings it back. With
 * several gateways the per-minute limits are this gateway's shares of the fleet's buckets
 * (key_share_*, reconciled by limits.c) instead of its own buckets. The loop thread only. */
#include "gw/keys.h"

#include <fnmatch.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/json.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/sha256.h"
#include "gw/api.h"
#include "gw/audit.h"
#include "gw/errors_http.h"
#include "gw/gw.h"
#include "gw/limits.h"
#include "gw/sync.h"
#include "gw/usage.h"
#include "store/store_keys.h"

struct keys {
    struct client_key **v; /* active keys (in_table) */
    size_t n, cap;
    struct client_key **tab; /* open addressing by secret hash */
    struct client_key **ids; /* open addressing by id (same capacity) */
    size_t tab_cap;
    char **revoked; /* open addressing: ids of keys known revoked (they never come back) */
    size_t revoked_n, revoked_cap;
    /* several gateways (keys_fleet_*): limits shared through the store */
    bool fleet;
    uint64_t fleet_interval_ms;
    unsigned fleet_live; /* live gateways at the last reconciliation (>= 1) */
    bool any_stored;     /* a key row exists in the store (revoked ones too) */
    size_t n_stored;
    struct client_key legacy; /* the config's api_key (refs never reach 0) */
    /* the key api.c found for the request being handled (keys_authenticate) */
    uint64_t cur_req;
    const struct http_request *cur_ptr;
    struct client_key *cur_key;
};

/* ---- endpoints -------------------------------------------------------------------------- */

static const char *const ep_names[] = {"chat", "completions", "embeddings", "ollama", "models"};

unsigned key_endpoint_parse(struct strv name)
{
    for (unsigned i = 0; i < sizeof ep_names / sizeof ep_names[0]; i++)
        if (strv_eq_cstr(name, ep_names[i])) return 1u << i;
    return 0;
}

const char *key_endpoint_name(unsigned bit)
{
    for (unsigned i = 0; i < sizeof ep_names / sizeof ep_names[0]; i++)
        if (bit == 1u << i) return ep_names[i];
    return "?";
}

unsigned key_endpoint_of_path(struct strv path)
{
    if (strv_eq_cstr(path, "/v1/chat/completions")) return KEP_CHAT;
    /* the Anthropic Messages API is chat, translated (docs/translate.md) */
    if (strv_starts_with(path, STRV_LIT("/v1/messages"))) return KEP_CHAT;
    if (strv_eq_cstr(path, "/v1/completions")) return KEP_COMPLETIONS;
    if (strv_eq_cstr(path, "/v1/embeddings")) return KEP_EMBEDDINGS;
    if (strv_eq_cstr(path, "/v1/models")) return KEP_MODELS;
    if (strv_starts_with(path, STRV_LIT("/api/"))) return KEP_OLLAMA;
    return 0;
}

/* ---- spec ------------------------------------------------------------------------------- */

void key_spec_init(struct key_spec *s)
{
    memset(s, 0, sizeof *s);
    s->endpoints = KEP_ALL;
}

static void free_globs(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) xfree(v[i]);
    xfree(v);
}

void key_spec_free(struct key_spec *s)
{
    free_globs(s->models, s->n_models);
    s->models = NULL;
    s->n_models = 0;
}

void key_spec_copy(struct key_spec *dst, const struct key_spec *src)
{
    *dst = *src;
    dst->models = src->n_models ? xcalloc(src->n_models, sizeof *dst->models) : NULL;
    for (size_t i = 0; i < src->n_models; i++) dst->models[i] = xstrdup(src->models[i]);
}

static bool printable(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f) return false;
    return true;
}

static int why_set(char *why, size_t cap, const char *member, const char *msg)
{
    if (why && cap) snprintf(why, cap, "%s: %s", member, msg);
    return GW_E_INVALID;
}

static int get_u64(struct json_object *v, uint64_t max, uint64_t *out)
{
    if (!json_object_is_type(v, json_type_int)) return GW_E_INVALID;
    int64_t x = json_object_get_int64(v);
    if (x < 0 || (uint64_t)x > max) return GW_E_INVALID;
    *out = (uint64_t)x;
    return 0;
}

int key_spec_apply(struct key_spec *s, const char *json, size_t len, char *why, size_t why_cap)
{
    if (len > KEYS_MAX_SPEC_BYTES) return why_set(why, why_cap, "body", "too large");
    struct gw_error jerr = {0};
    struct json_object *root = json_parse_strict(json, len, 4, &jerr);
    if (!root) {
        if (why && why_cap) snprintf(why, why_cap, "body: %s", jerr.msg);
        return GW_E_PARSE;
    }
    if (!json_object_is_type(root, json_type_object)) {
        json_object_put(root);
        return why_set(why, why_cap, "body", "must be a JSON object");
    }
    struct key_spec n;
    key_spec_copy(&n, s);
    int rc = 0;
    json_object_object_foreach(root, k, v)
    {
        if (rc) break;
        bool is_str = json_object_is_type(v, json_type_string);
        const char *sv = is_str ? json_object_get_string(v) : NULL;
        size_t sl = is_str ? (size_t)json_object_get_string_len(v) : 0;
        if (!strcmp(k, "name") || !strcmp(k, "owner") || !strcmp(k, "team")) {
            bool is_name = !strcmp(k, "name");
            if (!is_str || sl > KEYS_MAX_NAME_BYTES || (is_name && sl == 0) || !printable(sv, sl) ||
                strlen(sv) != sl) {
                rc = why_set(why, why_cap, k,
                             is_name ? "a string of 1-63 printable bytes"
                                     : "a string of 0-63 printable bytes");
                break;
            }
            char *dst = is_name ? n.name : !strcmp(k, "owner") ? n.owner : n.team;
            memcpy(dst, sv, sl);
            dst[sl] = '\0';
        } else if (!strcmp(k, "models")) {
            size_t cnt = json_object_is_type(v, json_type_array) ? json_object_array_length(v) : 0;
            if (!json_object_is_type(v, json_type_array) || cnt == 0 || cnt > KEYS_MAX_GLOBS) {
                rc = why_set(why, why_cap, k, "an array of 1-64 model names or globs");
                break;
            }
            char **g = xcalloc(cnt, sizeof *g);
            for (size_t i = 0; i < cnt && !rc; i++) {
                struct json_object *e = json_object_array_get_idx(v, i);
                const char *es =
                    json_object_is_type(e, json_type_string) ? json_object_get_string(e) : NULL;
                size_t el = es ? (size_t)json_object_get_string_len(e) : 0;
                if (!es || el == 0 || el > KEYS_MAX_GLOB_BYTES || !printable(es, el) ||
                    strlen(es) != el)
                    rc = why_set(why, why_cap, k, "each glob: 1-200 printable bytes");
                else
                    g[i] = xstrdup(es);
            }
            if (rc) {
                free_globs(g, cnt);
                break;
            }
            free_globs(n.models, n.n_models);
            n.models = g;
            n.n_models = cnt;
        } else if (!strcmp(k, "endpoints")) {
            size_t cnt = json_object_is_type(v, json_type_array) ? json_object_array_length(v) : 0;
            unsigned eps = 0;
            if (!json_object_is_type(v, json_type_array) || cnt == 0 || cnt > 16) {
                rc = why_set(why, why_cap, k,
                             "an array of chat, completions, embeddings, ollama, models");
                break;
            }
            for (size_t i = 0; i < cnt && !rc; i++) {
                struct json_object *e = json_object_array_get_idx(v, i);
                unsigned b =
                    json_object_is_type(e, json_type_string)
                        ? key_endpoint_parse((struct strv){json_object_get_string(e),
                                                           (size_t)json_object_get_string_len(e)})
                        : 0;
                if (!b)
                    rc = why_set(why, why_cap, k,
                                 "each one of chat, completions, embeddings, ollama, models");
                eps |= b;
            }
            if (!rc) n.endpoints = eps;
        } else if (!strcmp(k, "rpm") || !strcmp(k, "tpm")) {
            if (get_u64(v, KEYS_MAX_RATE, !strcmp(k, "rpm") ? &n.rpm : &n.tpm))
                rc = why_set(why, why_cap, k, "an integer 0..1000000000 (0: no limit)");
        } else if (!strcmp(k, "max_concurrent")) {
            uint64_t x = 0;
            if (get_u64(v, KEYS_MAX_CONCURRENT, &x))
                rc = why_set(why, why_cap, k, "an integer 0..1000000 (0: no limit)");
            n.max_concurrent = (uint32_t)x;
        } else if (!strcmp(k, "budget_tokens")) {
            if (get_u64(v, 1000000000000000ull, &n.budget_tokens))
                rc = why_set(why, why_cap, k, "an integer 0..1e15 (0: no budget)");
        } else if (!strcmp(k, "budget_period")) {
            if (is_str && !strcmp(sv, "day"))
                n.budget_period = KEY_BUDGET_DAY;
            else if (is_str && !strcmp(sv, "month"))
                n.budget_period = KEY_BUDGET_MONTH;
            else
                rc = why_set(why, why_cap, k, "\"day\" or \"month\"");
        } else if (!strcmp(k, "expires_ms")) {
            if (json_object_is_type(v, json_type_null))
                n.expires_ms = 0;
            else if (get_u64(v, 253402300799999ull, &n.expires_ms))
                rc = why_set(why, why_cap, k, "unix milliseconds (0 or null: never)");
        } else {
            rc = why_set(why, why_cap, k, "unknown member");
        }
    }
    json_object_put(root);
    if (rc) {
        key_spec_free(&n);
        return rc;
    }
    if (!n.name[0]) {
        key_spec_free(&n);
        return why_set(why, why_cap, "name", "required");
    }
    key_spec_free(s);
    *s = n;
    return 0;
}

int key_spec_to_json(const struct key_spec *s, struct buf *o)
{
    int rc = buf_append_cstr(o, "{\"name\":");
    if (!rc) rc = json_append_str(o, s->name, strlen(s->name));
    if (!rc) rc = buf_append_cstr(o, ",\"owner\":");
    if (!rc) rc = json_append_str(o, s->owner, strlen(s->owner));
    if (!rc) rc = buf_append_cstr(o, ",\"team\":");
    if (!rc) rc = json_append_str(o, s->team, strlen(s->team));
    if (!rc) rc = buf_append_cstr(o, ",\"models\":[");
    for (size_t i = 0; i < s->n_models && !rc; i++) {
        if (i) rc = buf_append_cstr(o, ",");
        if (!rc) rc = json_append_str(o, s->models[i], strlen(s->models[i]));
    }
    if (!rc && s->n_models == 0) rc = buf_append_cstr(o, "\"*\"");
    if (!rc) rc = buf_append_cstr(o, "],\"endpoints\":[");
    const char *sep = "";
    for (unsigned b = 1; b <= KEP_MODELS && !rc; b <<= 1)
        if (s->endpoints & b) rc = buf_appendf(o, "%s\"%s\"", sep, key_endpoint_name(b)), sep = ",";
    if (!rc)
        rc = buf_appendf(o,
                         "],\"rpm\":%llu,\"tpm\":%llu,\"max_concurrent\":%u,"
                         "\"budget_tokens\":%llu,\"budget_period\":\"%s\",\"expires_ms\":%llu}",
                         (unsigned long long)s->rpm, (unsigned long long)s->tpm, s->max_concurrent,
                         (unsigned long long)s->budget_tokens,
                         s->budget_period == KEY_BUDGET_MONTH ? "month" : "day",
                         (unsigned long long)s->expires_ms);
    return rc;
}

bool key_spec_allows_model(const struct key_spec *s, struct strv model)
{
    if (s->n_models == 0) return true;
    char m[256];
    if (model.len >= sizeof m) return false;
    memcpy(m, model.p, model.len);
    m[model.len] = '\0';
    for (size_t i = 0; i < s->n_models; i++)
        if (fnmatch(s->models[i], m, 0) == 0) return true;
    return false;
}

/* ---- buckets ----------------------------------------------------------------------------- */

enum { MS_PER_MIN = 60000 };

static int64_t bucket_cap(const struct key_bucket *b)
{
    return (int64_t)b->rate * MS_PER_MIN;
}

void key_bucket_init(struct key_bucket *b, uint64_t rate, uint64_t now_ms)
{
    b->rate = rate;
    b->level = bucket_cap(b);
    b->at_ms = now_ms;
}

void key_bucket_refill(struct key_bucket *b, uint64_t now_ms)
{
    if (now_ms <= b->at_ms) return; /* time never runs backwards for a bucket */
    uint64_t dt = now_ms - b->at_ms;
    b->at_ms = now_ms;
    int64_t cap = bucket_cap(b);
    /* dt × rate may overflow after years of idleness: a full bucket is all it can give */
    if (dt >= (uint64_t)MS_PER_MIN * 1440 * 2 || b->level >= cap) {
        b->level = cap;
        return;
    }
    b->level += (int64_t)(dt * b->rate);
    if (b->level > cap) b->level = cap;
}

void key_bucket_set_rate(struct key_bucket *b, uint64_t rate, uint64_t now_ms)
{
    key_bucket_refill(b, now_ms);
    bool was_unlimited = b->rate == 0;
    b->rate = rate;
    if (was_unlimited || b->level > bucket_cap(b)) b->level = bucket_cap(b);
}

bool key_bucket_take(struct key_bucket *b, uint64_t n, uint64_t now_ms)
{
    if (b->rate == 0) return true;
    key_bucket_refill(b, now_ms);
    int64_t need = (int64_t)n * MS_PER_MIN;
    if (b->level < need) return false;
    b->level -= need;
    return true;
}

void key_bucket_debit(struct key_bucket *b, uint64_t n, uint64_t now_ms)
{
    if (b->rate == 0) return;
    key_bucket_refill(b, now_ms);
    int64_t floor = -bucket_cap(b) * 1440; /* a day of refill at most */
    if (n > (uint64_t)KEYS_MAX_RATE * 1440) n = (uint64_t)KEYS_MAX_RATE * 1440;
    int64_t d = (int64_t)n * MS_PER_MIN;
    b->level = b->level - d < floor ? floor : b->level - d;
}

static int64_t level_at(const struct key_bucket *b, uint64_t now_ms)
{
    struct key_bucket c = *b;
    key_bucket_refill(&c, now_ms);
    return c.level;
}

uint64_t key_bucket_wait_ms(const struct key_bucket *b, uint64_t n, uint64_t now_ms)
{
    if (b->rate == 0) return 0;
    int64_t lv = level_at(b, now_ms);
    int64_t need = n ? (int64_t)n * MS_PER_MIN : 1;
    if (lv >= need) return 0;
    uint64_t missing = (uint64_t)(need - lv);
    return (missing + b->rate - 1) / b->rate;
}

uint64_t key_bucket_remaining(const struct key_bucket *b, uint64_t now_ms)
{
    if (b->rate == 0) return 0;
    int64_t lv = level_at(b, now_ms);
    return lv > 0 ? (uint64_t)lv / MS_PER_MIN : 0;
}

uint64_t key_bucket_reset_ms(const struct key_bucket *b, uint64_t now_ms)
{
    if (b->rate == 0) return 0;
    int64_t lv = level_at(b, now_ms);
    uint64_t missing = (uint64_t)(bucket_cap(b) - lv);
    return (missing + b->rate - 1) / b->rate;
}

void key_format_reset(uint64_t ms, char *out, size_t cap)
{
    if (ms < 1000) {
        snprintf(out, cap, "%llums", (unsigned long long)ms);
        return;
    }
    uint64_t m = ms / 60000, rest = ms % 60000;
    char sec[32];
    if (rest % 1000 == 0)
        snprintf(sec, sizeof sec, "%llus", (unsigned long long)(rest / 1000));
    else {
        /* up to three decimals, trailing zeros dropped: 1.5s, 1.25s, 0.001s */
        int n = snprintf(sec, sizeof sec, "%llu.%03llu", (unsigned long long)(rest / 1000),
                         (unsigned long long)(rest % 1000));
        while (n > 0 && sec[n - 1] == '0') sec[--n] = '\0';
        snprintf(sec + n, sizeof sec - (size_t)n, "s");
    }
    if (m)
        snprintf(out, cap, "%llum%s", (unsigned long long)m, sec);
    else
        snprintf(out, cap, "%s", sec);
}

/* ---- several gateways: shares of the fleet buckets --------------------------------------- */

enum { MS_PER_DAY = 86400000 };

static int64_t units_scaled(uint64_t units)
{
    if (units > (uint64_t)KEYS_MAX_RATE * 1440) units = (uint64_t)KEYS_MAX_RATE * 1440;
    return (int64_t)units * MS_PER_MIN;
}

/* The fleet bucket's untaken level refilled since the last reconciliation (at most a minute's
 * worth), divided by div (this gateway's share: the live gateways); a bucket never reconciled
 * here counts as full. */
static int64_t share_level(const struct key_share *s, uint64_t rate, unsigned div, uint64_t now_ms)
{
    int64_t cap = units_scaled(rate);
    if (!div) div = 1;
    if (!s->level_ms) return cap / div;
    uint64_t dt = now_ms > s->level_ms ? now_ms - s->level_ms : 0;
    if (dt > 2ull * MS_PER_DAY) dt = 2ull * MS_PER_DAY;
    int64_t lv = s->level + (int64_t)(dt * rate);
    return (lv > cap ? cap : lv) / (int64_t)div;
}

int64_t key_share_view(const struct key_share *s, uint64_t rate, const struct key_fleet_view *v)
{
    return share_level(s, rate, v->live, v->now_ms) - s->borrowed;
}

int key_share_may(struct key_share *s, uint64_t rate, uint64_t need, const struct key_fleet_view *v)
{
    int64_t n = units_scaled(need);
    if (need ? s->grant >= n : s->grant > 0) return 1;
    uint64_t slot = v->interval_ms ? v->now_ms / v->interval_ms : 0;
    if (slot != s->slot) {
        s->slot = slot;
        s->slot_borrows = 0;
    }
    /* borrowing is not in the store until the next report, where another gateway may take it
     * meanwhile: at most max(1, rate / (20 × live)) units an interval (5 % of the limit for all
     * the gateways together), and only within this gateway's share of what the fleet bucket
     * held untaken; tokens (unknown until the answer): one admission an interval */
    uint64_t live = v->live ? v->live : 1, max = need ? rate / (20 * live) : 1;
    if (!max) max = 1;
    if (s->slot_borrows + (need ? need : 1) > max) return 0;
    int64_t view = key_share_view(s, rate, v);
    if (need ? view < n : view <= 0) return 0;
    return 2;
}

void key_share_spend(struct key_share *s, uint64_t units)
{
    int64_t n = units_scaled(units);
    int64_t covered = s->grant > 0 ? (s->grant < n ? s->grant : n) : 0;
    s->borrowed += n - covered;
    s->grant -= n;
}

void key_share_take(struct key_share *s, uint64_t need, int how)
{
    if (how == 2) s->slot_borrows += need ? need : 1;
    if (need) key_share_spend(s, need);
}

void key_share_ask(struct key_share *s, uint64_t units)
{
    s->demand += units;
}

uint64_t key_share_remaining(const struct key_share *s, uint64_t rate, uint64_t now_ms)
{
    int64_t cap = units_scaled(rate);
    int64_t lv = share_level(s, rate, 1, now_ms) - s->borrowed + (s->grant > 0 ? s->grant : 0);
    if (lv > cap) lv = cap;
    return lv > 0 ? (uint64_t)(lv / MS_PER_MIN) : 0;
}

uint64_t key_share_reset_ms(const struct key_share *s, uint64_t rate, uint64_t now_ms)
{
    if (!rate) return 0;
    int64_t cap = units_scaled(rate);
    int64_t lv = share_level(s, rate, 1, now_ms) - s->borrowed + (s->grant > 0 ? s->grant : 0);
    if (lv >= cap) return 0;
    return ((uint64_t)(cap - lv) + rate - 1) / rate;
}

uint64_t key_share_wait_ms(const struct key_share *s, uint64_t rate, uint64_t need,
                           const struct key_fleet_view *v)
{
    int64_t n = need ? units_scaled(need) : 1;
    int64_t view = key_share_view(s, rate, v);
    if (view >= n || !rate) return v->interval_ms; /* the fleet holds it: the next reconciliation */
    uint64_t live = v->live ? v->live : 1;
    uint64_t t = ((uint64_t)(n - view) * live + rate - 1) / rate;
    return t > v->interval_ms ? t : v->interval_ms;
}

void key_share_report(struct key_share *s, uint64_t rate, int64_t *give, int64_t *want)
{
    int64_t cap = units_scaled(rate);
    *give = s->grant;
    *want = 0;
    uint64_t d = s->demand > (uint64_t)KEYS_MAX_RATE ? (uint64_t)KEYS_MAX_RATE : s->demand;
    uint64_t dec = s->peak / 8 ? s->peak / 8 : 1, decayed = s->peak > dec ? s->peak - dec : 0;
    s->peak = d > decayed ? d : decayed;
    if (s->peak) {
        int64_t w = units_scaled(2 * s->peak);
        *want = w < cap ? w : cap;
    }
    s->give = s->grant;
    s->asked = s->demand;
    s->borrowed_sent = s->borrowed;
    s->grant = 0;
    s->demand = 0;
}

void key_share_reconciled(struct key_share *s, int64_t got, int64_t level, uint64_t now_ms)
{
    s->grant += got;
    s->level = level;
    s->level_ms = now_ms ? now_ms : 1;
    s->borrowed -= s->borrowed_sent; /* given back with the grant: in the level now */
    s->give = 0;
    s->asked = 0;
    s->borrowed_sent = 0;
}

void key_share_failed(struct key_share *s)
{
    s->grant += s->give;
    s->demand += s->asked;
    s->give = 0;
    s->asked = 0;
    s->borrowed_sent = 0;
}

uint64_t key_budget_period_start(enum key_budget_period p, uint64_t wall_ms)
{
    uint64_t day = wall_ms / 86400000ull * 86400000ull;
    if (p == KEY_BUDGET_DAY) return day;
    time_t t = (time_t)(wall_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    return day - (uint64_t)(tm.tm_mday - 1) * 86400000ull;
}

uint64_t key_budget_period_end(enum key_budget_period p, uint64_t wall_ms)
{
    uint64_t start = key_budget_period_start(p, wall_ms);
    if (p == KEY_BUDGET_DAY) return start + 86400000ull;
    time_t t = (time_t)(start / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y = tm.tm_year + 1900;
    int d = mdays[tm.tm_mon] + (tm.tm_mon == 1 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0));
    return start + (uint64_t)d * 86400000ull;
}

/* ---- secrets ----------------------------------------------------------------------------- */

int keys_new_secret(char out[KEYS_SECRET_BYTES + 1])
{
    static const char b62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    memcpy(out, "dk-", 3);
    size_t o = 3;
    while (o < KEYS_SECRET_BYTES) {
        unsigned char r[64];
        int rc = random_bytes(r, sizeof r);
        if (rc) return rc;
        for (size_t i = 0; i < sizeof r && o < KEYS_SECRET_BYTES; i++)
            if (r[i] < 248) out[o++] = b62[r[i] % 62]; /* 248 = 4 × 62: no bias */
    }
    out[o] = '\0';
    return 0;
}

void keys_mask_token(struct strv tok, char *out, size_t cap)
{
    char head[8] = "", tail[8] = "";
    if (tok.len >= 12) {
        for (size_t i = 0; i < 5; i++) head[i] = printable(tok.p + i, 1) ? tok.p[i] : '?';
        head[5] = '\0';
        for (size_t i = 0; i < 4; i++)
            tail[i] = printable(tok.p + tok.len - 4 + i, 1) ? tok.p[tok.len - 4 + i] : '?';
        tail[4] = '\0';
    }
    snprintf(out, cap, "%s***%s", head, tail);
}

/* ---- the table --------------------------------------------------------------------------- */

static uint64_t hash_slot(const char *hex)
{
    uint64_t h = 0;
    for (int i = 0; i < 16; i++) {
        char c = hex[i];
        h = h << 4 | (uint64_t)(c >= 'a' ? c - 'a' + 10 : c - '0');
    }
    return h;
}

static uint64_t id_slot(const char *id)
{
    uint64_t h = 1469598103934665603ull;
    for (; *id; id++) h = (h ^ (unsigned char)*id) * 1099511628211ull;
    return h;
}

static void index_insert(struct keys *ks, struct client_key *k)
{
    size_t m = ks->tab_cap - 1, s = (size_t)(hash_slot(k->hash) & m);
    while (ks->tab[s]) s = (s + 1) & m;
    ks->tab[s] = k;
    s = (size_t)(id_slot(k->id) & m);
    while (ks->ids[s]) s = (s + 1) & m;
    ks->ids[s] = k;
}

/* Both indexes from ks->v (after a removal or a change of secret; an addition inserts). */
static void index_rebuild(struct keys *ks)
{
    size_t cap = 16;
    while (cap < ks->n * 2 + 1) cap <<= 1;
    xfree(ks->tab);
    xfree(ks->ids);
    ks->tab = xcalloc(cap, sizeof *ks->tab);
    ks->ids = xcalloc(cap, sizeof *ks->ids);
    ks->tab_cap = cap;
    for (size_t i = 0; i < ks->n; i++) index_insert(ks, ks->v[i]);
}

static bool revoked_has(const struct keys *ks, const char *id)
{
    if (!ks->revoked_cap) return false;
    size_t m = ks->revoked_cap - 1, s = (size_t)(id_slot(id) & m);
    for (; ks->revoked[s]; s = (s + 1) & m)
        if (!strcmp(ks->revoked[s], id)) return true;
    return false;
}

/* Remembers that id is revoked: no re-read copy of its row brings it back (fail closed). */
static void revoked_add(struct keys *ks, const char *id)
{
    if (revoked_has(ks, id)) return;
    if (2 * (ks->revoked_n + 1) > ks->revoked_cap) {
        size_t cap = ks->revoked_cap ? 2 * ks->revoked_cap : 64;
        char **v = xcalloc(cap, sizeof *v);
        for (size_t i = 0; i < ks->revoked_cap; i++) {
            if (!ks->revoked[i]) continue;
            size_t s = (size_t)(id_slot(ks->revoked[i]) & (cap - 1));
            while (v[s]) s = (s + 1) & (cap - 1);
            v[s] = ks->revoked[i];
        }
        xfree(ks->revoked);
        ks->revoked = v;
        ks->revoked_cap = cap;
    }
    size_t m = ks->revoked_cap - 1, s = (size_t)(id_slot(id) & m);
    while (ks->revoked[s]) s = (s + 1) & m;
    ks->revoked[s] = xstrdup(id);
    ks->revoked_n++;
}

static struct client_key *index_find(const struct keys *ks, const char *hex)
{
    if (!ks->tab_cap) return NULL;
    size_t s = (size_t)(hash_slot(hex) & (ks->tab_cap - 1));
    while (ks->tab[s]) {
        if (secret_equal(ks->tab[s]->hash, hex)) return ks->tab[s];
        s = (s + 1) & (ks->tab_cap - 1);
    }
    return NULL;
}

static void key_unref(struct client_key *k)
{
    if (!k || k->legacy) return;
    if (--k->refs == 0) {
        key_spec_free(&k->spec);
        xfree(k);
    }
}

static void key_live_init(struct client_key *k, uint64_t now_ms)
{
    key_bucket_init(&k->req_bucket, k->spec.rpm, now_ms);
    key_bucket_init(&k->tok_bucket, k->spec.tpm, now_ms);
}

static void table_add(struct keys *ks, struct client_key *k)
{
    if (ks->n == ks->cap) {
        ks->cap = ks->cap ? 2 * ks->cap : 16;
        ks->v = xrealloc(ks->v, ks->cap * sizeof *ks->v);
    }
    ks->v[ks->n++] = k;
    k->in_table = true;
    k->refs++;
    if (ks->tab_cap < ks->n * 2 + 1)
        index_rebuild(ks);
    else
        index_insert(ks, k);
}

static void table_remove(struct keys *ks, struct client_key *k)
{
    for (size_t i = 0; i < ks->n; i++) {
        if (ks->v[i] != k) continue;
        ks->v[i] = ks->v[--ks->n];
        break;
    }
    k->in_table = false;
    if (ks->cur_key == k) ks->cur_key = NULL;
    index_rebuild(ks);
    key_unref(k);
}

struct client_key *keys_find_id(struct gw *g, struct strv id)
{
    struct keys *ks = g->keys;
    if (!ks || !ks->tab_cap) return NULL;
    char buf[sizeof((struct client_key *)0)->id];
    if (id.len >= sizeof buf) return NULL;
    if (id.len) memcpy(buf, id.p, id.len);
    buf[id.len] = '\0';
    size_t m = ks->tab_cap - 1, s = (size_t)(id_slot(buf) & m);
    for (; ks->ids[s]; s = (s + 1) & m)
        if (!strcmp(ks->ids[s]->id, buf)) return ks->ids[s];
    return NULL;
}

static struct client_key *key_new(const char *secret, const struct key_spec *s)
{
    struct client_key *k = xcalloc(1, sizeof *k);
    unsigned char r[8];
    if (random_bytes(r, sizeof r)) memset(r, 0, sizeof r);
    snprintf(k->id, sizeof k->id, "key_%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3],
             r[4], r[5], r[6], r[7]);
    sha256_hex(secret, strlen(secret), k->hash);
    snprintf(k->prefix, sizeof k->prefix, "%.8s", secret);
    key_spec_copy(&k->spec, s);
    k->created_ms = k->updated_ms = clock_wall_ms();
    key_live_init(k, clock_now_ms());
    return k;
}

struct client_key *keys_add_for_test(struct gw *g, const char *secret, const struct key_spec *s)
{
    struct client_key *k = key_new(secret, s);
    table_add(g->keys, k);
    g->keys->any_stored = true;
    return k;
}

static bool is_hex64(const char *h)
{
    size_t i = 0;
    for (; h && h[i]; i++)
        if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f'))) return false;
    return i == 64;
}

/* A key of the table made from a stored row (not revoked), or NULL when the row cannot be read
 * (such a row grants nothing). */
static struct client_key *key_from_row(const struct store_key_row *r, uint64_t now_ms)
{
    if (!r->id || strlen(r->id) >= sizeof((struct client_key *)0)->id || !r->id[0] ||
        !is_hex64(r->secret_hash) || !r->spec_json)
        return NULL;
    struct client_key *k = xcalloc(1, sizeof *k);
    key_spec_init(&k->spec);
    char why[160];
    if (key_spec_apply(&k->spec, r->spec_json, strlen(r->spec_json), why, sizeof why)) {
        key_spec_free(&k->spec);
        xfree(k);
        return NULL;
    }
    snprintf(k->id, sizeof k->id, "%s", r->id);
    snprintf(k->hash, sizeof k->hash, "%s", r->secret_hash);
    snprintf(k->prefix, sizeof k->prefix, "%s", r->prefix ? r->prefix : "");
    k->created_ms = (uint64_t)r->created_ms;
    k->updated_ms = (uint64_t)r->updated_ms;
    key_live_init(k, now_ms);
    return k;
}

/* Counts the budgets' usage so far in the current periods (start-up). */
static void load_budget_usage(struct gw *g)
{
    uint64_t wall = clock_wall_ms();
    for (int p = 0; p < 2; p++) {
        uint64_t start = key_budget_period_start((enum key_budget_period)p, wall);
        struct store_usage_query q = {.from_minute = (int64_t)(start / 60000),
                                      .to_minute = INT64_MAX / 2,
                                      .group_by = STORE_USAGE_BY_KEY,
                                      .max_rows = KEYS_MAX_KEYS};
        struct store_usage_result res;
        struct gw_error err = {0};
        if (store_query_usage_sync(g->store, &q, &res, &err)) {
            LOGW("keys_budget_usage", "reason=\"%s\"", err.msg);
            continue;
        }
        for (size_t i = 0; i < res.n; i++) {
            struct client_key *k = keys_find_id(g, strv_from_cstr(res.rows[i].key_id));
            if (!k || (int)k->spec.budget_period != p) continue;
            k->budget_used = res.rows[i].prompt_tokens + res.rows[i].completion_tokens;
            k->budget_period_start = start;
            /* with several gateways the fleet's totals come from key_counters; this is a floor
             * for them (usage written before they existed) */
            k->budget_floor = k->budget_used;
            k->budget_floor_start = start;
        }
        store_usage_rows_free(res.rows, res.n);
    }
}

int keys_open(struct gw *g, struct gw_error *err)
{
    struct keys *ks = xcalloc(1, sizeof *ks);
    g->keys = ks;
    snprintf(ks->legacy.id, sizeof ks->legacy.id, "legacy");
    ks->legacy.legacy = true;
    key_spec_init(&ks->legacy.spec);
    snprintf(ks->legacy.spec.name, sizeof ks->legacy.spec.name, "api_key");
    if (!g->store) return 0;
    struct store_key_row *rows = NULL;
    size_t n = 0;
    int rc = store_load_keys(g->store, &rows, &n, err);
    if (rc) return rc;
    uint64_t now = clock_now_ms();
    for (size_t i = 0; i < n; i++) {
        struct store_key_row *r = &rows[i];
        ks->any_stored = true;
        ks->n_stored++;
        if (r->revoked_ms) {
            revoked_add(ks, r->id);
            continue;
        }
        struct client_key *k = key_from_row(r, now);
        if (!k) {
            /* fail closed: a row we cannot read grants nothing */
            LOGE("key_load_failed", "id=%s reason=\"unreadable row\"", r->id);
            continue;
        }
        table_add(ks, k);
    }
    store_key_rows_free(rows, n);
    load_budget_usage(g);
    LOGI("keys_loaded", "active=%zu stored=%zu", ks->n, ks->n_stored);
    return 0;
}

void keys_close(struct gw *g)
{
    struct keys *ks = g->keys;
    if (!ks) return;
    ks->cur_key = NULL;
    while (ks->n) { /* no index rebuild per key: the indexes go too */
        struct client_key *k = ks->v[--ks->n];
        k->in_table = false;
        key_unref(k);
    }
    xfree(ks->v);
    xfree(ks->tab);
    xfree(ks->ids);
    for (size_t i = 0; i < ks->revoked_cap; i++) xfree(ks->revoked[i]);
    xfree(ks->revoked);
    key_spec_free(&ks->legacy.spec);
    xfree(ks);
    g->keys = NULL;
}

/* ---- several gateways: key rows changed elsewhere --------------------------------------- */

static void key_free_unlisted(struct client_key *k)
{
    key_spec_free(&k->spec);
    xfree(k);
}

void keys_apply_remote(struct gw *g, const char *id, const struct store_key_row *r)
{
    struct keys *ks = g->keys;
    if (!ks || !id) return;
    /* a revocation is final whatever this gateway is writing: applied at once; any other copy
     * waits for this gateway's write of the key, then the row is read again (sync.h) */
    if (!(r && r->revoked_ms) && sync_defer_remote(g, SYNC_KEY, id)) return;
    struct client_key *k = keys_find_id(g, strv_from_cstr(id));
    if (r && !ks->any_stored) {
        ks->any_stored = true; /* the client API needs a key from now on */
        LOGI("keys_required", "reason=\"a key was made through another gateway\"");
    }
    if (!r || r->revoked_ms || revoked_has(ks, id)) {
        if (r && r->revoked_ms) revoked_add(ks, id);
        if (k) {
            LOGI(r ? "key_revoked" : "key_removed", "key=%s by=remote", id);
            table_remove(ks, k);
        }
        return;
    }
    struct client_key *n = key_from_row(r, clock_now_ms());
    if (!n) {
        /* fail closed: a row this gateway cannot read grants nothing */
        LOGE("key_row_unreadable", "key=%s by=remote then=refused", id);
        if (k) table_remove(ks, k);
        return;
    }
    if (!k) {
        if (ks->n >= KEYS_MAX_KEYS) {
            LOGE("key_row_skipped", "key=%s by=remote reason=\"too many active keys\"", id);
            key_free_unlisted(n);
            return;
        }
        ks->n_stored++;
        table_add(ks, n);
        LOGI("key_created", "key=%s name=%s by=remote", n->id, n->spec.name);
        return;
    }
    if (strcmp(k->hash, n->hash) != 0) {
        memcpy(k->hash, n->hash, sizeof k->hash);
        memcpy(k->prefix, n->prefix, sizeof k->prefix);
        index_rebuild(ks); /* the old secret stops here */
        LOGI("key_rotated", "key=%s by=remote", k->id);
    }
    struct buf a, b;
    buf_init(&a, KEYS_MAX_SPEC_BYTES * 2);
    buf_init(&b, KEYS_MAX_SPEC_BYTES * 2);
    bool same = !key_spec_to_json(&k->spec, &a) && !key_spec_to_json(&n->spec, &b) &&
                a.len == b.len && !memcmp(a.p, b.p, a.len);
    buf_free(&a);
    buf_free(&b);
    if (!same) {
        uint64_t now = clock_now_ms();
        struct key_spec old = k->spec;
        k->spec = n->spec;
        n->spec = old;
        key_bucket_set_rate(&k->req_bucket, k->spec.rpm, now);
        key_bucket_set_rate(&k->tok_bucket, k->spec.tpm, now);
        LOGI("key_updated", "key=%s by=remote", k->id);
    }
    k->updated_ms = n->updated_ms;
    key_free_unlisted(n);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void keys_resync(struct gw *g, const struct store_key_row *rows, size_t n)
{
    struct keys *ks = g->keys;
    if (!ks) return;
    for (size_t i = 0; i < n; i++) keys_apply_remote(g, rows[i].id, &rows[i]);
    const char **ids = xcalloc(n ? n : 1, sizeof *ids);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (rows[i].id) ids[m++] = rows[i].id;
    qsort(ids, m, sizeof *ids, cmp_str);
    for (size_t i = 0; i < ks->n;) {
        struct client_key *k = ks->v[i];
        const char *key = k->id;
        /* a key this gateway is writing is read again after its write (sync.h) */
        if (!sync_defer_remote(g, SYNC_KEY, k->id) &&
            !bsearch(&key, ids, m, sizeof *ids, cmp_str)) {
            LOGI("key_removed", "key=%s by=remote reason=\"no row\"", k->id);
            table_remove(ks, k); /* v[i] is another key now */
            continue;
        }
        i++;
    }
    xfree(ids);
    if (n) ks->any_stored = true;
    if (n > ks->n_stored) ks->n_stored = n;
}

bool keys_auth_required(const struct gw *g)
{
    return g->cfg.api_key || g->cfg.keys_required || (g->keys && g->keys->any_stored);
}

/* The token of "Authorization: Bearer <token>" (RFC 7235: scheme in any case, 1+ spaces), or,
 * with no Authorization header, of "x-api-key: <token>" (how Anthropic's SDKs send a key). */
static struct strv bearer_token(const struct http_request *req)
{
    struct strv h = http_request_header(req, "Authorization");
    if (!h.p) {
        struct strv x = strv_trim(http_request_header(req, "x-api-key"));
        return x.p && x.len ? x : STRV_NULL;
    }
    const struct strv scheme = STRV_LIT("Bearer");
    if (!h.p || h.len <= scheme.len || !strv_eq_ci(strv_sub(h, 0, scheme.len), scheme) ||
        h.p[scheme.len] != ' ')
        return STRV_NULL;
    size_t i = scheme.len;
    while (i < h.len && h.p[i] == ' ') i++;
    return strv_trim(strv_sub(h, i, h.len - i));
}

/* Constant time in the token's bytes (the length may show). */
static bool token_equals(struct strv tok, const char *want)
{
    size_t n = strlen(want);
    if (tok.len != n) return false;
    unsigned char d = 0;
    for (size_t i = 0; i < n; i++) d |= (unsigned char)(tok.p[i] ^ want[i]);
    return d == 0;
}

struct client_key *keys_authenticate(struct gw *g, const struct http_request *req, const char **why)
{
    struct keys *ks = g->keys;
    const char *dummy;
    if (!why) why = &dummy;
    *why = NULL;
    struct strv tok = bearer_token(req);
    struct client_key *k = NULL;
    if (!tok.p || tok.len == 0) {
        *why = "missing";
    } else if (g->cfg.api_key && token_equals(tok, g->cfg.api_key)) {
        /* without a table (keys_open not called: tests) the legacy key still passes */
        static struct client_key bare_legacy = {
            .id = "legacy", .legacy = true, .spec = {.endpoints = KEP_ALL}};
        k = ks ? &ks->legacy : &bare_legacy;
    } else if (ks && tok.len <= 512) {
        char hex[65];
        sha256_hex(tok.p, tok.len, hex);
        k = index_find(ks, hex);
        if (!k) *why = "unknown";
    } else {
        *why = "unknown";
    }
    if (k && k->spec.expires_ms && clock_wall_ms() >= k->spec.expires_ms) {
        *why = "expired";
        k = NULL;
    }
    if (ks) {
        ks->cur_req = req->id;
        ks->cur_ptr = req;
        ks->cur_key = k;
    }
    return k;
}

static void answer(struct http_request *req, int status, const char *type, const char *code,
                   const char *msg, const struct http_header *extra, size_t n_extra)
{
    struct buf b;
    buf_init(&b, 4096);
    bool ollama = strv_starts_with(req->path, STRV_LIT("/api/"));
    int rc;
    if (strv_starts_with(req->path, STRV_LIT("/v1/messages"))) {
        rc = gw_anthropic_error_json(&b, status, msg); /* Anthropic's SDKs read their shape */
    } else if (ollama) {
        rc = buf_append_cstr(&b, "{\"error\":");
        if (!rc) rc = json_append_str(&b, msg, strlen(msg));
        if (!rc) rc = buf_append_cstr(&b, "}");
    } else {
        rc = gw_error_json(&b, msg, type, NULL, code);
    }
    if (rc) buf_reset(&b);
    (void)http_respond_json(req, status, extra, n_extra, b.p ? b.p : "{}", b.p ? b.len : 2);
    buf_free(&b);
}

void keys_reply(struct http_request *req, int status, const char *code, const char *msg)
{
    answer(req, status, "invalid_request_error", code, msg, NULL, 0);
}

void keys_answer_unauthorized(struct gw *g, struct http_request *req, const char *why)
{
    struct strv tok = bearer_token(req);
    char shown[32], msg[256];
    keys_mask_token(tok, shown, sizeof shown);
    if (!tok.p || !tok.len)
        snprintf(msg, sizeof msg,
                 "You didn't provide an API key. You need to provide your API key in an "
                 "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).");
    else if (why && !strcmp(why, "expired"))
        snprintf(msg, sizeof msg, "The API key provided has expired: %s.", shown);
    else
        snprintf(msg, sizeof msg, "Incorrect API key provided: %s.", shown);
    audit_auth_failed(g, req, "client", why ? why : "unknown", tok.len ? shown : "-");
    answer(req, 401, "invalid_request_error", "invalid_api_key", msg, NULL, 0);
}

bool keys_may_list(const struct client_key *k, struct strv model)
{
    return !k || key_spec_allows_model(&k->spec, model);
}

static void budget_roll(struct client_key *k, uint64_t wall_ms)
{
    uint64_t start = key_budget_period_start(k->spec.budget_period, wall_ms);
    if (start != k->budget_period_start) {
        k->budget_period_start = start;
        k->budget_used = 0;
    }
}

static bool fleet_on(const struct gw *g)
{
    return g && g->keys && g->keys->fleet;
}

static struct key_fleet_view fleet_view(const struct gw *g, uint64_t now_ms)
{
    return (struct key_fleet_view){.now_ms = now_ms,
                                   .interval_ms = g->keys->fleet_interval_ms,
                                   .live = g->keys->fleet_live ? g->keys->fleet_live : 1};
}

/* What x-ratelimit-remaining-* and GET /admin/v1/keys show: this gateway's bucket, or with
 * several gateways its view of the fleet's. */
static uint64_t remaining_of(const struct gw *g, const struct client_key *k, bool tokens,
                             uint64_t now_ms)
{
    if (fleet_on(g))
        return tokens ? key_share_remaining(&k->fleet_tok, k->spec.tpm, now_ms)
                      : key_share_remaining(&k->fleet_req, k->spec.rpm, now_ms);
    return key_bucket_remaining(tokens ? &k->tok_bucket : &k->req_bucket, now_ms);
}

static uint64_t reset_of(const struct gw *g, const struct client_key *k, bool tokens,
                         uint64_t now_ms)
{
    if (fleet_on(g))
        return tokens ? key_share_reset_ms(&k->fleet_tok, k->spec.tpm, now_ms)
                      : key_share_reset_ms(&k->fleet_req, k->spec.rpm, now_ms);
    return key_bucket_reset_ms(tokens ? &k->tok_bucket : &k->req_bucket, now_ms);
}

static void fill_headers(const struct gw *g, struct client_key *k, uint64_t now_ms,
                         struct key_grant *out)
{
    if (k->spec.rpm) {
        out->has_req = true;
        snprintf(out->lim_req, sizeof out->lim_req, "%llu", (unsigned long long)k->spec.rpm);
        snprintf(out->rem_req, sizeof out->rem_req, "%llu",
                 (unsigned long long)remaining_of(g, k, false, now_ms));
        key_format_reset(reset_of(g, k, false, now_ms), out->reset_req, sizeof out->reset_req);
    }
    if (k->spec.tpm) {
        out->has_tok = true;
        snprintf(out->lim_tok, sizeof out->lim_tok, "%llu", (unsigned long long)k->spec.tpm);
        snprintf(out->rem_tok, sizeof out->rem_tok, "%llu",
                 (unsigned long long)remaining_of(g, k, true, now_ms));
        key_format_reset(reset_of(g, k, true, now_ms), out->reset_tok, sizeof out->reset_tok);
    }
}

/* Tokens a request of k is expected to use: the demand it adds to the tokens' fleet bucket. */
static uint64_t tokens_expected(const struct client_key *k)
{
    uint64_t t = k->tok_avg ? k->tok_avg : 1000;
    return k->spec.tpm && t > k->spec.tpm ? k->spec.tpm : t;
}

static bool has_limits(const struct client_key *k)
{
    return k->spec.rpm || k->spec.tpm || k->spec.budget_tokens;
}

/* ---- several gateways: the limits shared through the store (limits.c) --------------------- */

void keys_fleet_enable(struct gw *g, uint64_t interval_ms)
{
    struct keys *ks = g->keys;
    if (!ks) return;
    ks->fleet = true;
    ks->fleet_interval_ms = interval_ms ? interval_ms : 250;
    if (!ks->fleet_live) ks->fleet_live = 1;
}

bool keys_fleet_enabled(const struct gw *g)
{
    return fleet_on(g);
}

void keys_fleet_report(struct gw *g, struct store_limits_round *r, uint64_t wall_ms, bool final)
{
    struct keys *ks = g->keys;
    r->today = (int64_t)(wall_ms / MS_PER_DAY);
    r->month_first_day = (int64_t)(key_budget_period_start(KEY_BUDGET_MONTH, wall_ms) / MS_PER_DAY);
    if (!ks) return;
    size_t cap = 0;
    for (size_t i = 0; i < ks->n; i++) {
        struct client_key *k = ks->v[i];
        /* every key with limits: those with nothing to report learn the fleet's levels, so a
         * burst here finds its share there at once */
        bool req = k->spec.rpm && (k->fleet_req.grant || k->fleet_req.demand || k->fleet_req.peak);
        bool tok = k->spec.tpm && (k->fleet_tok.grant || k->fleet_tok.demand || k->fleet_tok.peak);
        if (!has_limits(k) && !k->requests_unsent && !k->tokens_unsent) continue;
        if (r->n == cap) {
            cap = cap ? 2 * cap : 64;
            r->v = xrealloc(r->v, cap * sizeof *r->v);
        }
        struct store_key_sync *e = &r->v[r->n++];
        memset(e, 0, sizeof *e);
        e->key_id = xstrdup(k->id);
        e->ref = k;
        k->refs++;
        e->rpm = k->spec.rpm;
        e->tpm = k->spec.tpm;
        if (req) key_share_report(&k->fleet_req, k->spec.rpm, &e->give_req, &e->want_req);
        if (tok) key_share_report(&k->fleet_tok, k->spec.tpm, &e->give_tok, &e->want_tok);
        if (final) e->want_req = e->want_tok = 0;
        e->requests = k->requests_sent = k->requests_unsent;
        e->tokens = k->tokens_sent = k->tokens_unsent;
        k->requests_unsent = k->tokens_unsent = 0;
        e->day = r->today;
        e->total = k->spec.budget_tokens != 0;
    }
}

void keys_fleet_apply(struct gw *g, struct store_limits_round *r, int rc)
{
    struct keys *ks = g->keys;
    uint64_t now = clock_now_ms(), wall = clock_wall_ms();
    if (!rc && ks) ks->fleet_live = r->live_gateways ? r->live_gateways : 1;
    for (size_t i = 0; i < r->n; i++) {
        struct store_key_sync *e = &r->v[i];
        struct client_key *k = e->ref;
        if (rc) {
            /* the store is away: what the round carried is this gateway's again */
            if (e->rpm) key_share_failed(&k->fleet_req);
            if (e->tpm) key_share_failed(&k->fleet_tok);
            k->requests_unsent += k->requests_sent;
            k->tokens_unsent += k->tokens_sent;
        } else {
            /* (a key whose limits changed meanwhile: the report concerned the old ones) */
            if (e->rpm && e->has_level_req)
                key_share_reconciled(&k->fleet_req, e->got_req, e->level_req, now);
            if (e->tpm && e->has_level_tok)
                key_share_reconciled(&k->fleet_tok, e->got_tok, e->level_tok, now);
            /* the budget: the fleet's tokens of the period (this gateway's up to the report
             * included) and what this gateway spent since; the day the round counted in must
             * still be today (a round across midnight leaves the new period alone) */
            if (e->total && k->spec.budget_tokens && (int64_t)(wall / MS_PER_DAY) == r->today) {
                budget_roll(k, wall);
                uint64_t fleet =
                    k->spec.budget_period == KEY_BUDGET_MONTH ? e->month_tokens : e->day_tokens;
                if (k->budget_floor_start == k->budget_period_start && fleet < k->budget_floor)
                    fleet = k->budget_floor;
                k->budget_used = fleet + k->tokens_unsent;
            }
        }
        k->requests_sent = k->tokens_sent = 0;
        key_unref(k);
    }
}

int keys_check(struct gw *g, struct client_key *k, unsigned endpoint, struct strv model,
               uint64_t now_ms, uint64_t wall_ms, struct key_grant *out, uint64_t *retry_after_s,
               const char **code)
{
    *retry_after_s = 0;
    *code = NULL;
    if (k->spec.expires_ms && wall_ms >= k->spec.expires_ms) {
        *code = "invalid_api_key";
        return 401;
    }
    if (endpoint && !(k->spec.endpoints & endpoint)) {
        *code = "endpoint_not_allowed";
        return 403;
    }
    if (!key_spec_allows_model(&k->spec, model)) {
        *code = "model_not_found";
        return 403;
    }
    uint64_t wait_ms = 0;
    if (k->spec.max_concurrent && k->inflight >= k->spec.max_concurrent) {
        *code = "concurrency";
        wait_ms = 1000;
    } else if (k->spec.budget_tokens) {
        budget_roll(k, wall_ms);
        if (k->budget_used >= k->spec.budget_tokens) {
            *code = "insufficient_quota";
            wait_ms = key_budget_period_end(k->spec.budget_period, wall_ms) - wall_ms;
        }
    }
    bool fleet = fleet_on(g);
    int how_req = 0, how_tok = 0;
    if (fleet && !*code) {
        /* several gateways: the allowances taken from the fleet's buckets (docs/deploy.md) */
        struct key_fleet_view v = fleet_view(g, now_ms);
        if (k->spec.rpm) {
            key_share_ask(&k->fleet_req, 1);
            how_req = key_share_may(&k->fleet_req, k->spec.rpm, 1, &v);
            if (!how_req) {
                *code = "requests";
                wait_ms = key_share_wait_ms(&k->fleet_req, k->spec.rpm, 1, &v);
            }
        }
        if (!*code && k->spec.tpm) {
            key_share_ask(&k->fleet_tok, tokens_expected(k));
            how_tok = key_share_may(&k->fleet_tok, k->spec.tpm, 0, &v);
            if (!how_tok) {
                *code = "tokens";
                wait_ms = key_share_wait_ms(&k->fleet_tok, k->spec.tpm, 0, &v);
            }
        }
        /* refused while the fleet still holds units: this gateway only lacks an allowance */
        if (*code && wait_ms <= v.interval_ms) limits_wake(g);
    } else if (!*code) {
        if (k->spec.rpm && key_bucket_wait_ms(&k->req_bucket, 1, now_ms)) {
            *code = "requests";
            wait_ms = key_bucket_wait_ms(&k->req_bucket, 1, now_ms);
        }
        if (!*code && k->spec.tpm && key_bucket_wait_ms(&k->tok_bucket, 0, now_ms)) {
            *code = "tokens";
            wait_ms = key_bucket_wait_ms(&k->tok_bucket, 0, now_ms);
        }
    }
    if (*code) {
        *retry_after_s = (wait_ms + 999) / 1000;
        if (*retry_after_s == 0) *retry_after_s = 1;
        fill_headers(g, k, now_ms, out);
        k->rate_limited_total++;
        return 429;
    }
    if (fleet) {
        if (k->spec.rpm) key_share_take(&k->fleet_req, 1, how_req);
        if (k->spec.tpm) key_share_take(&k->fleet_tok, 0, how_tok);
        if (has_limits(k)) k->requests_unsent++;
    } else {
        (void)key_bucket_take(&k->req_bucket, 1, now_ms);
    }
    fill_headers(g, k, now_ms, out);
    return 0;
}

size_t keys_grant_headers(const struct key_grant *gr, struct http_header *h, size_t cap)
{
    size_t n = 0;
#define H(name, v)                                                                                 \
    if (n < cap) h[n++] = (struct http_header)                                                     \
        {                                                                                          \
            STRV_LIT(name), strv_from_cstr(v)                                                      \
        }
    if (gr->has_req) {
        H("x-ratelimit-limit-requests", gr->lim_req);
        H("x-ratelimit-remaining-requests", gr->rem_req);
        H("x-ratelimit-reset-requests", gr->reset_req);
    }
    if (gr->has_tok) {
        H("x-ratelimit-limit-tokens", gr->lim_tok);
        H("x-ratelimit-remaining-tokens", gr->rem_tok);
        H("x-ratelimit-reset-tokens", gr->reset_tok);
    }
#undef H
    return n;
}

int keys_admit(struct gw *g, struct http_request *req, struct strv model, struct key_grant *out)
{
    memset(out, 0, sizeof *out);
    struct keys *ks = g->keys;
    unsigned ep = key_endpoint_of_path(req->path);
    out->endpoint = ep;
    snprintf(out->model, sizeof out->model, "%.*s", (int)(model.len < 127 ? model.len : 127),
             model.p ? model.p : "");
    struct client_key *k = NULL;
    const char *why = NULL;
    if (ks && ks->cur_req == req->id && ks->cur_ptr == req && ks->cur_key)
        k = ks->cur_key; /* api.c authenticated this very request */
    else if (keys_auth_required(g))
        k = keys_authenticate(g, req, &why);
    if (!k && keys_auth_required(g)) {
        out->status = 401;
        keys_answer_unauthorized(g, req, why);
        return GW_E_INVALID;
    }
    if (!k || k->legacy) {
        out->key_id = k ? "legacy" : "open";
        return 0;
    }
    uint64_t retry = 0;
    const char *code = NULL;
    int st = keys_check(g, k, ep, model, clock_now_ms(), clock_wall_ms(), out, &retry, &code);
    if (st == 0) {
        k->refs++;
        k->inflight++;
        k->requests_total++;
        out->key = k;
        out->key_id = k->id;
        out->counted = true;
        return 0;
    }
    out->status = st;
    char msg[512];
    if (st == 401) {
        keys_answer_unauthorized(g, req, "expired");
        return GW_E_INVALID;
    }
    if (st == 403) {
        if (!strcmp(code, "endpoint_not_allowed"))
            snprintf(msg, sizeof msg, "Key `%s` may not use the %s endpoint", k->id,
                     key_endpoint_name(ep));
        else
            snprintf(msg, sizeof msg, "Key `%s` does not have access to model `%s`", k->id,
                     out->model);
        LOGI("key_refused", "id=%llu key=%s model=%s status=403 code=%s",
             (unsigned long long)req->id, k->id, out->model, code);
        answer(req, 403, "invalid_request_error", code, msg, NULL, 0);
        return GW_E_INVALID;
    }
    const char *type = "requests", *ecode = "rate_limit_exceeded";
    if (!strcmp(code, "insufficient_quota")) {
        type = ecode = "insufficient_quota";
        snprintf(msg, sizeof msg,
                 "You exceeded your current quota: key `%s` used %llu of its %llu tokens this %s.",
                 k->id, (unsigned long long)k->budget_used,
                 (unsigned long long)k->spec.budget_tokens,
                 k->spec.budget_period == KEY_BUDGET_MONTH ? "month" : "day");
    } else if (!strcmp(code, "concurrency")) {
        snprintf(msg, sizeof msg,
                 "Rate limit reached for key `%s` on concurrent requests: Limit %u, In flight %u. "
                 "Please try again in 1s.",
                 k->id, k->spec.max_concurrent, k->inflight);
    } else if (!strcmp(code, "requests")) {
        snprintf(msg, sizeof msg,
                 "Rate limit reached for key `%s` on requests per min (RPM): Limit %llu. Please "
                 "try again in %llus.",
                 k->id, (unsigned long long)k->spec.rpm, (unsigned long long)retry);
    } else {
        type = "tokens";
        snprintf(msg, sizeof msg,
                 "Rate limit reached for key `%s` on tokens per min (TPM): Limit %llu. Please "
                 "try again in %llus.",
                 k->id, (unsigned long long)k->spec.tpm, (unsigned long long)retry);
    }
    LOGI("key_refused", "id=%llu key=%s model=%s status=429 reason=%s retry_after_s=%llu",
         (unsigned long long)req->id, k->id, out->model, code, (unsigned long long)retry);
    struct http_header h[8];
    char ra[24];
    snprintf(ra, sizeof ra, "%llu", (unsigned long long)retry);
    size_t n = keys_grant_headers(out, h, 7);
    h[n++] = (struct http_header){STRV_LIT("Retry-After"), strv_from_cstr(ra)};
    answer(req, 429, type, ecode, msg, h, n);
    struct strv m = strv_from_cstr(out->model);
    usage_record(g, k->id,
                 catalogue_find(&g->cat, m) || registry_model_nodes(&g->reg, m) ? out->model
                                                                                : "_unknown",
                 NULL, 429, 0, 0);
    return GW_E_INVALID;
}

void keys_release(struct gw *g, struct key_grant *gr, int status, uint64_t prompt_tokens,
                  uint64_t completion_tokens, const char *node)
{
    if (!gr->key_id) return;
    struct client_key *k = gr->key;
    if (k) {
        uint64_t tokens = prompt_tokens + completion_tokens;
        if (gr->counted && k->inflight) k->inflight--;
        if (fleet_on(g)) {
            if (k->spec.tpm) key_share_spend(&k->fleet_tok, tokens);
            if (has_limits(k)) k->tokens_unsent += tokens;
        } else {
            key_bucket_debit(&k->tok_bucket, tokens, clock_now_ms());
        }
        if (tokens) k->tok_avg = k->tok_avg ? (7 * k->tok_avg + tokens) / 8 : tokens;
        if (k->spec.budget_tokens) {
            budget_roll(k, clock_wall_ms());
            k->budget_used += tokens;
        }
    }
    /* A model no node answered for and nobody knows (a 404) is the client's free text: it is
     * counted as "_unknown", so no client can grow the usage tables with names it makes up. */
    struct strv m = strv_from_cstr(gr->model);
    bool known = node || catalogue_find(&g->cat, m) || registry_model_nodes(&g->reg, m);
    usage_record(g, gr->key_id, known ? gr->model : "_unknown", node, status, prompt_tokens,
                 completion_tokens);
    key_unref(k);
    /* the x-ratelimit-* values stay: an answer may be written after the release */
    gr->key = NULL;
    gr->key_id = NULL;
    gr->counted = false;
}

/* ---- admin API --------------------------------------------------------------------------- */

static const char *key_status(const struct client_key *k, uint64_t wall_ms)
{
    if (k->revoked_ms) return "revoked";
    if (k->spec.expires_ms && wall_ms >= k->spec.expires_ms) return "expired";
    return "active";
}

static int key_json(const struct gw *g, const struct client_key *k, struct buf *o)
{
    uint64_t now = clock_now_ms(), wall = clock_wall_ms();
    int rc = buf_appendf(o, "{\"id\":\"%s\",\"prefix\":", k->id);
    if (!rc) rc = json_append_str(o, k->prefix, strlen(k->prefix));
    if (!rc)
        rc = buf_appendf(o,
                         ",\"status\":\"%s\",\"created_ms\":%llu,\"updated_ms\":%llu,"
                         "\"revoked_ms\":%llu,\"in_flight\":%u,\"requests_total\":%llu,"
                         "\"rate_limited_total\":%llu,\"budget_used\":%llu,",
                         key_status(k, wall), (unsigned long long)k->created_ms,
                         (unsigned long long)k->updated_ms, (unsigned long long)k->revoked_ms,
                         k->inflight, (unsigned long long)k->requests_total,
                         (unsigned long long)k->rate_limited_total,
                         (unsigned long long)k->budget_used);
    if (!rc && k->spec.rpm)
        rc = buf_appendf(o, "\"remaining_requests\":%llu,",
                         (unsigned long long)remaining_of(g, k, false, now));
    if (!rc && k->spec.tpm)
        rc = buf_appendf(o, "\"remaining_tokens\":%llu,",
                         (unsigned long long)remaining_of(g, k, true, now));
    if (!rc) rc = buf_append_cstr(o, "\"spec\":");
    if (!rc) rc = key_spec_to_json(&k->spec, o);
    if (!rc) rc = buf_append_cstr(o, "}");
    return rc;
}

static void store_row_of(const struct client_key *k, const char *hash, struct buf *spec,
                         struct store_key_row *r)
{
    memset(r, 0, sizeof *r);
    r->id = (char *)k->id;
    r->secret_hash = (char *)hash;
    r->prefix = (char *)k->prefix;
    r->spec_json = spec->p;
    r->created_ms = (int64_t)k->created_ms;
    r->updated_ms = (int64_t)k->updated_ms;
    r->revoked_ms = (int64_t)k->revoked_ms;
}

enum key_change { KC_CREATE, KC_ROTATE, KC_REVOKE, KC_UPDATE };

struct key_write {
    struct gw *g;
    enum key_change what;
    struct client_key *k; /* a reference */
    char hash[65], prefix[12];
    struct key_spec spec; /* KC_UPDATE */
    struct gw_reply *reply;
};

static void key_write_done(void *ctx, int rc, const char *msg)
{
    struct key_write *w = ctx;
    struct gw *g = w->g;
    struct client_key *k = w->k;
    if (!rc && g->keys) {
        struct keys *ks = g->keys;
        switch (w->what) {
        case KC_CREATE:
            ks->any_stored = true;
            ks->n_stored++;
            table_add(ks, k);
            LOGI("key_created", "key=%s name=%s", k->id, k->spec.name);
            break;
        case KC_ROTATE:
            if (k->in_table) {
                memcpy(k->hash, w->hash, sizeof k->hash);
                memcpy(k->prefix, w->prefix, sizeof k->prefix);
                index_rebuild(ks); /* the old secret stops here */
            }
            LOGI("key_rotated", "key=%s", k->id);
            break;
        case KC_UPDATE:
            if (k->in_table) {
                uint64_t now = clock_now_ms();
                key_spec_free(&k->spec);
                k->spec = w->spec;
                memset(&w->spec, 0, sizeof w->spec);
                key_bucket_set_rate(&k->req_bucket, k->spec.rpm, now);
                key_bucket_set_rate(&k->tok_bucket, k->spec.tpm, now);
                k->updated_ms = clock_wall_ms();
            }
            LOGI("key_updated", "key=%s", k->id);
            break;
        case KC_REVOKE:
            revoked_add(ks, k->id); /* committed: never back, whatever a stale copy says */
            LOGI("key_revoked", "key=%s", k->id);
            break;
        }
    } else if (rc) {
        LOGE("key_write_failed", "key=%s reason=\"%s\"", k->id, msg ? msg : "?");
    }
    gw_reply_done(w->reply, rc, msg);
    key_spec_free(&w->spec);
    key_unref(k);
    xfree(w);
}

static void key_write_submit(struct gw *g, struct http_request *req, struct key_write *w,
                             int status, struct buf *body)
{
    w->g = g;
    w->reply = gw_reply_new(req, status, body, NULL);
    struct buf spec;
    buf_init(&spec, KEYS_MAX_SPEC_BYTES * 2);
    const struct key_spec *s = w->what == KC_UPDATE ? &w->spec : &w->k->spec;
    if (key_spec_to_json(s, &spec)) {
        buf_free(&spec);
        key_write_done(w, GW_E_LIMIT, "the key's spec is too large");
        return;
    }
    struct store_key_row r;
    store_row_of(w->k, w->what == KC_ROTATE ? w->hash : w->k->hash, &spec, &r);
    static const enum store_key_change change[] = {[KC_CREATE] = STORE_KEY_CREATE,
                                                   [KC_ROTATE] = STORE_KEY_SECRET,
                                                   [KC_REVOKE] = STORE_KEY_REVOKE,
                                                   [KC_UPDATE] = STORE_KEY_SPEC};
    r.change = change[w->what];
    if (w->what == KC_ROTATE) r.prefix = w->prefix;
    if (w->what == KC_UPDATE) r.updated_ms = (int64_t)clock_wall_ms();
    /* sync.h: a re-read of this key queued before the write does not take it back, and a write
     * that fails re-reads the row (a revocation stays: revoked ids never come back) */
    if (g->store)
        store_put_key(g->store, &r, sync_write_done,
                      sync_write(g, SYNC_KEY, w->k->id, key_write_done, w));
    else
        key_write_done(w, 0, NULL);
    buf_free(&spec);
}

static void reply_key(const struct gw *g, struct http_request *req, const struct client_key *k)
{
    struct buf b;
    buf_init(&b, 1u << 20);
    int rc = key_json(g, k, &b);
    (void)http_respond_json(req, rc ? 500 : 200, NULL, 0, b.p, b.len);
    buf_free(&b);
}

/* {"key":{…},"secret":"dk-…"}: the only time the secret is shown. */
static int key_secret_body(const struct gw *g, const struct client_key *k, const char *secret,
                           struct buf *b)
{
    int rc = buf_append_cstr(b, "{\"key\":");
    if (!rc) rc = key_json(g, k, b);
    if (!rc) rc = buf_append_cstr(b, ",\"secret\":");
    if (!rc) rc = json_append_str(b, secret, strlen(secret));
    if (!rc)
        rc = buf_append_cstr(b, ",\"note\":\"the secret is shown once; the gateway keeps only "
                                "its SHA-256\"}");
    return rc;
}

static void keys_list(struct gw *g, struct http_request *req)
{
    struct keys *ks = g->keys;
    struct buf b;
    buf_init(&b, 256u << 20);
    int rc = buf_append_cstr(&b, "{\"keys\":[");
    for (size_t i = 0; i < ks->n && !rc; i++) {
        if (i) rc = buf_append_cstr(&b, ",");
        if (!rc) rc = key_json(g, ks->v[i], &b);
    }
    if (!rc)
        rc =
            buf_appendf(&b, "],\"legacy_api_key\":%s,\"auth_required\":%s,\"revoked\":%zu}",
                        g->cfg.api_key ? "true" : "false", keys_auth_required(g) ? "true" : "false",
                        ks->n_stored >= ks->n ? ks->n_stored - ks->n : 0);
    (void)http_respond_json(req, rc ? 500 : 200, NULL, 0, b.p, b.len);
    buf_free(&b);
}

static void keys_create(struct gw *g, struct http_request *req)
{
    struct key_spec s;
    key_spec_init(&s);
    char why[200];
    if (key_spec_apply(&s, req->body.p ? req->body.p : "", req->body.len, why, sizeof why)) {
        key_spec_free(&s);
        return gw_reply_error(req, 400, "invalid_key_spec", NULL, why);
    }
    if (g->keys->n >= KEYS_MAX_KEYS) {
        key_spec_free(&s);
        return gw_reply_error(req, 409, "too_many_keys", NULL, "too many active keys");
    }
    char secret[KEYS_SECRET_BYTES + 1];
    if (keys_new_secret(secret)) {
        key_spec_free(&s);
        return gw_reply_error(req, 500, "internal_error", NULL, "no randomness for a secret");
    }
    struct key_write *w = xcalloc(1, sizeof *w);
    w->what = KC_CREATE;
    w->k = key_new(secret, &s);
    w->k->refs = 1; /* the write's; the table takes its own at commit */
    key_spec_free(&s);
    struct buf b;
    buf_init(&b, 1u << 20);
    if (key_secret_body(g, w->k, secret, &b)) buf_reset(&b);
    /* the body shows the key as it will be: active */
    w->k->in_table = false;
    key_write_submit(g, req, w, 201, &b);
    memset(secret, 0, sizeof secret);
}

void keys_admin(struct gw *g, struct http_request *req, struct strv rest)
{
    bool is_get = strv_eq_cstr(req->method, "GET");
    bool is_post = strv_eq_cstr(req->method, "POST");
    if (rest.len == 0) {
        if (is_get) return keys_list(g, req);
        if (is_post) return keys_create(g, req);
        return gw_reply_error(req, 405, "method_not_allowed", NULL, "use GET or POST");
    }
    struct strv id = strv_sub(rest, 1, rest.len), action = STRV_NULL;
    long slash = strv_index(id, '/');
    if (slash >= 0) {
        action = strv_sub(id, (size_t)slash + 1, id.len);
        id = strv_sub(id, 0, (size_t)slash);
    }
    struct client_key *k = keys_find_id(g, id);
    if (!k)
        return gw_reply_error(req, 404, "key_not_found", NULL,
                              "no such active key (revoked keys are gone)");
    if (action.len == 0 && is_get) return reply_key(g, req, k);
    bool revoke = (action.len == 0 && strv_eq_cstr(req->method, "DELETE")) ||
                  (is_post && strv_eq_cstr(action, "revoke"));
    bool rotate = is_post && strv_eq_cstr(action, "rotate");
    bool update = action.len == 0 && strv_eq_cstr(req->method, "PATCH");
    if (!revoke && !rotate && !update) {
        if (action.len && !strv_eq_cstr(action, "revoke") && !strv_eq_cstr(action, "rotate"))
            return gw_reply_error(req, 404, "unknown_action", NULL, "unknown key action");
        return gw_reply_error(req, 405, "method_not_allowed", NULL,
                              "GET, PATCH or DELETE /keys/ID; POST /keys/ID/rotate|revoke");
    }
    struct key_write *w = xcalloc(1, sizeof *w);
    w->k = k;
    k->refs++;
    struct buf b;
    buf_init(&b, 1u << 20);
    if (update) {
        w->what = KC_UPDATE;
        key_spec_copy(&w->spec, &k->spec);
        char why[200];
        if (key_spec_apply(&w->spec, req->body.p ? req->body.p : "", req->body.len, why,
                           sizeof why)) {
            key_spec_free(&w->spec);
            key_unref(k);
            xfree(w);
            buf_free(&b);
            return gw_reply_error(req, 400, "invalid_key_spec", NULL, why);
        }
        /* the answer shows the new spec */
        struct key_spec old = k->spec;
        k->spec = w->spec;
        if (key_json(g, k, &b)) buf_reset(&b);
        k->spec = old;
        return key_write_submit(g, req, w, 200, &b);
    }
    if (rotate) {
        char secret[KEYS_SECRET_BYTES + 1];
        if (keys_new_secret(secret)) {
            key_unref(k);
            xfree(w);
            buf_free(&b);
            return gw_reply_error(req, 500, "internal_error", NULL, "no randomness for a secret");
        }
        w->what = KC_ROTATE;
        sha256_hex(secret, strlen(secret), w->hash);
        snprintf(w->prefix, sizeof w->prefix, "%.8s", secret);
        char old_prefix[12];
        memcpy(old_prefix, k->prefix, sizeof old_prefix);
        memcpy(k->prefix, w->prefix, sizeof k->prefix);
        k->updated_ms = clock_wall_ms();
        if (key_secret_body(g, k, secret, &b)) buf_reset(&b);
        memcpy(k->prefix, old_prefix, sizeof k->prefix);
        memset(secret, 0, sizeof secret);
        return key_write_submit(g, req, w, 200, &b);
    }
    /* revoke: out of the table at once (refused from now on; stale copies wait for the write,
     * sync.h); remembered as revoked once committed. A write the store refuses is answered as
     * such and the row is read back: the key is then as the store and every other gateway
     * hold it, and the revocation can be tried again. */
    w->what = KC_REVOKE;
    k->revoked_ms = clock_wall_ms();
    k->updated_ms = k->revoked_ms;
    table_remove(g->keys, k);
    if (key_json(g, k, &b)) buf_reset(&b);
    key_write_submit(g, req, w, 200, &b);
}
