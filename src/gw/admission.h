/* admission — the bounded wait of a request when every node that could serve it is busy
 * (DESIGN §5 `capacity`, docs/gateway.md "Admission queue"): instead of an instant 503 the
 * request waits in a queue bounded in length and in time. The queue is fair across tenants
 * (client keys): each tenant's waiters are one FIFO, and the tenants take turns (round robin),
 * so a key that floods the queue delays only itself. Capacity that frees (an attempt ended, a
 * cooled node's time ran out) wakes waiters on the next loop turn; each retries the router
 * and, when still nothing is free, keeps its place. When the queue is full, a newcomer whose
 * tenant holds fewer places than the largest tenant takes the newest place of that tenant
 * (which is answered as if its wait ran out): a full queue never locks other keys out. A
 * waiter whose time runs out, or whose client leaves, leaves the queue at once. The loop
 * thread only. */
#ifndef DROVER_GW_ADMISSION_H
#define DROVER_GW_ADMISSION_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct admission_waiter;
/* Called once per wake; timed_out: its deadline passed (it has left the queue). Otherwise it
 * has left the queue too and must call admission_requeue to keep waiting. */
typedef void admission_wake_fn(struct admission_waiter *w, bool timed_out);

struct admission_tenant;

struct admission_waiter {
    struct admission_waiter *prev, *next; /* owned by the queue while queued */
    admission_wake_fn *wake;
    uint64_t deadline_ms;
    uint64_t enqueued_ms;
    uint64_t tenant;            /* set before admission_enter: whose request (0: one shared line) */
    struct admission_tenant *t; /* owned by the queue */
    bool queued;
    bool pushed_out; /* gave its place to another tenant's newcomer; woken timed out */
};

struct admission {
    uv_loop_t *loop;
    struct admission_tenant *ring; /* tenants with waiters; the next one to serve */
    size_t n, max;                 /* waiters (not counting those pushed out), the bound */
    struct admission_waiter *out_head, *out_tail; /* pushed out, woken on the next turn */
    uv_timer_t timer; /* the earliest deadline, or the poll for cooled nodes */
    uv_idle_t idle;   /* a pass on the next loop turn after capacity freed */
    unsigned kicks;   /* capacity freed since the last pass */
    bool in_pass, started;
    uint64_t poll_ms;
    uint64_t entered_total, timeouts_total, rejected_total, left_total, served_total;
    uint64_t pushed_out_total; /* places given to another tenant's newcomer */
    uint64_t wait_ms_sum;      /* of waiters that were served */
};

void admission_init(struct admission *a, uv_loop_t *loop, size_t max, uint64_t poll_ms);
/* Closes the handles; every waiter must have left. */
void admission_close(struct admission *a);
/* Queues w (w->tenant set) until deadline_ms; GW_E_LIMIT when the queue is full and w's
 * tenant already holds as many places as any other (w untouched). */
int admission_enter(struct admission *a, struct admission_waiter *w, uint64_t now_ms,
                    uint64_t deadline_ms) __attribute__((warn_unused_result));
/* From inside its wake callback: still nothing free, keep the place in the line. */
void admission_requeue(struct admission *a, struct admission_waiter *w);
/* The waiter gives up (its client left); no callback follows. */
void admission_leave(struct admission *a, struct admission_waiter *w);
/* Capacity freed somewhere: wake waiters on the next loop turn. */
void admission_kick(struct admission *a);
/* The first waiter of tenant's line (NULL: none); for tests and the admin view. */
const struct admission_waiter *admission_first(const struct admission *a, uint64_t tenant);
/* How many tenants have waiters. */
size_t admission_tenants(const struct admission *a);
/* The waiter was served after waiting since enqueued_ms. */
void admission_served(struct admission *a, const struct admission_waiter *w, uint64_t now_ms);

#endif
