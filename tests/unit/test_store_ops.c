/* test_store_ops — the operation rows (docs/ops.md) through the store API on a temporary
 * SQLite file: every field round-tripped in id order, NULLs kept NULL, upsert by id keeping the
 * creation time, the (node, target, op) uniqueness and the CHECKed vocabularies refused with
 * nothing written, delete, bury (moved in one transaction, replaced not doubled), raise (back
 * into ops; a raise that cannot be written leaves the dead letter where it was), rows surviving
 * a close and reopen, and the deep copy. Pruning rows whose node is gone is the gateway's (ops.c
 * at start-up), not the store's: the store keeps them. Every loop run is bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "base/mem.h"
#include "store/store.h"
#include "store/store_ops.h"

enum { WATCHDOG_MS = 10000 };

struct fx {
    uv_loop_t loop;
    char dir[64];
    char path[128];
    struct store *s;
};

static struct store *open_store(struct fx *f)
{
    struct store_config cfg = {
        .engine = STORE_ENGINE_SQLITE, .path = f->path, .busy_timeout_ms = 2000};
    struct store *s = NULL;
    struct gw_error err = {0};
    if (store_open(&f->loop, &cfg, &s, &err)) fail_msg("store_open %s: %s", f->path, err.msg);
    return s;
}

static void close_store(struct fx *f)
{
    store_close(f->s);
    f->s = NULL;
    uv_run(&f->loop, UV_RUN_NOWAIT); /* the async handle's close callback frees it */
}

