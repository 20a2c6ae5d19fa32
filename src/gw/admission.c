/* admission — the waiting requests, one FIFO per tenant (client key) and a ring of the tenants
 * that have waiters, with a shared deadline timer and a pass per loop turn after capacity
 * freed. A pass takes the tenants in turn (round robin from where the last pass left off),
 * waking the first waiter of each, each waiter at most once; those that still find nothing
 * keep their order at the head of their tenant's line. The number woken per pass is bounded
 * (the slots freed plus a few), so a long queue costs little per freed slot; the poll timer
 * gives every waiter a look now and then for capacity no event announces (a cooled node whose
 * time ran out). With one tenant (no keys) this is one FIFO. Tenants are few (the keys with
 * requests waiting), so they are found by a walk of the ring. */
#include "gw/admission.h"

#include "base/err.h"
#include "base/mem.h"

enum { ADMISSION_EXTRA_PER_PASS = 8 };

struct admission_tenant {
    uint64_t id;
    struct admission_waiter *head, *tail;       /* waiting, in arrival order */
    struct admission_waiter *rq_head, *rq_tail; /* requeued during the current pass */
    size_t n;                                   /* on both lists */
    struct admission_tenant *prev, *next;       /* the ring */
};

static void unlink_w(struct admission_waiter **head, struct admission_waiter **tail,
                     struct admission_waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        *head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        *tail = w->prev;
    w->prev = w->next = NULL;
}

static void append_w(struct admission_waiter **head, struct admission_waiter **tail,
                     struct admission_waiter *w)
{
    w->next = NULL;
    w->prev = *tail;
    if (*tail)
        (*tail)->next = w;
    else
        *head = w;
    *tail = w;
}

static bool on_list(const struct admission_waiter *head, const struct admission_waiter *w)
{
    while (head && head != w) head = head->next;
    return head != NULL;
}

/* ---- tenants ------------------------------------------------------------------------------ */

static struct admission_tenant *tenant_find(const struct admission *a, uint64_t id)
{
    struct admission_tenant *t = a->ring;
    if (!t) return NULL;
    do {
        if (t->id == id) return t;
        t = t->next;
    } while (t != a->ring);
    return NULL;
}

/* A new tenant joins the ring just before the one served next: it is served last in this
 * round, so a tenant cannot jump the line by arriving. */
static struct admission_tenant *tenant_add(struct admission *a, uint64_t id)
{
    struct admission_tenant *t = xcalloc(1, sizeof *t);
    t->id = id;
    if (!a->ring) {
        t->prev = t->next = t;
        a->ring = t;
    } else {
        t->next = a->ring;
        t->prev = a->ring->prev;
        a->ring->prev->next = t;
        a->ring->prev = t;
    }
    return t;
}

/* Frees t when it has no waiter left (never during a pass: the pass holds the ring). */
static void tenant_drop_if_empty(struct admission *a, struct admission_tenant *t)
{
    if (t->n || a->in_pass) return;
    if (t->next == t) {
        a->ring = NULL;
    } else {
        t->prev->next = t->next;
        t->next->prev = t->prev;
        if (a->ring == t) a->ring = t->next;
    }
    xfree(t);
}

static void drop_empty_tenants(struct admission *a)
{
    size_t k = admission_tenants(a);
    struct admission_tenant *t = a->ring;
    for (size_t i = 0; i < k; i++) {
        struct admission_tenant *next = t->next;
        tenant_drop_if_empty(a, t);
        t = next;
    }
}

/* ---- passes ------------------------------------------------------------------------------- */

static void arm(struct admission *a);

/* The next tenant (from the ring's turn) with a waiter not yet visited in this pass. */
static struct admission_tenant *next_turn(struct admission *a)
{
    struct admission_tenant *t = a->ring;
    if (!t) return NULL;
    do {
        if (t->head) return t;
        t = t->next;
    } while (t != a->ring);
    return NULL;
}

static void wake_pushed_out(struct admission *a)
{
    while (a->out_head) {
        struct admission_waiter *w = a->out_head;
        unlink_w(&a->out_head, &a->out_tail, w);
        w->queued = false;
        w->pushed_out = false;
        a->timeouts_total++;
        w->wake(w, true);
    }
}

static void pass(struct admission *a, bool all)
{
    uint64_t now = uv_now(a->loop);
    /* a turn started only to wake waiters pushed out looks at no one else */
    size_t budget = all ? a->n : a->kicks ? (size_t)a->kicks + ADMISSION_EXTRA_PER_PASS : 0;
    a->kicks = 0;
    a->in_pass = true;
    wake_pushed_out(a);
    size_t visited = 0;
    struct admission_tenant *t;
    while (visited < budget && (t = next_turn(a)) != NULL) {
        struct admission_waiter *w = t->head;
        unlink_w(&t->head, &t->tail, w);
        t->n--;
        a->n--;
        a->ring = t->next; /* the next waiter comes from the next tenant */
        w->queued = false;
        visited++;
        bool timed_out = now >= w->deadline_ms;
        if (timed_out) a->timeouts_total++;
        w->wake(w, timed_out); /* may requeue (onto t's requeued list), or free w */
    }
    a->in_pass = false;
    /* the requeued waiters go back in front of their tenant's line, in their order */
    size_t k = admission_tenants(a);
    t = a->ring;
    for (size_t i = 0; i < k; i++, t = t->next) {
        if (!t->rq_head) continue;
        t->rq_tail->next = t->head;
        if (t->head)
            t->head->prev = t->rq_tail;
        else
            t->tail = t->rq_tail;
        t->head = t->rq_head;
        t->rq_head = t->rq_tail = NULL;
    }
    drop_empty_tenants(a);
    arm(a);
}

