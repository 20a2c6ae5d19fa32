/* agent_upgrade — the upgrade check (agent_upgrade.h, docs/agent.md "Upgrade checks").
 *
 * Invariant: a latest digest is reported only while it is the answer of a check that
 * succeeded less than twice the interval ago; a failed check forgets it at once. Checks never
 * run on a request's path: GET /drover/v1/inventory only reads the cache (and notes names
 * that are new, which the background then checks), the background listing (every
 * min(interval, 60 s)) and each finished check start the checks that are due, at most
 * upgrade_check.concurrency at once. Each check is an argv without a shell (agent_proc), in
 * its own process group, killed after upgrade_check.timeout.
 *
 * The loop thread only. */
#include "agent/agent_upgrade.h"

#include <stdio.h>
#include <string.h>

#include "agent/agent.h"
#include "agent/agent_proc.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/json.h"
#include "base/log.h"
#include "base/mem.h"

/* ---- templates --------------------------------------------------------------------------- */

void agent_argv_free(struct agent_argv *av)
{
    for (size_t i = 0; i < av->n; i++) xfree(av->v[i]);
    memset(av, 0, sizeof *av);
}

static bool is_ident(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_';
}

static int refuse(char *why, size_t cap, const char *msg)
{
    if (why && cap) snprintf(why, cap, "%s", msg);
    return GW_E_INVALID;
}

static int name_check(const char *name, char *why, size_t cap)
{
    size_t len = strlen(name);
    if (!len || len >= NODE_API_MAX_ID)
        return refuse(why, cap, "the name is empty or longer than 255 bytes");
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)name[i] < 0x20) return refuse(why, cap, "the name holds a control byte");
    if (name[0] == '-')
        return refuse(why, cap, "the name starts with '-' (the check would read it as an option)");
    return 0;
}

/* Ends the word in w (which starts empty again); counts its bytes against the cap. */
static int end_word(struct buf *w, struct agent_argv *out, size_t *total, char *why, size_t cap)
{
    if (out->n >= AGENT_UPGRADE_MAX_ARGS)
        return refuse(why, cap, "the template has more than 64 words");
    *total += w->len + 1;
    if (*total > AGENT_UPGRADE_MAX_CMD_BYTES)
        return refuse(why, cap, "the command is longer than 64 KiB");
    out->v[out->n++] = buf_take(w, NULL);
    buf_init(w, AGENT_UPGRADE_MAX_CMD_BYTES);
    return 0;
}

int agent_upgrade_expand(const char *tmpl, const char *name, struct agent_argv *out, char *why,
                         size_t why_cap)
{
    memset(out, 0, sizeof *out);
    int rc = name_check(name, why, why_cap);
    if (rc) return rc;
    struct buf w;
    buf_init(&w, AGENT_UPGRADE_MAX_CMD_BYTES);
    size_t total = 0;
    bool in_word = false;
    char quote = 0;
    for (const char *p = tmpl; !rc; p++) {
        char ch = *p;
        if (!ch) {
            if (quote)
                rc = refuse(why, why_cap, "the template has an open quote");
            else if (in_word)
                rc = end_word(&w, out, &total, why, why_cap);
            break;
        }
        if (quote == '\'') {
            if (ch == '\'') {
                quote = 0;
                continue;
            }
        } else if (quote == '"') {
            if (ch == '"') {
                quote = 0;
                continue;
            }
            if (ch == '\\' && (p[1] == '"' || p[1] == '\\')) ch = *++p;
        } else {
            if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r') {
                if (in_word) rc = end_word(&w, out, &total, why, why_cap);
                in_word = false;
                continue;
            }
            in_word = true;
            if (ch == '\'' || ch == '"') {
                quote = ch;
                continue;
            }
            if (ch == '\\') {
                if (!p[1]) {
                    rc = refuse(why, why_cap, "the template ends with a backslash");
                    break;
                }
                ch = *++p;
                if (buf_append(&w, &ch, 1)) rc = refuse(why, why_cap, "the command is too long");
                continue;
            }
        }
        if (ch == '{') {
            size_t k = 1;
            while (is_ident(p[k])) k++;
            if (k > 1 && p[k] == '}') {
                if (k - 1 == 4 && memcmp(p + 1, "name", 4) == 0) {
                    if (buf_append_cstr(&w, name))
                        rc = refuse(why, why_cap, "the command is too long");
                    p += k;
                    continue;
                }
                if (why && why_cap)
                    snprintf(why, why_cap, "unknown placeholder {%.*s} (only {name})",
                             (int)(k - 1 > 40 ? 40 : k - 1), p + 1);
                rc = GW_E_INVALID;
                break;
            }
        }
        if (buf_append(&w, &ch, 1)) rc = refuse(why, why_cap, "the command is too long");
    }
    buf_free(&w);
    if (!rc && out->n == 0) rc = refuse(why, why_cap, "the template has no command");
    if (!rc && !out->v[0][0]) rc = refuse(why, why_cap, "the template's program is empty");
    if (rc) agent_argv_free(out);
    return rc;
}

