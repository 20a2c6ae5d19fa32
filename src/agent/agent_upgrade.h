/* agent_upgrade — the agent's upgrade check (docs/agent.md "Upgrade checks"): for every
 * installed model and backend, the operator's check template (upgrade_check.models,
 * upgrade_check.backends) is run as an argv, without a shell, with the item's name in place of
 * {name}; what it prints is the newest digest its source has. Results are cached per item for
 * upgrade_check.interval and refreshed in the background (at most upgrade_check.concurrency
 * checks at once, each killed after upgrade_check.timeout); the inventory answer and the
 * discovery's "installed" list carry the cached latest_digest. A check that fails leaves the
 * item's latest digest unknown, never a wrong or stale one.
 *
 * Two layers. The pure layer (templates, the digest a check printed, the cache with its TTL,
 * the log limiter) takes the time as an argument and is unit-tested with a clock of the
 * test's own. The runtime (agent_upgrade_start and the rest) runs on the loop thread and
 * reads the loop's clock. */
#ifndef DROVER_AGENT_AGENT_UPGRADE_H
#define DROVER_AGENT_AGENT_UPGRADE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/err.h"
#include "base/strv.h"
#include "proto/node_api.h"

struct agent;
struct agent_proc;
struct agent_inventory_run;

enum {
    AGENT_UPGRADE_MAX_ARGS = 64,             /* words of a template */
    AGENT_UPGRADE_MAX_CMD_BYTES = 64 * 1024, /* an expanded argv, all words */
    AGENT_UPGRADE_MAX_OUT_BYTES = 4096,      /* a check's stdout (a digest is < 80) */
    AGENT_UPGRADE_MAX_ERR_BYTES = 4096,      /* a check's stderr, for the log */
    AGENT_UPGRADE_MAX_ENTRIES = 2 * NODE_API_MAX_INV_ITEMS, /* models and backends */
    AGENT_UPGRADE_RETRY_MS = 60 * 1000,          /* after a failure, doubling up to the interval */
    AGENT_UPGRADE_MAX_LIST_MS = 60 * 1000,       /* the background listing, at least this often */
    AGENT_UPGRADE_LOG_EVERY_MS = 10 * 60 * 1000, /* one failure line per item per this */
    AGENT_UPGRADE_LOG_BURST = 10,                /* failure lines per minute, all items */
};

/* --- templates -------------------------------------------------------------------------- */

/* An expanded template: owned words, NULL-terminated (v[n] is NULL). */
struct agent_argv {
    char *v[AGENT_UPGRADE_MAX_ARGS + 1];
    size_t n;
};
void agent_argv_free(struct agent_argv *av);

/* Splits tmpl into words and puts name in place of every {name}. Words are separated by
 * blanks; '…' is literal, "…" is literal but for \" and \\, a backslash outside quotes takes
 * the next byte as it is. {name} is replaced inside quotes too, and the name stays inside its
 * word whatever it holds: nothing is run by a shell, nothing in it is interpreted. Refused
 * (GW_E_INVALID, why says it): no word, more than AGENT_UPGRADE_MAX_ARGS words or
 * AGENT_UPGRADE_MAX_CMD_BYTES bytes, an open quote, a trailing backslash, a placeholder other
 * than {name} ({identifier}; other braces are literal), and a name that is empty, longer than
 * 255 bytes, holds a control byte or starts with '-' (it would read as an option). */
int agent_upgrade_expand(const char *tmpl, const char *name, struct agent_argv *out, char *why,
                         size_t why_cap) WUR;
/* The check of a configured template (agent_config): expands it with a sample name. */
int agent_upgrade_template_check(const char *tmpl, char *why, size_t why_cap) WUR;

/* The latest digest from what a check printed on stdout: surrounding blanks and the final
 * newline are dropped; what is left must be one digest as the inventory holds one
 * (node_api_digest_is_valid). Refused (GW_E_INVALID, why): nothing printed, more than one
 * line, too long, a control byte, output past AGENT_UPGRADE_MAX_OUT_BYTES (truncated). */
int agent_upgrade_digest_parse(struct strv out, bool truncated, char digest[NODE_API_MAX_DIGEST],
                               char *why, size_t why_cap) WUR;

/* --- the cache ---------------------------------------------------------------------------- */

/* One installed item and what its checks found. Times are the caller's monotonic ms. */
struct agent_upgrade_entry {
    bool is_model;
    char name[NODE_API_MAX_ID];
    char digest[NODE_API_MAX_DIGEST]; /* installed, from the last listing; "" unknown */
    char latest[NODE_API_MAX_DIGEST]; /* from the last check when it succeeded; "" unknown */
    bool listed;                      /* in the last listing of its kind */
    bool running;                     /* a check is under way */
    uint64_t seen_ms;                 /* last listed */
    uint64_t checked_ms;              /* when latest was found (valid while latest is set) */
    int64_t checked_wall_ms;          /* the same as Unix ms (the discovery's checked_ms) */
    uint64_t due_ms;                  /* the next check */
    unsigned failures;                /* consecutive */
    uint64_t logged_ms;               /* when a failure of it was last logged */
    unsigned suppressed;              /* failures not logged since */
};