static void on_idle(uv_idle_t *h)
{
    struct admission *a = h->data;
    uv_idle_stop(h);
    pass(a, false);
}

static void on_timer(uv_timer_t *t)
{
    struct admission *a = t->data;
    pass(a, true);
}

/* The timer: the earliest deadline, or the poll period, whichever is first. */
static void arm(struct admission *a)
{
    if (!a->ring) {
        uv_timer_stop(&a->timer);
        return;
    }
    uint64_t now = uv_now(a->loop);
    /* Arrival order is (nearly) deadline order within a tenant; a later deadline ahead is met
     * by the poll. */
    uint64_t next = UINT64_MAX;
    size_t k = admission_tenants(a);
    const struct admission_tenant *t = a->ring;
    for (size_t i = 0; i < k; i++, t = t->next)
        if (t->head && t->head->deadline_ms < next) next = t->head->deadline_ms;
    uint64_t in = next > now ? next - now : 0;
    if (in > a->poll_ms) in = a->poll_ms;
    uv_timer_start(&a->timer, on_timer, in, 0);
}

void admission_init(struct admission *a, uv_loop_t *loop, size_t max, uint64_t poll_ms)
{
    *a = (struct admission){.loop = loop, .max = max, .poll_ms = poll_ms ? poll_ms : 100};
    uv_timer_init(loop, &a->timer);
    a->timer.data = a;
    uv_idle_init(loop, &a->idle);
    a->idle.data = a;
    a->started = true;
}

void admission_close(struct admission *a)
{
    if (!a->started) return;
    uv_timer_stop(&a->timer);
    uv_idle_stop(&a->idle);
    uv_close((uv_handle_t *)&a->timer, NULL);
    uv_close((uv_handle_t *)&a->idle, NULL);
    a->started = false;
}

/* The queue is full: when w's tenant holds fewer places than the largest tenant (by two, so
 * shares settle instead of swapping back and forth), the newest waiter of the largest gives
 * its place up. Returns whether a place was freed. */
static bool push_out_for(struct admission *a, const struct admission_tenant *mine)
{
    size_t have = mine ? mine->n : 0;
    struct admission_tenant *big = NULL, *t = a->ring;
    size_t k = admission_tenants(a);
    for (size_t i = 0; i < k; i++, t = t->next)
        if (!big || t->n > big->n) big = t;
    if (!big || big == mine || have + 1 >= big->n) return false;
    struct admission_waiter *v = big->tail ? big->tail : big->rq_tail;
    if (v == big->tail)
        unlink_w(&big->head, &big->tail, v);
    else
        unlink_w(&big->rq_head, &big->rq_tail, v);
    big->n--;
    a->n--;
    v->pushed_out = true; /* still queued: it may leave before its wake */
    append_w(&a->out_head, &a->out_tail, v);
    a->pushed_out_total++;
    if (!uv_is_active((uv_handle_t *)&a->idle)) uv_idle_start(&a->idle, on_idle);
    return true;
}

int admission_enter(struct admission *a, struct admission_waiter *w, uint64_t now_ms,
                    uint64_t deadline_ms)
{
    struct admission_tenant *t = tenant_find(a, w->tenant);
    if (a->n >= a->max && !push_out_for(a, t)) {
        a->rejected_total++;
        return GW_E_LIMIT;
    }
    if (!t) t = tenant_add(a, w->tenant);
    w->deadline_ms = deadline_ms;
    w->enqueued_ms = now_ms;
    w->queued = true;
    w->pushed_out = false;
    w->t = t;
    append_w(&t->head, &t->tail, w);
    t->n++;
    a->n++;
    a->entered_total++;
    if (!a->in_pass) arm(a);
    return 0;
}

void admission_requeue(struct admission *a, struct admission_waiter *w)
{
    struct admission_tenant *t = w->t;
    w->queued = true;
    t->n++;
    a->n++;
    if (a->in_pass) {
        append_w(&t->rq_head, &t->rq_tail, w);
        return;
    }
    append_w(&t->head, &t->tail, w);
    arm(a);
}

void admission_leave(struct admission *a, struct admission_waiter *w)
{
    if (!w->queued) return;
    w->queued = false;
    a->left_total++;
    if (w->pushed_out) {
        w->pushed_out = false;
        unlink_w(&a->out_head, &a->out_tail, w);
        return;
    }
    struct admission_tenant *t = w->t;
    /* during a pass a requeued waiter sits on its tenant's requeued list */
    if (on_list(t->rq_head, w))
        unlink_w(&t->rq_head, &t->rq_tail, w);
    else
        unlink_w(&t->head, &t->tail, w);
    t->n--;
    a->n--;
    tenant_drop_if_empty(a, t);
    if (!a->in_pass) arm(a);
}

void admission_kick(struct admission *a)
{
    if (!a->ring || !a->started) return;
    a->kicks++;
    if (!uv_is_active((uv_handle_t *)&a->idle)) uv_idle_start(&a->idle, on_idle);
}

const struct admission_waiter *admission_first(const struct admission *a, uint64_t tenant)
{
    const struct admission_tenant *t = tenant_find(a, tenant);
    return t ? t->head : NULL;
}

size_t admission_tenants(const struct admission *a)
{
    size_t k = 0;
    const struct admission_tenant *t = a->ring;
    if (!t) return 0;
    do {
        k++;
        t = t->next;
    } while (t != a->ring);
    return k;
}

void admission_served(struct admission *a, const struct admission_waiter *w, uint64_t now_ms)
{
    a->served_total++;
    a->wait_ms_sum += now_ms - w->enqueued_ms;
}