int agent_upgrade_template_check(const char *tmpl, char *why, size_t why_cap)
{
    struct agent_argv av;
    int rc = agent_upgrade_expand(tmpl, "sample", &av, why, why_cap);
    if (!rc) agent_argv_free(&av);
    return rc;
}

int agent_upgrade_digest_parse(struct strv out, bool truncated, char digest[NODE_API_MAX_DIGEST],
                               char *why, size_t why_cap)
{
    digest[0] = '\0';
    if (truncated || out.len > AGENT_UPGRADE_MAX_OUT_BYTES) {
        if (why && why_cap)
            snprintf(why, why_cap, "printed more than %d bytes", AGENT_UPGRADE_MAX_OUT_BYTES);
        return GW_E_INVALID;
    }
    const char *p = out.p ? out.p : "";
    size_t b = 0, e = out.len;
    while (b < e && (p[b] == ' ' || p[b] == '\t' || p[b] == '\r' || p[b] == '\n')) b++;
    while (e > b && (p[e - 1] == ' ' || p[e - 1] == '\t' || p[e - 1] == '\r' || p[e - 1] == '\n'))
        e--;
    struct strv v = {p + b, e - b};
    if (!v.len) return refuse(why, why_cap, "printed no digest");
    if (memchr(v.p, '\n', v.len)) return refuse(why, why_cap, "printed more than one line");
    if (v.len >= NODE_API_MAX_DIGEST) {
        if (why && why_cap)
            snprintf(why, why_cap, "printed %zu bytes: a digest is at most %d", v.len,
                     NODE_API_MAX_DIGEST - 1);
        return GW_E_INVALID;
    }
    if (!node_api_digest_is_valid(v)) return refuse(why, why_cap, "printed a control byte");
    memcpy(digest, v.p, v.len);
    digest[v.len] = '\0';
    return 0;
}

/* ---- the cache ----------------------------------------------------------------------------- */

void agent_upgrade_cache_init(struct agent_upgrade_cache *c, uint64_t interval_ms)
{
    memset(c, 0, sizeof *c);
    c->interval_ms = interval_ms;
}

void agent_upgrade_cache_free(struct agent_upgrade_cache *c)
{
    xfree(c->v);
    memset(c, 0, sizeof *c);
}

/* Models first, then by name. */
static int key_cmp(bool am, const char *an, bool bm, const char *bn)
{
    if (am != bm) return am ? -1 : 1;
    return strcmp(an, bn);
}

/* The index of (kind, name), or where it would go. */
static size_t lower_bound(const struct agent_upgrade_cache *c, bool is_model, const char *name,
                          bool *found)
{
    size_t lo = 0, hi = c->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (key_cmp(c->v[mid].is_model, c->v[mid].name, is_model, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < c->n && key_cmp(c->v[lo].is_model, c->v[lo].name, is_model, name) == 0;
    return lo;
}

void agent_upgrade_cache_unlist(struct agent_upgrade_cache *c, bool is_model)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->v[i].is_model == is_model) c->v[i].listed = false;
}

