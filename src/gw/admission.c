/* admission — one FIFO of waiting requests with a shared deadline timer and a pass per loop
 * turn after capacity freed. A pass wakes waiters from the head, each at most once; those
 * that still find nothing keep their order at the head of the line. The number woken per pass
 * is bounded (the slots freed plus a few), so a long queue costs little per freed slot; the
 * poll timer gives every waiter a look now and then for capacity no event announces (a
 * cooled node whose time ran out). */
#include "gw/admission.h"

#include "base/err.h"

enum { ADMISSION_EXTRA_PER_PASS = 8 };

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

static void arm(struct admission *a);

static void pass(struct admission *a, bool all)
{
    uint64_t now = uv_now(a->loop);
    size_t budget = all ? a->n : (size_t)a->kicks + ADMISSION_EXTRA_PER_PASS;
    a->kicks = 0;
    a->in_pass = true;
    size_t visited = 0;
    /* the waiters visited this pass, in order, end up before the ones not visited */
    while (a->head && visited < budget) {
        struct admission_waiter *w = a->head;
        unlink_w(&a->head, &a->tail, w);
        a->n--;
        w->queued = false;
        visited++;
        bool timed_out = now >= w->deadline_ms;
        if (timed_out) a->timeouts_total++;
        w->wake(w, timed_out); /* may requeue (onto the requeued list), or free w */
    }
    a->in_pass = false;
    if (a->requeued_head) {
        /* put the requeued waiters back in front, in their order */
        struct admission_waiter *rt = a->requeued_tail;
        rt->next = a->head;
        if (a->head)
            a->head->prev = rt;
        else
            a->tail = rt;
        a->head = a->requeued_head;
        a->requeued_head = a->requeued_tail = NULL;
    }
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
    if (!a->head) {
        uv_timer_stop(&a->timer);
        return;
    }
    uint64_t now = uv_now(a->loop);
    /* Arrival order is (nearly) deadline order; a later deadline ahead is met by the poll. */
    uint64_t next = a->head->deadline_ms;
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

int admission_enter(struct admission *a, struct admission_waiter *w, uint64_t now_ms,
                    uint64_t deadline_ms)
{
    if (a->n >= a->max) {
        a->rejected_total++;
        return GW_E_LIMIT;
    }
    w->deadline_ms = deadline_ms;
    w->enqueued_ms = now_ms;
    w->queued = true;
    append_w(&a->head, &a->tail, w);
    a->n++;
    a->entered_total++;
    if (!a->in_pass) arm(a);
    return 0;
}

void admission_requeue(struct admission *a, struct admission_waiter *w)
{
    w->queued = true;
    a->n++;
    if (a->in_pass) {
        append_w(&a->requeued_head, &a->requeued_tail, w);
        return;
    }
    append_w(&a->head, &a->tail, w);
    arm(a);
}

void admission_leave(struct admission *a, struct admission_waiter *w)
{
    if (!w->queued) return;
    /* during a pass a requeued waiter sits on the requeued list */
    struct admission_waiter *p = a->requeued_head;
    while (p && p != w) p = p->next;
    if (p)
        unlink_w(&a->requeued_head, &a->requeued_tail, w);
    else
        unlink_w(&a->head, &a->tail, w);
    w->queued = false;
    a->n--;
    a->left_total++;
    if (!a->in_pass) arm(a);
}

void admission_kick(struct admission *a)
{
    if (!a->head || !a->started) return;
    a->kicks++;
    if (!uv_is_active((uv_handle_t *)&a->idle)) uv_idle_start(&a->idle, on_idle);
}

void admission_served(struct admission *a, const struct admission_waiter *w, uint64_t now_ms)
{
    a->served_total++;
    a->wait_ms_sum += now_ms - w->enqueued_ms;
}
