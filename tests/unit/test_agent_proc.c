/* The agent's child processes (agent_proc) on a real loop: an argv runs without a shell (its
 * words reach the program as they are), stdout and stderr are kept apart and capped, the exit
 * status and signal are reported, a process past its timeout is killed with everything it
 * started, agent_proc_kill ends it at once, and a program that does not exist is refused
 * without a callback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "agent/agent_proc.h"
#include "base/mem.h"

struct got {
    int calls;
    struct agent_proc_result r;
    char out[8192], err[8192];
};

static void on_done(const struct agent_proc_result *r, void *ctx)
{
    struct got *g = ctx;
    g->calls++;
    g->r = *r;
    snprintf(g->out, sizeof g->out, "%.*s", (int)r->out.len, r->out.p ? r->out.p : "");
    snprintf(g->err, sizeof g->err, "%.*s", (int)r->err.len, r->err.p ? r->err.p : "");
    g->r.out = g->r.err = STRV_NULL; /* borrowed for the call only */
}

static void run(const char *const *argv, uint64_t timeout_ms, size_t max_out, size_t max_err,
                struct got *g)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    memset(g, 0, sizeof *g);
    struct agent_proc_spec spec = {argv, timeout_ms, max_out, max_err};
    struct agent_proc *p = NULL;
    assert_int_equal(agent_proc_start(&loop, &spec, on_done, g, &p), 0);
    assert_non_null(p);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0); /* every handle closed */
    assert_int_equal(g->calls, 1);
}

static void test_argv_output_and_status(void **state)
{
    (void)state;
    /* the words arrive as they are: no shell splits or expands the one after -c's script */
    const char *argv[] = {
        "sh", "-c", "printf '%s|' \"$@\"; echo oops >&2; exit 3", "sh", "a b; $(id)", "*", NULL};
    struct got g;
    run(argv, 10000, 4096, 4096, &g);
    assert_string_equal(g.out, "a b; $(id)|*|");
    assert_string_equal(g.err, "oops\n");
    assert_int_equal(g.r.exit_status, 3);
    assert_int_equal(g.r.term_signal, 0);
    assert_false(g.r.timed_out);
    assert_false(g.r.out_truncated);

    /* stderr not kept: discarded; stdout capped */
    const char *big[] = {"sh", "-c", "head -c 10000 /dev/zero | tr '\\0' x; echo e >&2", NULL};
    run(big, 10000, 100, 0, &g);
    assert_int_equal(strlen(g.out), 100);
    assert_true(g.r.out_truncated);
    assert_string_equal(g.err, "");
    assert_int_equal(g.r.exit_status, 0);
}

static void test_timeout_kills_the_group(void **state)
{
    (void)state;
    /* a child in the background holds stdout open; the group is killed at the timeout */
    const char *argv[] = {"sh", "-c", "echo started; sleep 30 & sleep 30", NULL};
    struct got g;
    run(argv, 200, 4096, 0, &g);
    assert_true(g.r.timed_out);
    assert_int_equal(g.r.term_signal, 9);
    assert_string_equal(g.out, "started\n");

    /* exited, but a background child keeps the pipe: done after the drain time, not timed out */
    const char *bg[] = {"sh", "-c", "echo done; sleep 30 &", NULL};
    run(bg, 60000, 4096, 0, &g);
    assert_false(g.r.timed_out);
    assert_int_equal(g.r.exit_status, 0);
    assert_string_equal(g.out, "done\n");
}

static void on_kill_timer(uv_timer_t *t)
{
    agent_proc_kill(t->data);
    uv_close((uv_handle_t *)t, NULL);
}

static void test_kill_and_missing_program(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct got g = {0};
    const char *argv[] = {"sleep", "30", NULL};
    struct agent_proc_spec spec = {argv, 60000, 4096, 0};
    struct agent_proc *p = NULL;
    assert_int_equal(agent_proc_start(&loop, &spec, on_done, &g, &p), 0);
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    t.data = p;
    uv_timer_start(&t, on_kill_timer, 50, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(g.calls, 1);
    assert_true(g.r.killed);
    assert_false(g.r.timed_out);
    assert_int_equal(g.r.term_signal, 9);

    /* not found: refused at once, no callback, nothing left open */
    memset(&g, 0, sizeof g);
    const char *missing[] = {"/nonexistent/drover-check", "x", NULL};
    spec.argv = missing;
    p = (struct agent_proc *)&g;
    assert_true(agent_proc_start(&loop, &spec, on_done, &g, &p) < 0);
    assert_null(p);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(g.calls, 0);
    const char *empty[] = {"", NULL};
    spec.argv = empty;
    assert_true(agent_proc_start(&loop, &spec, on_done, &g, &p) < 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_argv_output_and_status),
        cmocka_unit_test(test_timeout_kills_the_group),
        cmocka_unit_test(test_kill_and_missing_program),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