/* Sorted by (kind, name); at most AGENT_UPGRADE_MAX_ENTRIES. */
struct agent_upgrade_cache {
    struct agent_upgrade_entry *v;
    size_t n, cap;
    uint64_t interval_ms; /* a result's life: refreshed after it, dropped after twice it */
};

void agent_upgrade_cache_init(struct agent_upgrade_cache *c, uint64_t interval_ms);
void agent_upgrade_cache_free(struct agent_upgrade_cache *c);
/* A new listing of one kind starts: every entry of that kind is unlisted until noted again. */
void agent_upgrade_cache_unlist(struct agent_upgrade_cache *c, bool is_model);
/* The item is listed now with its installed digest (NULL or "": unknown). A new entry is due
 * at once. NULL when the cache is full (the item is not checked). */
struct agent_upgrade_entry *agent_upgrade_cache_note(struct agent_upgrade_cache *c, bool is_model,
                                                     const char *name, const char *digest,
                                                     uint64_t now_ms);
struct agent_upgrade_entry *agent_upgrade_cache_find(struct agent_upgrade_cache *c, bool is_model,
                                                     const char *name);
/* The listed entry whose check is due longest (not running), marked running; NULL for none. */
struct agent_upgrade_entry *agent_upgrade_cache_take_due(struct agent_upgrade_cache *c,
                                                         uint64_t now_ms);
/* What a log line about a finished check should be. */
enum agent_upgrade_log { AGENT_UPGRADE_LOG_NONE, AGENT_UPGRADE_LOG_FAILED, AGENT_UPGRADE_LOG_OK };
/* A check of (kind, name) ended: latest is the digest it found, or NULL when it failed. A
 * success keeps the digest and is due again after the interval; a failure forgets the latest
 * digest at once and is due again after AGENT_UPGRADE_RETRY_MS doubling per failure, at most
 * the interval. Returns whether to log: the first failure of a run, then one per item every
 * AGENT_UPGRADE_LOG_EVERY_MS (*suppressed: the failures not logged since the last line); the
 * first success after failures (LOG_OK). Unknown entries (pruned meanwhile) are ignored. */
enum agent_upgrade_log agent_upgrade_cache_done(struct agent_upgrade_cache *c, bool is_model,
                                                const char *name, const char *latest,
                                                uint64_t now_ms, int64_t wall_ms,
                                                unsigned *suppressed);
/* The entry's latest digest when known and younger than twice the interval (a refresh that is
 * late, not failed, keeps it), else NULL (also for e NULL). */
const char *agent_upgrade_cache_latest(const struct agent_upgrade_cache *c,
                                       const struct agent_upgrade_entry *e, uint64_t now_ms);
/* Drops entries neither listed nor running that were not listed for twice the interval. */
void agent_upgrade_cache_prune(struct agent_upgrade_cache *c, uint64_t now_ms);

/* How many of max places in the discovery's "installed" go to backends: the room the models
 * leave, at least half of max (when there are that many), never more than there are. */
size_t agent_upgrade_backend_quota(size_t n_models, size_t n_backends, size_t max);

/* At most AGENT_UPGRADE_LOG_BURST lines per minute across items: true to log now; when it
 * is, *dropped says how many were held back before it. */
struct agent_upgrade_loglimit {
    uint64_t window_ms;
    unsigned in_window;
    unsigned dropped;
};
bool agent_upgrade_log_allow(struct agent_upgrade_loglimit *l, uint64_t now_ms, unsigned *dropped);

/* --- the runtime (loop thread) ------------------------------------------------------------- */

struct agent_upgrade_check; /* a running check */

struct agent_upgrade {
    bool enabled; /* a template is configured */
    bool stopping;
    bool own_installed; /* the discovery's "installed" is ours (the config's override has none) */
    struct agent_upgrade_cache cache;
    struct agent_upgrade_loglimit loglimit;
    uv_timer_t timer; /* the background listing */
    bool timer_open;
    struct agent_inventory_run *listing; /* the listing under way, or NULL */
    struct agent_upgrade_check *checks;  /* running */
    unsigned running;
};

/* Starts the background checks when a template is configured: a listing at once, then every
 * min(interval, AGENT_UPGRADE_MAX_LIST_MS). No-op otherwise. */
void agent_upgrade_start(struct agent *a);
/* A listing of the node (the background's, or one made for GET /drover/v1/inventory): notes
 * its items, writes the cached latest digests into inv, refreshes the discovery's "installed"
 * and starts due checks. A list whose listing failed (engine down, backend.list failed) is
 * left as the cache had it. */
void agent_upgrade_observe(struct agent *a, struct node_api_inventory *inv, bool models_ok,
                           bool backends_ok);
/* Something was installed or upgraded: list again soon. */
void agent_upgrade_kick(struct agent *a);
/* Shutdown: no new checks or listings; running checks and a listing's backend.list are
 * killed; the timer is closed. */
void agent_upgrade_stop(struct agent *a);

#endif
