/* keys — client API keys (DESIGN §10, docs/security.md): many keys, each stored hashed
 * (SHA-256 of the secret; the secret "dk-" + 40 base62 characters is shown once, at creation
 * or rotation), each with entitlements (model globs, endpoints) and limits (requests and tokens
 * per minute as token buckets refilled continuously, concurrent requests, a token budget per
 * UTC day or month, an expiry). The in-memory table is what the data path reads: a revocation
 * takes effect at once; creations and rotations take effect when the store committed them
 * (before the admin API answers). The old single `api_key` of the config is a legacy key with
 * no limits and every entitlement. Refusals are answered as OpenAI answers them: 401
 * invalid_api_key, 403 model_not_found for a model the key may not use, 429
 * rate_limit_exceeded / insufficient_quota with Retry-After and x-ratelimit-* headers. Several
 * gateways on one PostgreSQL share the keys (a change through one is applied by the others, a
 * revocation at once) and the limits (docs/deploy.md "Client keys and limits").
 * The loop thread only, except the pure helpers (buckets, shares, spec parsing, globs): any
 * thread. */
#ifndef DROVER_GW_KEYS_H
#define DROVER_GW_KEYS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/strv.h"
#include "net/http_server.h"

struct gw;
struct store;
struct store_key_row;

enum {
    KEYS_SECRET_CHARS = 40, /* base62 characters after "dk-" (about 238 bits) */
    KEYS_SECRET_BYTES = 3 + KEYS_SECRET_CHARS,
    KEYS_MAX_GLOBS = 64,
    KEYS_MAX_GLOB_BYTES = 200,
    KEYS_MAX_NAME_BYTES = 63,
    KEYS_MAX_RATE = 1000000000, /* per minute: rpm and tpm */
    KEYS_MAX_CONCURRENT = 1000000,
    KEYS_MAX_SPEC_BYTES = 64 * 1024,
    KEYS_MAX_KEYS = 100000,
};

/* Endpoints a key may use. */
enum key_endpoint {
    KEP_CHAT = 1u << 0,        /* POST /v1/chat/completions */
    KEP_COMPLETIONS = 1u << 1, /* POST /v1/completions */
    KEP_EMBEDDINGS = 1u << 2,  /* POST /v1/embeddings */
    KEP_OLLAMA = 1u << 3,      /* /api/ paths (chat, generate, embed, tags) */
    KEP_MODELS = 1u << 4,      /* GET /v1/models */
    KEP_ALL = (1u << 5) - 1,
};
/* "chat" → KEP_CHAT…; 0 when unknown. */
unsigned key_endpoint_parse(struct strv name);
const char *key_endpoint_name(unsigned one_bit);
/* The endpoint a client request path is (0 for paths keys do not gate). */
unsigned key_endpoint_of_path(struct strv path);

enum key_budget_period { KEY_BUDGET_DAY, KEY_BUDGET_MONTH };

/* A key's entitlements and limits: what the admin API takes and the store keeps (as JSON). */
struct key_spec {
    char name[KEYS_MAX_NAME_BYTES + 1], owner[KEYS_MAX_NAME_BYTES + 1],
        team[KEYS_MAX_NAME_BYTES + 1];
    char **models; /* owned globs (fnmatch); none: every model */
    size_t n_models;
    unsigned endpoints; /* KEP_* */
    uint64_t rpm, tpm;  /* per minute; 0: unlimited */
    uint32_t max_concurrent;
    uint64_t budget_tokens; /* prompt + completion tokens per period; 0: none */
    enum key_budget_period budget_period;
    uint64_t expires_ms; /* unix ms; 0: never */
};

void key_spec_init(struct key_spec *s); /* every model and endpoint, no limits */
void key_spec_free(struct key_spec *s);
void key_spec_copy(struct key_spec *dst, const struct key_spec *src);
/* Applies a JSON object (strict, at most KEYS_MAX_SPEC_BYTES) onto s: the members present
 * replace s's (so a create applies onto key_spec_init and an update onto the current spec).
 * Members: name, owner, team (strings of 1..63 printable bytes; owner/team may be ""),
 * models (array of 1..64 globs of 1..200 printable bytes), endpoints (array of endpoint
 * names), rpm, tpm (0..1e9), max_concurrent (0..1e6), budget_tokens (0..1e15), budget_period
 * ("day" | "month"), expires_ms (unix ms, 0 or null: never). Unknown members, wrong types and
 * values out of range are refused with GW_E_INVALID (GW_E_PARSE for bad JSON) and why says
 * which member; s is then unchanged. */