struct agent_upgrade_entry *agent_upgrade_cache_find(struct agent_upgrade_cache *c, bool is_model,
                                                     const char *name)
{
    bool found;
    size_t i = lower_bound(c, is_model, name, &found);
    return found ? &c->v[i] : NULL;
}

struct agent_upgrade_entry *agent_upgrade_cache_note(struct agent_upgrade_cache *c, bool is_model,
                                                     const char *name, const char *digest,
                                                     uint64_t now_ms)
{
    if (!name[0] || strlen(name) >= NODE_API_MAX_ID) return NULL;
    bool found;
    size_t i = lower_bound(c, is_model, name, &found);
    if (!found) {
        if (c->n >= AGENT_UPGRADE_MAX_ENTRIES) return NULL;
        if (c->n == c->cap) {
            c->cap = c->cap ? c->cap * 2 : 16;
            c->v = xrealloc(c->v, c->cap * sizeof *c->v);
        }
        memmove(&c->v[i + 1], &c->v[i], (c->n - i) * sizeof *c->v);
        c->n++;
        struct agent_upgrade_entry *e = &c->v[i];
        memset(e, 0, sizeof *e);
        e->is_model = is_model;
        snprintf(e->name, sizeof e->name, "%s", name);
        e->checked_wall_ms = -1;
        e->due_ms = now_ms; /* a new item is checked at once */
    }
    struct agent_upgrade_entry *e = &c->v[i];
    e->listed = true;
    e->seen_ms = now_ms;
    snprintf(e->digest, sizeof e->digest, "%s", digest ? digest : "");
    return e;
}

struct agent_upgrade_entry *agent_upgrade_cache_take_due(struct agent_upgrade_cache *c,
                                                         uint64_t now_ms)
{
    struct agent_upgrade_entry *best = NULL;
    for (size_t i = 0; i < c->n; i++) {
        struct agent_upgrade_entry *e = &c->v[i];
        if (!e->listed || e->running || e->due_ms > now_ms) continue;
        if (!best || e->due_ms < best->due_ms) best = e;
    }
    if (best) best->running = true;
    return best;
}

enum agent_upgrade_log agent_upgrade_cache_done(struct agent_upgrade_cache *c, bool is_model,
                                                const char *name, const char *latest,
                                                uint64_t now_ms, int64_t wall_ms,
                                                unsigned *suppressed)
{
    *suppressed = 0;
    struct agent_upgrade_entry *e = agent_upgrade_cache_find(c, is_model, name);
    if (!e) return AGENT_UPGRADE_LOG_NONE;
    e->running = false;
    if (latest) {
        bool was_failing = e->failures > 0;
        snprintf(e->latest, sizeof e->latest, "%s", latest);
        e->checked_ms = now_ms;
        e->checked_wall_ms = wall_ms;
        e->due_ms = now_ms + c->interval_ms;
        e->failures = 0;
        *suppressed = e->suppressed;
        e->suppressed = 0;
        return was_failing ? AGENT_UPGRADE_LOG_OK : AGENT_UPGRADE_LOG_NONE;
    }
    /* never a stale answer in place of a failed one */
    e->latest[0] = '\0';
    e->checked_wall_ms = -1;
    e->failures++;
    uint64_t backoff = AGENT_UPGRADE_RETRY_MS;
    for (unsigned k = 1; k < e->failures && backoff < c->interval_ms; k++) backoff *= 2;
    if (backoff > c->interval_ms) backoff = c->interval_ms;
    e->due_ms = now_ms + backoff;
    if (e->failures == 1 || now_ms - e->logged_ms >= AGENT_UPGRADE_LOG_EVERY_MS) {
        *suppressed = e->suppressed;
        e->suppressed = 0;
        e->logged_ms = now_ms;
        return AGENT_UPGRADE_LOG_FAILED;
    }
    e->suppressed++;
    return AGENT_UPGRADE_LOG_NONE;
}

