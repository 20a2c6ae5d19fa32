/* The admission queue (docs/gateway.md "Admission queue") on a real libuv loop: FIFO order
 * across passes, requeued waiters keep their place ahead of those not yet visited, a waiter
 * may leave during a pass, a full queue refuses with GW_E_LIMIT, a spent deadline wakes the
 * waiter with timed_out, and a kick wakes waiters on the next loop turn, not at once. Across
 * tenants (keys): turns in round robin, and a full queue gives a newcomer of a smaller tenant
 * the newest place of the largest. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/err.h"
#include "base/mem.h"
#include "gw/admission.h"

enum { MAXW = 32, FAR_MS = 60000 };

enum action { ACT_REQUEUE, ACT_SERVE };

struct waiter {
    struct admission_waiter w; /* first: the callback casts back */
    int id;
    enum action act;
    struct waiter *leave_on_wake[2]; /* waiters this one makes leave from its callback */
    struct waiter *enter_on_wake;    /* a waiter this one makes enter from its callback */
};

static struct {
    struct admission *a;
    int order[4 * MAXW];
    bool timed_out[4 * MAXW];
    size_t n;
} wakes;

static void on_wake(struct admission_waiter *aw, bool timed_out)
{
    struct waiter *w = (struct waiter *)aw;
    assert_false(aw->queued); /* it has left the queue when woken */
    assert_true(wakes.n < 4 * MAXW);
    wakes.order[wakes.n] = w->id;
    wakes.timed_out[wakes.n] = timed_out;
    wakes.n++;
    for (int i = 0; i < 2; i++)
        if (w->leave_on_wake[i]) admission_leave(wakes.a, &w->leave_on_wake[i]->w);
    if (w->enter_on_wake) {
        uint64_t now = uv_now(wakes.a->loop);
        assert_int_equal(admission_enter(wakes.a, &w->enter_on_wake->w, now, now + FAR_MS), 0);
        w->enter_on_wake = NULL;
    }
    if (timed_out) return;
    if (w->act == ACT_REQUEUE) {
        admission_requeue(wakes.a, aw);
    } else {
        admission_served(wakes.a, aw, uv_now(wakes.a->loop));
    }
}

struct fixture {
    uv_loop_t loop;
    struct admission a;
    struct waiter w[MAXW];
};