static int setup(void **state)
{
    struct fx *f = xcalloc(1, sizeof *f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    snprintf(f->dir, sizeof f->dir, "/tmp/drover-test-store-ops-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/gw.db", f->dir);
    f->s = open_store(f);
    *state = f;
    return 0;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    if (f->s) close_store(f);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&f->loop);
    nftw(f->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    xfree(f);
    assert_int_equal(rc, 0);
    return 0;
}

struct done_rec {
    int calls, rc;
    bool is_done;
};

static void on_done(void *ctx, int rc, const char *msg)
{
    (void)msg;
    struct done_rec *d = ctx;
    d->calls++;
    d->rc = rc;
    d->is_done = true;
}

static void on_watchdog(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

static void run_until(uv_loop_t *loop, const bool *flag)
{
    bool expired = false;
    uv_timer_t t;
    uv_timer_init(loop, &t);
    t.data = &expired;
    uv_timer_start(&t, on_watchdog, WATCHDOG_MS, 0);
    while (!*flag && !expired) uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    assert_false(expired);
}

enum wr { PUT, DEL, BURY, RAISE };

/* One write, waited for; returns its completion's rc (the completion runs exactly once). */
static int write_wait(struct fx *f, enum wr kind, const struct store_op *o, int64_t id)
{
    struct done_rec d = {0};
    switch (kind) {
    case PUT:
        store_put_op(f->s, o, on_done, &d);
        break;
    case DEL:
        store_delete_op(f->s, id, on_done, &d);
        break;
    case BURY:
        store_bury_op(f->s, o, on_done, &d);
        break;
    case RAISE:
        store_raise_op(f->s, id, o, on_done, &d);
        break;
    }
    run_until(&f->loop, &d.is_done);
    assert_int_equal(d.calls, 1);
    return d.rc;
}

struct rows {
    struct store_op *v;
    size_t n;
};

static struct rows load(struct fx *f, bool dead)
{
    struct rows r = {0};
    struct gw_error err = {0};
    if (store_load_ops(f->s, dead, &r.v, &r.n, &err)) fail_msg("load: %s", err.msg);
    return r;
}

static void rows_free(struct rows *r)
{
    store_ops_free(r->v, r->n);
    *r = (struct rows){0};
}

static struct store_op op_row(int64_t id, const char *node, const char *target, const char *op)
{
    return (struct store_op){.id = id,
                             .node = (char *)node,
                             .target = (char *)target,
                             .op = (char *)op,
                             .state = "pending",
                             .created_ms = 1000 + id,
                             .updated_ms = 2000 + id};
}

static void assert_str_or_null(const char *got, const char *want)
{
    if (!want)
        assert_null(got);
    else
        assert_string_equal(got, want);
}

static void assert_same_row(const struct store_op *got, const struct store_op *want, bool dead)
{
    assert_true(got->id == want->id);
    assert_string_equal(got->node, want->node);
    assert_string_equal(got->target, want->target);
    assert_string_equal(got->op, want->op);
    assert_str_or_null(got->params_json, want->params_json);
    assert_str_or_null(got->last_error, want->last_error);
    assert_str_or_null(got->last_class, want->last_class);
    assert_int_equal(got->attempts, want->attempts);
    assert_true(got->created_ms == want->created_ms);
    assert_true(got->updated_ms == want->updated_ms);
    if (dead) {
        assert_null(got->state); /* dead letters have no state */
        assert_true(got->next_try_ms == 0);
        assert_true(got->dead_ms == want->dead_ms);
    } else {
        assert_str_or_null(got->state, want->state ? want->state : "pending");
        assert_true(got->next_try_ms == want->next_try_ms);
        assert_true(got->dead_ms == 0);
    }
}

/* Every field comes back as written, rows in id order whatever the write order. */
static void test_roundtrip_in_id_order(void **state)
{
    struct fx *f = *state;
    struct store_op a = op_row(9, "gpu-02", "backend:vllm", "upgrade");
    a.params_json = "{\"version\":\"0.6\"}";
    a.state = "running";
    a.attempts = 4;
    a.next_try_ms = INT64_MAX;
    a.last_error = "connection refused: \"x\"\n";
    a.last_class = "unreachable";
    struct store_op b = op_row(2, "gpu-01", "model:llama3", "install");
    struct store_op c = op_row(5, "gpu-01", "model:llama3", "load");
    c.state = "done";
    c.next_try_ms = -1;
    assert_int_equal(write_wait(f, PUT, &a, 0), 0);
    assert_int_equal(write_wait(f, PUT, &b, 0), 0);
    assert_int_equal(write_wait(f, PUT, &c, 0), 0);
    struct rows r = load(f, false);
    assert_int_equal(r.n, 3);
    assert_same_row(&r.v[0], &b, false);
    assert_same_row(&r.v[1], &c, false);
    assert_same_row(&r.v[2], &a, false);
    rows_free(&r);
    r = load(f, true);
    assert_int_equal(r.n, 0);
    rows_free(&r);
}

/* A put of an existing id updates the row, keeping when it was created; a row without a
 * state is pending. */
static void test_upsert_keeps_created(void **state)
{
    struct fx *f = *state;
    struct store_op o = op_row(1, "gpu-01", "model:m", "install");
    o.state = NULL;
    assert_int_equal(write_wait(f, PUT, &o, 0), 0);
    struct rows r = load(f, false);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.v[0].state, "pending");
    rows_free(&r);

    struct store_op next = o;
    next.state = "running";
    next.attempts = 2;
    next.last_error = "timeout";
    next.last_class = "timeout";
    next.params_json = "{}";
    next.created_ms = 999999; /* ignored on update */
    next.updated_ms = 5000;
    assert_int_equal(write_wait(f, PUT, &next, 0), 0);
    r = load(f, false);
    assert_int_equal(r.n, 1);
    next.created_ms = o.created_ms;
    assert_same_row(&r.v[0], &next, false);
    rows_free(&r);
}

/* One operation per (node, target, op): a second row for the same triple is refused and the
 * first stays as it was; the same target with another op, or on another node, is fine. */
static void test_unique_triple(void **state)
{
    struct fx *f = *state;
    struct store_op a = op_row(1, "gpu-01", "model:m", "install");
    assert_int_equal(write_wait(f, PUT, &a, 0), 0);
    struct store_op dup = op_row(2, "gpu-01", "model:m", "install");
    dup.attempts = 7;
    assert_true(write_wait(f, PUT, &dup, 0) != 0);
    struct store_op other_op = op_row(3, "gpu-01", "model:m", "load");
    struct store_op other_node = op_row(4, "gpu-02", "model:m", "install");
    assert_int_equal(write_wait(f, PUT, &other_op, 0), 0);
    assert_int_equal(write_wait(f, PUT, &other_node, 0), 0);
    struct rows r = load(f, false);
    assert_int_equal(r.n, 3);
    assert_same_row(&r.v[0], &a, false);
    assert_true(r.v[1].id == 3 && r.v[2].id == 4);
    rows_free(&r);
}

/* The op and state vocabularies are the schema's: anything else is refused, nothing written. */
static void test_vocabulary_refused(void **state)
{
    struct fx *f = *state;
    struct store_op bad_op = op_row(1, "gpu-01", "model:m", "reboot");
    assert_true(write_wait(f, PUT, &bad_op, 0) != 0);
    struct store_op bad_state = op_row(2, "gpu-01", "model:m", "install");
    bad_state.state = "failed";
    assert_true(write_wait(f, PUT, &bad_state, 0) != 0);
    static const char *const ops[] = {"install", "upgrade", "delete", "load", "unload"};
    for (size_t i = 0; i < 5; i++) {
        struct store_op o = op_row(10 + (int64_t)i, "gpu-01", "model:m", ops[i]);
        assert_int_equal(write_wait(f, PUT, &o, 0), 0);
    }
    struct rows r = load(f, false);
    assert_int_equal(r.n, 5);
    rows_free(&r);
}

/* Delete removes that row only; a missing id is not an error. */
static void test_delete(void **state)
{
    struct fx *f = *state;
    struct store_op a = op_row(1, "gpu-01", "model:a", "install");
    struct store_op b = op_row(2, "gpu-01", "model:b", "install");
    assert_int_equal(write_wait(f, PUT, &a, 0), 0);
    assert_int_equal(write_wait(f, PUT, &b, 0), 0);
    assert_int_equal(write_wait(f, DEL, NULL, 1), 0);
    assert_int_equal(write_wait(f, DEL, NULL, 1), 0);
    assert_int_equal(write_wait(f, DEL, NULL, 77), 0);
    struct rows r = load(f, false);
    assert_int_equal(r.n, 1);
    assert_same_row(&r.v[0], &b, false);
    rows_free(&r);
    store_delete_op(f->s, 2, NULL, NULL);             /* no completion wanted */
    assert_int_equal(write_wait(f, DEL, NULL, 3), 0); /* queued behind it */
    r = load(f, false);
    assert_int_equal(r.n, 0);
    rows_free(&r);
}

/* Bury moves the row to the dead letters with the fields given (the failure that killed it)
 * and its dead time; the other rows stay. A dead letter is listed without state or due time. */
static void test_bury_moves_row(void **state)
{
    struct fx *f = *state;
    struct store_op a = op_row(1, "gpu-01", "model:a", "install");
    struct store_op b = op_row(2, "gpu-01", "model:b", "install");
    struct store_op c = op_row(3, "gpu-02", "model:a", "delete");
    assert_int_equal(write_wait(f, PUT, &a, 0), 0);
    assert_int_equal(write_wait(f, PUT, &b, 0), 0);
    assert_int_equal(write_wait(f, PUT, &c, 0), 0);
    struct store_op dead = b;
    dead.attempts = 5;
    dead.last_error = "disk full";
    dead.last_class = "node_error";
    dead.params_json = "{\"quant\":\"q4\"}";
    dead.updated_ms = 7000;
    dead.dead_ms = 8000;
    dead.next_try_ms = 12345; /* not a dead letter's field */
    assert_int_equal(write_wait(f, BURY, &dead, 0), 0);
    struct rows r = load(f, false);
    assert_int_equal(r.n, 2);
    assert_true(r.v[0].id == 1 && r.v[1].id == 3);
    rows_free(&r);
    r = load(f, true);
    assert_int_equal(r.n, 1);
    assert_same_row(&r.v[0], &dead, true);
    rows_free(&r);

    /* a second dead letter sorts by id; burying again replaces, never doubles */
    struct store_op dead_a = a;
    dead_a.dead_ms = 9000;
    assert_int_equal(write_wait(f, BURY, &dead_a, 0), 0);
    dead.dead_ms = 9500;
    assert_int_equal(write_wait(f, BURY, &dead, 0), 0);
    r = load(f, true);
    assert_int_equal(r.n, 2);
    assert_true(r.v[0].id == 1 && r.v[1].id == 2);
    assert_true(r.v[1].dead_ms == 9500);
    rows_free(&r);
    r = load(f, false);
    assert_int_equal(r.n, 1);
    rows_free(&r);
}

/* Raise brings a dead letter back as a live row in one transaction. When the row cannot be
 * written (the same operation is already queued again), nothing changes: the dead letter is
 * not lost. */
static void test_raise(void **state)
{
    struct fx *f = *state;
    struct store_op o = op_row(4, "gpu-01", "model:m", "install");
    assert_int_equal(write_wait(f, PUT, &o, 0), 0);
    o.dead_ms = 50;
    o.attempts = 3;
    o.last_error = "refused";
    assert_int_equal(write_wait(f, BURY, &o, 0), 0);

    /* meanwhile the same operation was queued again under a new id */
    struct store_op again = op_row(5, "gpu-01", "model:m", "install");
    assert_int_equal(write_wait(f, PUT, &again, 0), 0);
    struct store_op raised = o;
    raised.attempts = 0;
    raised.state = "pending";
    raised.last_error = NULL;
    raised.next_try_ms = 0;
    assert_true(write_wait(f, RAISE, &raised, 4) != 0);
    struct rows r = load(f, true);
    assert_int_equal(r.n, 1); /* rolled back: still a dead letter */
    assert_true(r.v[0].id == 4);
    rows_free(&r);
    r = load(f, false);
    assert_int_equal(r.n, 1);
    assert_true(r.v[0].id == 5);
    rows_free(&r);

    /* once the new one is gone, the raise goes through */
    assert_int_equal(write_wait(f, DEL, NULL, 5), 0);
    assert_int_equal(write_wait(f, RAISE, &raised, 4), 0);
    r = load(f, true);
    assert_int_equal(r.n, 0);
    rows_free(&r);
    r = load(f, false);
    assert_int_equal(r.n, 1);
    assert_same_row(&r.v[0], &raised, false);
    rows_free(&r);
}

/* What was acknowledged is on disk: a close and reopen of the file finds every row. */
static void test_rows_survive_reopen(void **state)
{
    struct fx *f = *state;
    struct store_op a = op_row(1, "gpu-01", "model:a", "install");
    a.params_json = "{\"k\":[1,2]}";
    struct store_op b = op_row(2, "gone-node", "model:b", "unload");
    assert_int_equal(write_wait(f, PUT, &a, 0), 0);
    assert_int_equal(write_wait(f, PUT, &b, 0), 0);
    b.dead_ms = 77;
    assert_int_equal(write_wait(f, BURY, &b, 0), 0);
    store_put_op(f->s, &b, NULL, NULL); /* queued at close: store_close runs it */
    close_store(f);
    f->s = open_store(f);
    struct rows r = load(f, false);
    assert_int_equal(r.n, 2);
    assert_same_row(&r.v[0], &a, false);
    assert_true(r.v[1].id == 2);
    assert_string_equal(r.v[1].node, "gone-node"); /* the store does not prune */
    rows_free(&r);
    r = load(f, true);
    assert_int_equal(r.n, 1);
    assert_same_row(&r.v[0], &b, true);
    rows_free(&r);
}

/* The copy owns its strings: clearing it leaves the original intact, and clear zeroes. */
static void test_copy_is_deep(void **state)
{
    (void)state;
    char node[] = "gpu-01";
    struct store_op src = op_row(3, node, "model:m", "load");
    src.params_json = "{}";
    src.last_error = "e";
    struct store_op dst;
    store_op_copy(&dst, &src);
    assert_ptr_not_equal(dst.node, src.node);
    node[0] = 'X';
    assert_string_equal(dst.node, "gpu-01");
    assert_string_equal(dst.params_json, "{}");
    assert_null(dst.last_class);
    assert_true(dst.id == 3 && dst.created_ms == src.created_ms);
    store_op_clear(&dst);
    assert_null(dst.node);
    assert_true(dst.id == 0);
    assert_string_equal(src.target, "model:m");
    store_ops_free(NULL, 0);
}

int main(void)
{
#define ENTRY(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
    const struct CMUnitTest tests[] = {
        ENTRY(test_roundtrip_in_id_order),
        ENTRY(test_upsert_keeps_created),
        ENTRY(test_unique_triple),
        ENTRY(test_vocabulary_refused),
        ENTRY(test_delete),
        ENTRY(test_bury_moves_row),
        ENTRY(test_raise),
        ENTRY(test_rows_survive_reopen),
        cmocka_unit_test(test_copy_is_deep),
    };
#undef ENTRY
    return cmocka_run_group_tests(tests, NULL, NULL);
}