int key_spec_apply(struct key_spec *s, const char *json, size_t len, char *why, size_t why_cap) WUR;
/* The spec as a JSON object (the members above). */
int key_spec_to_json(const struct key_spec *s, struct buf *out) WUR;
/* True when the key may use model (fnmatch on each glob; no globs: every model). */
bool key_spec_allows_model(const struct key_spec *s, struct strv model);

/* ---- token buckets (pure; injected time) ------------------------------------------------
 * Capacity: rate units (one minute's worth); refilled continuously at rate per minute. The
 * level is kept in units × 60000 so refills per millisecond are exact integers. The level may
 * go below zero (a debt): tokens are debited after the answer, when they are known. */
struct key_bucket {
    int64_t level; /* units × 60000 */
    uint64_t rate; /* units per minute; 0: unlimited (never refuses) */
    uint64_t at_ms;
};
void key_bucket_init(struct key_bucket *b, uint64_t rate_per_min, uint64_t now_ms);
/* A new rate keeps the level (capped at the new capacity). */
void key_bucket_set_rate(struct key_bucket *b, uint64_t rate_per_min, uint64_t now_ms);
void key_bucket_refill(struct key_bucket *b, uint64_t now_ms);
/* Takes n units when the level holds them; false (nothing taken) otherwise. */
bool key_bucket_take(struct key_bucket *b, uint64_t n, uint64_t now_ms);
/* Takes n units whatever the level (a debt is allowed, down to one day of refill). */
void key_bucket_debit(struct key_bucket *b, uint64_t n, uint64_t now_ms);
/* Milliseconds until the level holds n units (0: now). For n = 0: until it is above zero. */
uint64_t key_bucket_wait_ms(const struct key_bucket *b, uint64_t n, uint64_t now_ms);
/* Whole units available now (0 in debt). */
uint64_t key_bucket_remaining(const struct key_bucket *b, uint64_t now_ms);
/* Milliseconds until the bucket is full again. */
uint64_t key_bucket_reset_ms(const struct key_bucket *b, uint64_t now_ms);
/* OpenAI's duration format of x-ratelimit-reset-*: "20ms", "1s", "1.5s", "6m0s". */
void key_format_reset(uint64_t ms, char *out, size_t cap);

/* ---- several gateways: this gateway's part of a fleet bucket (pure; injected time) ------
 * With several gateways on one PostgreSQL (docs/deploy.md "Client keys and limits"), a key's
 * requests and tokens per minute are one bucket per kind in the store (store_keys.h), of which
 * each gateway holds an allowance (grant) taken at its last reconciliation; admission spends the
 * grant without waiting for the store. Beyond it a gateway may borrow, at most
 * max(1, rate / (20 × live gateways)) units per reconciliation interval, and only while its view
 * of the fleet bucket (its share, 1 / live gateways, of the untaken level the store answered,
 * refilled since, less what it borrowed since) holds them; what it spent beyond the grant is
 * given back as a debt at the next report. So the allowances never exceed the bucket, and only
 * borrowing can: by about what the gateways borrow in one interval, max(live, 5 % of the
 * limit). Units × 60000, as the buckets above. */
struct key_share {
    int64_t grant;     /* this gateway may still spend it (below 0: it spent beyond) */
    int64_t level;     /* the fleet bucket's untaken level at the last reconciliation */
    uint64_t level_ms; /* when (the loop's clock); 0: never reconciled */
    int64_t borrowed;  /* spent beyond the grant since then */
    uint64_t demand;   /* units asked (taken or refused) since the last report */
    uint64_t peak;     /* the largest recent demand of a report, decaying by 1/8 a report */
    uint64_t slot;     /* the interval borrows are counted in, and how many */
    uint64_t slot_borrows;
    /* the report in the store's queue */
    int64_t give;
    uint64_t asked;
    int64_t borrowed_sent;
};

/* The gateway-wide values of the views: now, the reconciliation interval, the live gateways. */
struct key_fleet_view {
    uint64_t now_ms, interval_ms;
    unsigned live;
};

/* Whether need units may be spent now (tokens: need 0 means "while above zero"): 1 from the
 * grant, 2 borrowed, 0 refused. Changes nothing but the borrow slot's start. */
int key_share_may(struct key_share *s, uint64_t rate, uint64_t need,
                  const struct key_fleet_view *v);
/* Admits after key_share_may said how (1 or 2): requests spend their need units now; tokens
 * (need 0) are spent after the answer with key_share_spend. */
void key_share_take(struct key_share *s, uint64_t need, int how);
/* Spends units from the grant (what it does not cover counts as borrowed). */
void key_share_spend(struct key_share *s, uint64_t units);
/* Counts demand (units asked) for the next report. */
void key_share_ask(struct key_share *s, uint64_t units);
/* This gateway's view of the fleet bucket: the level answered, refilled by rate / live since,
 * less what it borrowed (never reconciled: a full bucket / live), units × 60000. */