static struct fixture *fx_new(size_t max)
{
    struct fixture *f = xcalloc(1, sizeof *f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    admission_init(&f->a, &f->loop, max, 100);
    for (int i = 0; i < MAXW; i++) {
        f->w[i].id = i;
        f->w[i].w.wake = on_wake;
    }
    memset(&wakes, 0, sizeof wakes);
    wakes.a = &f->a;
    return f;
}

static void enter(struct fixture *f, int i, uint64_t in_ms)
{
    uint64_t now = uv_now(&f->loop);
    assert_int_equal(admission_enter(&f->a, &f->w[i].w, now, now + in_ms), 0);
}

/* The ids in tenant's line, head first, with a check of the links. */
static size_t tenant_ids(struct fixture *f, uint64_t tenant, int *out)
{
    size_t k = 0;
    const struct admission_waiter *prev = NULL;
    for (const struct admission_waiter *p = admission_first(&f->a, tenant); p; p = p->next) {
        assert_ptr_equal(p->prev, prev);
        assert_true(p->queued);
        assert_int_equal(p->tenant, tenant);
        out[k++] = ((const struct waiter *)p)->id;
        prev = p;
    }
    return k;
}

/* The ids in the queue (one tenant), head first, and a check that the links agree with n. */
static size_t queue_ids(struct fixture *f, int *out)
{
    size_t k = tenant_ids(f, 0, out);
    assert_int_equal(k, f->a.n);
    return k;
}

static void assert_ids(const int *got, size_t n_got, const int *want, size_t n_want)
{
    assert_int_equal(n_got, n_want);
    for (size_t i = 0; i < n_want; i++) assert_int_equal(got[i], want[i]);
}

static void fx_free(struct fixture *f)
{
    for (int i = 0; i < MAXW; i++) admission_leave(&f->a, &f->w[i].w);
    assert_int_equal(f->a.n, 0);
    admission_close(&f->a);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    xfree(f);
}

/* A kick does nothing at once; the next loop turn wakes the waiters in arrival order. */
static void test_kick_next_turn_in_order(void **state)
{
    (void)state;
    struct fixture *f = fx_new(16);
    /* nothing queued: a kick starts nothing */
    admission_kick(&f->a);
    assert_false(uv_is_active((uv_handle_t *)&f->a.idle));
    for (int i = 1; i <= 3; i++) enter(f, i, FAR_MS);
    admission_kick(&f->a);
    assert_int_equal(wakes.n, 0);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    int want[] = {1, 2, 3};
    assert_ids(wakes.order, wakes.n, want, 3);
    for (size_t i = 0; i < wakes.n; i++) assert_false(wakes.timed_out[i]);
    /* all requeued: the same order, and no more wakes without a kick */
    int ids[MAXW];
    assert_ids(ids, queue_ids(f, ids), want, 3);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(wakes.n, 3);
    /* a newcomer goes behind; the next pass keeps the order */
    enter(f, 4, FAR_MS);
    admission_kick(&f->a);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    int want2[] = {1, 2, 3, 1, 2, 3, 4};
    assert_ids(wakes.order, wakes.n, want2, 7);
    assert_int_equal(f->a.entered_total, 4);
    fx_free(f);
}

/* A pass visits kicks + 8 waiters; the visited ones that requeue stay ahead of the rest, and
 * a waiter that entered during the pass goes behind everyone. Served ones leave. */
static void test_requeue_keeps_order(void **state)
{
    (void)state;
    struct fixture *f = fx_new(32);
    for (int i = 1; i <= 12; i++) enter(f, i, FAR_MS);
    f->w[2].act = ACT_SERVE;
    f->w[5].act = ACT_SERVE;
    f->w[3].enter_on_wake = &f->w[20];
    admission_kick(&f->a);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    /* one kick: 1 + 8 visited */
    int want[] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    assert_ids(wakes.order, wakes.n, want, 9);
    int ids[MAXW];
    int want_q[] = {1, 3, 4, 6, 7, 8, 9, 10, 11, 12, 20};
    assert_ids(ids, queue_ids(f, ids), want_q, 11);
    assert_int_equal(f->a.served_total, 2);
    /* the next pass starts at the head again, not where the last one stopped */
    wakes.n = 0;
    admission_kick(&f->a);
    admission_kick(&f->a);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    int want2[] = {1, 3, 4, 6, 7, 8, 9, 10, 11, 12};
    assert_ids(wakes.order, wakes.n, want2, 10);
    fx_free(f);
}

/* A waiter leaves during a pass (its client left), whether it was already requeued or not yet
 * visited: it is not woken again and the count stays true. */
static void test_leave_during_pass(void **state)
{
    (void)state;
    struct fixture *f = fx_new(16);
    for (int i = 1; i <= 4; i++) enter(f, i, FAR_MS);
    f->w[2].leave_on_wake[0] = &f->w[1]; /* requeued already */
    f->w[2].leave_on_wake[1] = &f->w[4]; /* not visited yet */
    admission_kick(&f->a);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    int want[] = {1, 2, 3};
    assert_ids(wakes.order, wakes.n, want, 3);
    int ids[MAXW];
    int want_q[] = {2, 3};
    assert_ids(ids, queue_ids(f, ids), want_q, 2);
    assert_int_equal(f->a.left_total, 2);
    assert_false(f->w[1].w.queued);
    assert_false(f->w[4].w.queued);
    /* leaving twice is harmless */
    admission_leave(&f->a, &f->w[1].w);
    assert_int_equal(f->a.left_total, 2);
    fx_free(f);
}

static void test_full_queue(void **state)
{
    (void)state;
    struct fixture *f = fx_new(2);
    enter(f, 1, FAR_MS);
    enter(f, 2, FAR_MS);
    uint64_t now = uv_now(&f->loop);
    assert_int_equal(admission_enter(&f->a, &f->w[3].w, now, now + FAR_MS), GW_E_LIMIT);
    assert_false(f->w[3].w.queued);
    assert_int_equal(f->a.rejected_total, 1);
    assert_int_equal(f->a.n, 2);
    /* a place frees when one leaves */
    admission_leave(&f->a, &f->w[1].w);
    assert_int_equal(admission_enter(&f->a, &f->w[3].w, now, now + FAR_MS), 0);
    int ids[MAXW];
    int want[] = {2, 3};
    assert_ids(ids, queue_ids(f, ids), want, 2);
    fx_free(f);
}

/* The deadline timer wakes a waiter whose time ran out with timed_out (it has left the queue);
 * the others get a look in the same pass and keep their place. */
static void test_deadline_timeout(void **state)
{
    (void)state;
    struct fixture *f = fx_new(16);
    enter(f, 1, FAR_MS);
    enter(f, 2, 20);
    enter(f, 3, FAR_MS);
    uint64_t start = uv_now(&f->loop);
    for (int turn = 0; turn < 200 && f->a.timeouts_total == 0; turn++)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(f->a.timeouts_total, 1);
    assert_true(uv_now(&f->loop) >= start + 20);
    bool seen = false;
    for (size_t i = 0; i < wakes.n; i++) {
        if (wakes.order[i] == 2) {
            assert_true(wakes.timed_out[i]);
            seen = true;
        } else {
            assert_false(wakes.timed_out[i]);
        }
    }
    assert_true(seen);
    assert_false(f->w[2].w.queued);
    int ids[MAXW];
    int want[] = {1, 3};
    assert_ids(ids, queue_ids(f, ids), want, 2);
    /* the timer is still armed for the others (the poll) */
    assert_true(uv_is_active((uv_handle_t *)&f->a.timer));
    fx_free(f);
}

static void enter_as(struct fixture *f, int i, uint64_t tenant)
{
    f->w[i].w.tenant = tenant;
    enter(f, i, FAR_MS);
}

/* Two keys: the first floods the line before the second arrives; a pass takes them in turn,
 * so the second's waiters are not behind all of the first's; each key's own order holds. */
static void test_tenants_take_turns(void **state)
{
    (void)state;
    struct fixture *f = fx_new(32);
    for (int i = 1; i <= 6; i++) enter_as(f, i, 0xA);
    enter_as(f, 7, 0xB);
    enter_as(f, 8, 0xB);
    assert_int_equal(admission_tenants(&f->a), 2);
    for (int i = 1; i <= 8; i++) f->w[i].act = ACT_SERVE;
    admission_kick(&f->a);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    int want[] = {1, 7, 2, 8, 3, 4, 5, 6};
    assert_ids(wakes.order, wakes.n, want, 8);
    assert_int_equal(f->a.n, 0);
    assert_int_equal(admission_tenants(&f->a), 0);
    /* a bounded pass (one kick: 1 + 8) that stops midway resumes with the next key's turn */
    wakes.n = 0;
    for (int i = 1; i <= 12; i++) {
        f->w[i].act = ACT_REQUEUE;
        enter_as(f, i, i <= 10 ? 0xA : 0xB);
    }
    admission_kick(&f->a);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    int want2[] = {1, 11, 2, 12, 3, 4, 5, 6, 7};
    assert_ids(wakes.order, wakes.n, want2, 9);
    int ids[MAXW];
    int want_a[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    assert_ids(ids, tenant_ids(f, 0xA, ids), want_a, 10);
    int want_b[] = {11, 12};
    assert_ids(ids, tenant_ids(f, 0xB, ids), want_b, 2);
    fx_free(f);
}

/* A full queue held by one key: another key's newcomer takes the newest place of the first
 * (woken timed out on the next turn), until their shares are within one; then the queue is
 * full for both. The one that was pushed out may also leave before its wake. */
static void test_full_queue_shared_fairly(void **state)
{
    (void)state;
    struct fixture *f = fx_new(4);
    for (int i = 1; i <= 4; i++) enter_as(f, i, 0xA);
    uint64_t now = uv_now(&f->loop);
    f->w[5].w.tenant = 0xA; /* the same key: refused, as before */
    assert_int_equal(admission_enter(&f->a, &f->w[5].w, now, now + FAR_MS), GW_E_LIMIT);
    enter_as(f, 6, 0xB); /* takes 4's place */
    enter_as(f, 7, 0xB); /* takes 3's place: 2 and 2 */
    f->w[8].w.tenant = 0xB;
    assert_int_equal(admission_enter(&f->a, &f->w[8].w, now, now + FAR_MS), GW_E_LIMIT);
    assert_int_equal(f->a.pushed_out_total, 2);
    assert_int_equal(f->a.rejected_total, 2);
    assert_int_equal(f->a.n, 4);
    assert_true(f->w[3].w.queued && f->w[4].w.queued); /* until their wake, or they leave */
    admission_leave(&f->a, &f->w[3].w);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    int want[] = {4};
    assert_ids(wakes.order, wakes.n, want, 1);
    assert_true(wakes.timed_out[0]);
    assert_false(f->w[4].w.queued);
    int ids[MAXW];
    int want_a[] = {1, 2};
    assert_ids(ids, tenant_ids(f, 0xA, ids), want_a, 2);
    int want_b[] = {6, 7};
    assert_ids(ids, tenant_ids(f, 0xB, ids), want_b, 2);
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kick_next_turn_in_order),  cmocka_unit_test(test_requeue_keeps_order),
        cmocka_unit_test(test_leave_during_pass),        cmocka_unit_test(test_full_queue),
        cmocka_unit_test(test_deadline_timeout),         cmocka_unit_test(test_tenants_take_turns),
        cmocka_unit_test(test_full_queue_shared_fairly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