const char *agent_upgrade_cache_latest(const struct agent_upgrade_cache *c,
                                       const struct agent_upgrade_entry *e, uint64_t now_ms)
{
    if (!e || !e->latest[0] || now_ms - e->checked_ms >= 2 * c->interval_ms) return NULL;
    return e->latest;
}

void agent_upgrade_cache_prune(struct agent_upgrade_cache *c, uint64_t now_ms)
{
    size_t k = 0;
    for (size_t i = 0; i < c->n; i++) {
        const struct agent_upgrade_entry *e = &c->v[i];
        if (!e->listed && !e->running && now_ms - e->seen_ms >= 2 * c->interval_ms) continue;
        if (k != i) c->v[k] = c->v[i];
        k++;
    }
    c->n = k;
}

size_t agent_upgrade_backend_quota(size_t n_models, size_t n_backends, size_t max)
{
    size_t room = max > n_models ? max - n_models : 0;
    if (room < max / 2) room = max / 2;
    return n_backends < room ? n_backends : room;
}

bool agent_upgrade_log_allow(struct agent_upgrade_loglimit *l, uint64_t now_ms, unsigned *dropped)
{
    *dropped = 0;
    if (now_ms - l->window_ms >= 60 * 1000) {
        l->window_ms = now_ms;
        l->in_window = 0;
    }
    if (l->in_window >= AGENT_UPGRADE_LOG_BURST) {
        l->dropped++;
        return false;
    }
    l->in_window++;
    *dropped = l->dropped;
    l->dropped = 0;
    return true;
}

/* ---- the runtime (loop thread) ------------------------------------------------------------- */

struct agent_upgrade_check {
    struct agent *a;
    bool is_model;
    char name[NODE_API_MAX_ID];
    char program[64]; /* argv[0]'s last component, for the log */
    struct agent_proc *proc;
    struct agent_upgrade_check *next;
};

static const char *kind_name(bool is_model)
{
    return is_model ? "model" : "backend";
}

static const char *template_of(const struct agent *a, bool is_model)
{
    return is_model ? a->cfg.upgrade_check_models : a->cfg.upgrade_check_backends;
}

static uint64_t now_of(const struct agent *a)
{
    return uv_now(a->loop);
}

/* Does the config's discovery override say "installed" itself? Then it is the operator's. */
static bool override_has_installed(const struct agent *a)
{
    if (!a->cfg.discovery_json) return false;
    struct json_object *o = json_parse_strict(a->cfg.discovery_json, strlen(a->cfg.discovery_json),
                                              NODE_API_MAX_DEPTH, NULL);
    bool has = o && json_object_object_get_ex(o, "installed", NULL);
    if (o) json_object_put(o);
    return has;
}

/* The discovery's "installed" (sent with every join; `drover ops upgrades` reads it): the
 * listed items of the checked kinds with their digests and cached latest digests, at most
 * NODE_API_MAX_INSTALLED, each kind keeping at least half when it has that many. */