int64_t key_share_view(const struct key_share *s, uint64_t rate, const struct key_fleet_view *v);
/* What x-ratelimit-remaining shows (whole units: the untaken level refilled, plus the grant) and
 * the milliseconds until the bucket is full again. */
uint64_t key_share_remaining(const struct key_share *s, uint64_t rate, uint64_t now_ms);
uint64_t key_share_reset_ms(const struct key_share *s, uint64_t rate, uint64_t now_ms);
/* Milliseconds until a refused request may pass: the next reconciliation when the fleet still
 * holds units, else until it refilled them. */
uint64_t key_share_wait_ms(const struct key_share *s, uint64_t rate, uint64_t need,
                           const struct key_fleet_view *v);
/* The report: gives back the whole grant (a debt when below zero) and wants twice the recent
 * peak of the demand (so a key used here a moment ago keeps an allowance; nothing after a few
 * seconds without demand), at most a minute's worth. */
void key_share_report(struct key_share *s, uint64_t rate, int64_t *give, int64_t *want);
/* The store's answer: got taken from a bucket whose untaken level is now level. */
void key_share_reconciled(struct key_share *s, int64_t got, int64_t level, uint64_t now_ms);
/* The report failed (the store away): everything it carried is this gateway's again. */
void key_share_failed(struct key_share *s);

/* Unix ms at which the budget period containing wall_ms began / ends (UTC day or month). */
uint64_t key_budget_period_start(enum key_budget_period p, uint64_t wall_ms);
uint64_t key_budget_period_end(enum key_budget_period p, uint64_t wall_ms);

/* A new secret "dk-" + 40 base62 characters from getrandom (rejection sampling, no bias). */
int keys_new_secret(char out[KEYS_SECRET_BYTES + 1]) WUR;
/* "dk-Ab***wxyz": how a presented token is shown in answers and logs (never in full). */
void keys_mask_token(struct strv tok, char *out, size_t cap);

/* ---- the key table ---------------------------------------------------------------------- */

struct client_key {
    char id[24];
    char hash[65];   /* hex SHA-256 of the secret */
    char prefix[12]; /* first characters of the secret */
    struct key_spec spec;
    uint64_t created_ms, updated_ms, revoked_ms; /* unix ms */
    bool legacy;                                 /* the config's api_key */
    unsigned refs;                               /* the table's one, plus one per grant in flight */
    bool in_table;
    /* live state */
    struct key_bucket req_bucket, tok_bucket;
    unsigned inflight;
    uint64_t budget_used, budget_period_start;
    uint64_t requests_total, rate_limited_total;
    /* several gateways (keys_fleet_*): the fleet buckets, the consumption not yet counted in the
     * store (unsent) or in the report in its queue (sent), the fleet's tokens of the budget's
     * period as last read, and the usage_minutes total read at start (a floor) */
    struct key_share fleet_req, fleet_tok;
    uint64_t tok_avg; /* tokens per answered request (moving average): demand of the tokens */
    uint64_t requests_unsent, tokens_unsent, requests_sent, tokens_sent;
    uint64_t budget_floor, budget_floor_start;
};

/* What keys_admit gives the data path: a reference on the key (held until keys_release) and
 * the x-ratelimit-* values computed at admission. keys_admit fills it whole; keys_release on a
 * zeroed or released grant does nothing. */
struct key_grant {
    struct client_key *key; /* a reference, or NULL (open API / nothing admitted) */
    const char *key_id;     /* "legacy", "open", or the key's id; static or the key's */
    bool counted;           /* the key's in-flight count was raised */
    char model[128];        /* the model admitted (for usage) */
    unsigned endpoint;
    int status; /* when keys_admit refused: the status it answered */
    /* x-ratelimit-* headers (values, formatted at admission) */
    bool has_req, has_tok;
    char lim_req[24], rem_req[24], reset_req[24];
    char lim_tok[24], rem_tok[24], reset_tok[24];
};

struct keys;

/* The table, loaded from the store (rows of store_keys.h) and the usage so far of each budget
 * period. store may be NULL (nothing persisted). */
int keys_open(struct gw *g, struct gw_error *err) WUR;
void keys_close(struct gw *g);

/* True when the client API needs a key: the config has api_key or keys.required, or the
 * store holds any key row (a revoked one too: revoking the last key never opens the API). */
bool keys_auth_required(const struct gw *g);

