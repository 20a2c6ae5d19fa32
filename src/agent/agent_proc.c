/* agent_proc — a child process with a deadline (agent_proc.h). The process is spawned detached
 * (its own process group) so that the timeout kills whatever it started as well. It is done
 * when it exited and both pipes ended (or the drain time after the exit passed); then every
 * handle is closed and the owner's callback runs from the last close callback, so the owner
 * may free itself there. The loop thread only. */
#include "agent/agent_proc.h"

#include <signal.h>
#include <string.h>

#include "base/buf.h"
#include "base/mem.h"

struct agent_proc {
    uv_process_t proc;
    uv_pipe_t out, err;
    uv_timer_t timer;
    bool has_err; /* stderr is piped */
    int open;     /* handles not closed yet */
    bool spawned; /* done is owed */
    bool exited, out_eof, err_eof, closing;
    bool timed_out, killed, truncated;
    int64_t status;
    int sig;
    struct buf out_buf, err_buf;
    agent_proc_done_fn *done;
    void *ctx;
};

static void on_closed(uv_handle_t *h)
{
    struct agent_proc *p = h->data;
    if (--p->open > 0) return;
    if (p->spawned && p->done) {
        struct agent_proc_result r = {
            .timed_out = p->timed_out,
            .killed = p->killed,
            .term_signal = p->sig,
            .exit_status = p->status,
            .out = buf_view(&p->out_buf),
            .err = buf_view(&p->err_buf),
            .out_truncated = p->truncated,
        };
        p->done(&r, p->ctx);
    }
    buf_free(&p->out_buf);
    buf_free(&p->err_buf);
    xfree(p);
}

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h)) uv_close(h, on_closed);
}

static void kill_group(struct agent_proc *p)
{
    /* the whole process group: a shell and whatever it started */
    if (p->proc.pid > 0) (void)uv_kill(-p->proc.pid, SIGKILL);
}

static void maybe_finish(struct agent_proc *p)
{
    if (p->closing || !p->exited || !p->out_eof || !p->err_eof) return;
    p->closing = true;
    uv_timer_stop(&p->timer);
    close_handle((uv_handle_t *)&p->out);
    if (p->has_err) close_handle((uv_handle_t *)&p->err);
    close_handle((uv_handle_t *)&p->timer);
    close_handle((uv_handle_t *)&p->proc);
}

static void on_timer(uv_timer_t *t)
{
    struct agent_proc *p = t->data;
    if (!p->exited) p->timed_out = true;
    kill_group(p);
    /* stop waiting for the pipes: the exit (SIGKILL cannot be ignored) finishes it */
    if (!p->out_eof) uv_read_stop((uv_stream_t *)&p->out);
    if (p->has_err && !p->err_eof) uv_read_stop((uv_stream_t *)&p->err);
    p->out_eof = p->err_eof = true;
    maybe_finish(p);
}

static void on_exit_cb(uv_process_t *proc, int64_t status, int sig)
{
    struct agent_proc *p = proc->data;
    p->exited = true;
    p->status = status;
    p->sig = sig;
    if (!p->out_eof || !p->err_eof) {
        /* the output may still be in the pipes: give it the drain time, not the timeout */
        uv_timer_stop(&p->timer);
        uv_timer_start(&p->timer, on_timer, AGENT_PROC_DRAIN_MS, 0);
    }
    maybe_finish(p);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    static char chunk[16 * 1024]; /* the loop thread only; consumed before the next read */
    (void)h;
    (void)hint;
    *b = uv_buf_init(chunk, sizeof chunk);
}

static void keep(struct buf *b, const char *p, size_t n, bool *truncated)
{
    size_t room = b->max > b->len ? b->max - b->len : 0;
    if (n > room) {
        if (truncated) *truncated = true;
        n = room;
    }
    if (n && buf_append(b, p, n)) buf_reset(b);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct agent_proc *p = s->data;
    bool is_out = s == (uv_stream_t *)&p->out;
    if (n > 0) {
        keep(is_out ? &p->out_buf : &p->err_buf, b->base, (size_t)n, is_out ? &p->truncated : NULL);
        return;
    }
    if (n < 0) {
        uv_read_stop(s);
        if (is_out)
            p->out_eof = true;
        else
            p->err_eof = true;
        maybe_finish(p);
    }
}

int agent_proc_start(uv_loop_t *loop, const struct agent_proc_spec *spec, agent_proc_done_fn *done,
                     void *ctx, struct agent_proc **out)
{
    *out = NULL;
    if (!spec->argv || !spec->argv[0] || !spec->argv[0][0]) return UV_EINVAL;
    struct agent_proc *p = xcalloc(1, sizeof *p);
    p->done = done;
    p->ctx = ctx;
    p->has_err = spec->max_err_bytes > 0;
    buf_init(&p->out_buf, spec->max_out_bytes);
    buf_init(&p->err_buf, spec->max_err_bytes);
    uv_pipe_init(loop, &p->out, 0);
    p->out.data = p;
    p->open = 2; /* the pipe and the process handle */
    if (p->has_err) {
        uv_pipe_init(loop, &p->err, 0);
        p->err.data = p;
        p->open++;
    }
    p->err_eof = !p->has_err;
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_IGNORE},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&p->out},
        {.flags = UV_IGNORE},
    };
    if (p->has_err)
        stdio[2] = (uv_stdio_container_t){.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE,
                                          .data.stream = (uv_stream_t *)&p->err};
    uv_process_options_t opt = {
        .exit_cb = on_exit_cb,
        .file = spec->argv[0],
        .args = (char **)(uintptr_t)spec->argv, /* libuv does not write them */
        .stdio_count = 3,
        .stdio = stdio,
        .flags = UV_PROCESS_DETACHED, /* its own process group, killed as one */
    };
    p->proc.data = p;
    int rc = uv_spawn(loop, &p->proc, &opt);
    if (rc) {
        /* libuv: the process handle must be closed after a failed spawn too; done is not
         * called (p->spawned is false) and the last close frees p */
        p->closing = true;
        close_handle((uv_handle_t *)&p->out);
        if (p->has_err) close_handle((uv_handle_t *)&p->err);
        close_handle((uv_handle_t *)&p->proc);
        return rc;
    }
    p->spawned = true;
    uv_timer_init(loop, &p->timer);
    p->timer.data = p;
    p->open++;
    uv_timer_start(&p->timer, on_timer, spec->timeout_ms, 0);
    uv_read_start((uv_stream_t *)&p->out, on_alloc, on_read);
    if (p->has_err) uv_read_start((uv_stream_t *)&p->err, on_alloc, on_read);
    *out = p;
    return 0;
}

void agent_proc_kill(struct agent_proc *p)
{
    if (!p || p->closing) return;
    if (!p->exited) p->killed = true;
    kill_group(p);
}