static void refresh_installed(struct agent *a, uint64_t now)
{
    struct agent_upgrade *u = &a->upg;
    if (!u->own_installed) return;
    struct node_api_discovery *d = &a->disc;
    size_t nm = 0, nb = 0;
    for (size_t i = 0; i < u->cache.n; i++) {
        if (!u->cache.v[i].listed) continue;
        if (u->cache.v[i].is_model)
            nm++;
        else
            nb++;
    }
    size_t quota_b = agent_upgrade_backend_quota(nm, nb, NODE_API_MAX_INSTALLED);
    size_t quota_m = NODE_API_MAX_INSTALLED - quota_b;
    d->n_installed = 0;
    d->installed_truncated = nm > quota_m || nb > quota_b;
    size_t km = 0, kb = 0;
    for (size_t i = 0; i < u->cache.n; i++) {
        const struct agent_upgrade_entry *e = &u->cache.v[i];
        if (!e->listed) continue;
        if (e->is_model ? km++ >= quota_m : kb++ >= quota_b) continue;
        struct node_api_installed *it =
            node_api_discovery_add_installed(d, e->is_model, e->name, e->digest);
        if (!it) break;
        const char *latest = agent_upgrade_cache_latest(&u->cache, e, now);
        snprintf(it->latest_digest, sizeof it->latest_digest, "%s", latest ? latest : "");
        it->checked_ms = latest ? e->checked_wall_ms : -1;
    }
}

/* The last non-empty line of a check's stderr, for the log. */
static struct strv last_line(struct strv s)
{
    size_t e = s.len;
    while (e && (s.p[e - 1] == '\n' || s.p[e - 1] == '\r' || s.p[e - 1] == ' ')) e--;
    size_t b = e;
    while (b && s.p[b - 1] != '\n') b--;
    return (struct strv){s.p ? s.p + b : "", e - b};
}

/* Records the end of a check in the cache and logs it as the limits allow. latest NULL: it
 * failed, for why. */
static void check_ended(struct agent *a, bool is_model, const char *name, const char *latest,
                        const char *why)
{
    struct agent_upgrade *u = &a->upg;
    uint64_t now = now_of(a);
    char qname[300], qwhy[400];
    log_quote(qname, sizeof qname, name, strlen(name));
    struct agent_upgrade_entry *e = agent_upgrade_cache_find(&u->cache, is_model, name);
    char before[NODE_API_MAX_DIGEST] = "";
    if (e) snprintf(before, sizeof before, "%s", e->latest);
    unsigned suppressed = 0, dropped = 0;
    enum agent_upgrade_log lg = agent_upgrade_cache_done(&u->cache, is_model, name, latest, now,
                                                         (int64_t)clock_wall_ms(), &suppressed);
    e = agent_upgrade_cache_find(&u->cache, is_model, name);
    if (lg == AGENT_UPGRADE_LOG_FAILED) {
        if (agent_upgrade_log_allow(&u->loglimit, now, &dropped))
            LOGW("upgrade_check_failed",
                 "kind=%s name=%s reason=%s failures=%u suppressed=%u others_suppressed=%u "
                 "retry_ms=%llu note=\"latest_digest unknown until a check succeeds\"",
                 kind_name(is_model), qname, log_quote(qwhy, sizeof qwhy, why, strlen(why)),
                 e ? e->failures : 0, suppressed, dropped,
                 (unsigned long long)(e && e->due_ms > now ? e->due_ms - now : 0));
        return;
    }
    if (!latest) return;
    char qlatest[200], qdigest[200];
    log_quote(qlatest, sizeof qlatest, latest, strlen(latest));
    if (lg == AGENT_UPGRADE_LOG_OK)
        LOGI("upgrade_check_ok", "kind=%s name=%s latest=%s suppressed=%u", kind_name(is_model),
             qname, qlatest, suppressed);
    if (e && e->digest[0] && strcmp(e->digest, latest) != 0 && strcmp(before, latest) != 0)
        LOGI("upgrade_available", "kind=%s name=%s digest=%s latest=%s", kind_name(is_model), qname,
             log_quote(qdigest, sizeof qdigest, e->digest, strlen(e->digest)), qlatest);
    else
        LOGD("upgrade_check", "kind=%s name=%s latest=%s", kind_name(is_model), qname, qlatest);
}

static void pump(struct agent *a);