/* The key whose secret the request's Authorization Bearer carries, or NULL. The legacy key
 * when it matches the config's api_key. Borrowed: valid until the handler returns. Also
 * remembers the answer for this request, so keys_admit does not hash the secret twice. Sets
 * *why ("missing", "unknown", "revoked", "expired") when NULL. */
struct client_key *keys_authenticate(struct gw *g, const struct http_request *req,
                                     const char **why);
/* Answers 401 invalid_api_key as OpenAI does ("Incorrect API key provided: dk-Ab***wxyz."),
 * Ollama's shape on /api/ paths, and logs the failure (rate-limited, audit.h). */
void keys_answer_unauthorized(struct gw *g, struct http_request *req, const char *why);

/* The data path's hook, called by proxy.c once the routed model is known and before any
 * routing: authentication (the key api.c already found), entitlement (endpoint of req->path,
 * model by the key's globs), expiry, concurrency, budget, requests and tokens per minute.
 * Returns 0 when admitted (out filled, a reference held, the key's in-flight count raised, one
 * request taken from its bucket); otherwise it has answered req itself (401, 403 or 429 with
 * Retry-After and the x-ratelimit-* headers), out->status says which, and the caller must
 * neither answer nor call keys_release (which would be harmless). */
int keys_admit(struct gw *g, struct http_request *req, struct strv model,
               struct key_grant *out) WUR;
/* Writes the x-ratelimit-* headers of the grant into h (at most cap; 6 suffice); returns how
 * many. The values point into grant: valid while it is. */
size_t keys_grant_headers(const struct key_grant *grant, struct http_header *h, size_t cap);
/* After the answer (any status, once): the in-flight count falls, the tokens are debited from
 * the per-minute bucket and the budget, and one usage row is counted (usage.h) for the key,
 * the admitted model and node (NULL: none answered). Drops the reference; a second call does
 * nothing. The header values of keys_grant_headers stay valid (the answer may be written after
 * the release). */
void keys_release(struct gw *g, struct key_grant *grant, int status, uint64_t prompt_tokens,
                  uint64_t completion_tokens, const char *node);

/* Answers an error of the client API in its shape: OpenAI's {"error":{…}} with type
 * invalid_request_error, or Ollama's {"error":"…"} on /api/ paths. */
void keys_reply(struct http_request *req, int status, const char *code, const char *msg);

/* The models /v1/models may list for this request's key (NULL key: every model). */
bool keys_may_list(const struct client_key *k, struct strv model);

/* ---- several gateways (sync.c, limits.c) ------------------------------------------------ */

/* A key row another gateway changed (NULL: the row is gone), re-read from the store: the key is
 * added, its secret, spec and expiry replaced, or it leaves the table (revoked, gone, or a row
 * this gateway cannot read: fail closed). A revoked id never comes back. Ignored while a write of
 * this gateway for the key is in the store's queue (sync.h). */
void keys_apply_remote(struct gw *g, const char *id, const struct store_key_row *row);
/* Every key row (the full re-read after a reconnection): each applied as above, and the keys
 * without a row leave the table. */
void keys_resync(struct gw *g, const struct store_key_row *rows, size_t n);

struct store_limits_round;
/* Limits shared through the store from now on (limits.c; several gateways only). */
void keys_fleet_enable(struct gw *g, uint64_t interval_ms);
bool keys_fleet_enabled(const struct gw *g);
/* Fills round with what each key has to report (grants given back, allowances wanted, requests
 * and tokens to count, budgets to read) and holds a reference on each key until
 * keys_fleet_apply. final: the gateway stops (everything given back, nothing wanted). */
void keys_fleet_report(struct gw *g, struct store_limits_round *round, uint64_t wall_ms,
                       bool final);
/* The round's answer (rc 0: applied; otherwise what it carried is put back) and drops the
 * references. */
void keys_fleet_apply(struct gw *g, struct store_limits_round *round, int rc);

/* Admin API: /admin/v1/keys[/ID[/rotate|/revoke]] (rest is what follows "/admin/v1/keys");
 * the caller checked the role and recorded the audit row. */
void keys_admin(struct gw *g, struct http_request *req, struct strv rest);

/* Test seams. */
struct client_key *keys_find_id(struct gw *g, struct strv id);
/* Adds a key with the given secret and spec to the table (no store), for unit tests. */
struct client_key *keys_add_for_test(struct gw *g, const char *secret, const struct key_spec *s);
/* Admission without an HTTP answer: 0 or the status that would be answered. */
int keys_check(struct gw *g, struct client_key *k, unsigned endpoint, struct strv model,
               uint64_t now_ms, uint64_t wall_ms, struct key_grant *out, uint64_t *retry_after_s,
               const char **code);

#endif