static void on_check_done(const struct agent_proc_result *r, void *ctx)
{
    struct agent_upgrade_check *chk = ctx;
    struct agent *a = chk->a;
    struct agent_upgrade *u = &a->upg;
    for (struct agent_upgrade_check **pp = &u->checks; *pp; pp = &(*pp)->next)
        if (*pp == chk) {
            *pp = chk->next;
            break;
        }
    u->running--;
    if (u->stopping) {
        xfree(chk);
        return;
    }
    char why[400] = "", digest[NODE_API_MAX_DIGEST] = "";
    struct strv err = last_line(r->err);
    if (r->timed_out)
        snprintf(why, sizeof why, "timed out after %llu ms",
                 (unsigned long long)a->cfg.upgrade_check_timeout_ms);
    else if (r->killed)
        snprintf(why, sizeof why, "killed");
    else if (r->term_signal)
        snprintf(why, sizeof why, "%s killed by signal %d", chk->program, r->term_signal);
    else if (r->exit_status != 0)
        snprintf(why, sizeof why, "%s exited %lld%s%.*s", chk->program, (long long)r->exit_status,
                 err.len ? ": " : "", (int)(err.len > 200 ? 200 : err.len), err.p);
    else if (agent_upgrade_digest_parse(r->out, r->out_truncated, digest, why, sizeof why) == 0)
        why[0] = '\0';
    check_ended(a, chk->is_model, chk->name, why[0] ? NULL : digest, why);
    xfree(chk);
    refresh_installed(a, now_of(a));
    pump(a);
}

/* Starts the check of e (marked running by take_due). */
static void start_check(struct agent *a, const struct agent_upgrade_entry *e)
{
    struct agent_upgrade *u = &a->upg;
    bool is_model = e->is_model;
    char name[NODE_API_MAX_ID];
    snprintf(name, sizeof name, "%s", e->name);
    struct agent_argv av;
    char why[300];
    if (agent_upgrade_expand(template_of(a, is_model), name, &av, why, sizeof why)) {
        check_ended(a, is_model, name, NULL, why);
        return;
    }
    struct agent_upgrade_check *chk = xcalloc(1, sizeof *chk);
    chk->a = a;
    chk->is_model = is_model;
    snprintf(chk->name, sizeof chk->name, "%s", name);
    const char *slash = strrchr(av.v[0], '/');
    snprintf(chk->program, sizeof chk->program, "%s", slash && slash[1] ? slash + 1 : av.v[0]);
    struct agent_proc_spec spec = {
        .argv = (const char *const *)av.v,
        .timeout_ms = a->cfg.upgrade_check_timeout_ms,
        .max_out_bytes = AGENT_UPGRADE_MAX_OUT_BYTES,
        .max_err_bytes = AGENT_UPGRADE_MAX_ERR_BYTES,
    };
    int rc = agent_proc_start(a->loop, &spec, on_check_done, chk, &chk->proc);
    agent_argv_free(&av);
    if (rc) {
        snprintf(why, sizeof why, "cannot run %s: %s", chk->program, uv_strerror(rc));
        xfree(chk);
        check_ended(a, is_model, name, NULL, why);
        return;
    }
    chk->next = u->checks;
    u->checks = chk;
    u->running++;
}

/* Starts the due checks, as many as the bound allows. */
static void pump(struct agent *a)
{
    struct agent_upgrade *u = &a->upg;
    while (u->enabled && !u->stopping && u->running < a->cfg.upgrade_check_concurrency) {
        struct agent_upgrade_entry *e = agent_upgrade_cache_take_due(&u->cache, now_of(a));
        if (!e) break;
        start_check(a, e);
    }
}

void agent_upgrade_observe(struct agent *a, struct node_api_inventory *inv, bool models_ok,
                           bool backends_ok)
{
    struct agent_upgrade *u = &a->upg;
    if (!u->enabled || u->stopping) return;
    uint64_t now = now_of(a);
    size_t full = 0;
    for (int k = 0; k < 2; k++) {
        bool is_model = k == 0;
        if (!template_of(a, is_model)) continue;
        struct node_api_inv_items *items = is_model ? &inv->models : &inv->backends;
        if (is_model ? models_ok : backends_ok) {
            agent_upgrade_cache_unlist(&u->cache, is_model);
            for (size_t i = 0; i < items->n; i++)
                if (!agent_upgrade_cache_note(&u->cache, is_model, items->v[i].name,
                                              items->v[i].digest, now))
                    full++;
        }
        for (size_t i = 0; i < items->n; i++) {
            const char *latest = agent_upgrade_cache_latest(
                &u->cache, agent_upgrade_cache_find(&u->cache, is_model, items->v[i].name), now);
            if (latest)
                snprintf(items->v[i].latest_digest, sizeof items->v[i].latest_digest, "%s", latest);
        }
    }
    unsigned dropped;
    if (full && agent_upgrade_log_allow(&u->loglimit, now, &dropped))
        LOGW("upgrade_check_skipped", "items=%zu reason=\"more than %d items to check\"", full,
             AGENT_UPGRADE_MAX_ENTRIES);
    refresh_installed(a, now);
    pump(a);
}

static void on_listed(struct agent *a, struct node_api_inventory *inv, bool models_ok,
                      bool backends_ok, void *ctx)
{
    (void)ctx;
    if (a->upg.stopping) return;
    agent_upgrade_observe(a, inv, models_ok, backends_ok);
    agent_upgrade_cache_prune(&a->upg.cache, now_of(a));
}

static void on_tick(uv_timer_t *t)
{
    struct agent *a = t->data;
    struct agent_upgrade *u = &a->upg;
    if (u->stopping || u->listing) return;
    agent_inventory_collect(a, on_listed, NULL, &u->listing);
}

static uint64_t list_every_ms(const struct agent *a)
{
    uint64_t iv = a->cfg.upgrade_check_interval_ms;
    return iv < AGENT_UPGRADE_MAX_LIST_MS ? iv : AGENT_UPGRADE_MAX_LIST_MS;
}

void agent_upgrade_start(struct agent *a)
{
    struct agent_upgrade *u = &a->upg;
    if (!a->cfg.upgrade_check_models && !a->cfg.upgrade_check_backends) return;
    u->enabled = true;
    agent_upgrade_cache_init(&u->cache, a->cfg.upgrade_check_interval_ms);
    u->own_installed = !override_has_installed(a);
    uv_timer_init(a->loop, &u->timer);
    u->timer.data = a;
    u->timer_open = true;
    uv_timer_start(&u->timer, on_tick, 0, list_every_ms(a));
    LOGI("upgrade_check_start",
         "models=%s backends=%s interval_ms=%llu timeout_ms=%llu concurrency=%llu "
         "reports_installed=%d",
         a->cfg.upgrade_check_models ? "on" : "off", a->cfg.upgrade_check_backends ? "on" : "off",
         (unsigned long long)a->cfg.upgrade_check_interval_ms,
         (unsigned long long)a->cfg.upgrade_check_timeout_ms,
         (unsigned long long)a->cfg.upgrade_check_concurrency, u->own_installed);
}

void agent_upgrade_kick(struct agent *a)
{
    struct agent_upgrade *u = &a->upg;
    if (!u->enabled || u->stopping) return;
    uv_timer_start(&u->timer, on_tick, 0, list_every_ms(a));
}

static void on_timer_closed(uv_handle_t *h)
{
    struct agent *a = h->data;
    agent_upgrade_cache_free(&a->upg.cache);
}

void agent_upgrade_stop(struct agent *a)
{
    struct agent_upgrade *u = &a->upg;
    if (!u->enabled || u->stopping) return;
    u->stopping = true;
    for (struct agent_upgrade_check *c = u->checks; c; c = c->next) agent_proc_kill(c->proc);
    if (u->listing) agent_inventory_kill(u->listing);
    if (u->timer_open) {
        u->timer_open = false;
        uv_timer_stop(&u->timer);
        uv_close((uv_handle_t *)&u->timer, on_timer_closed);
    }
}
