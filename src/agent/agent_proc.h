/* agent_proc — one child process of the agent: an argv run without a shell (argv[0] searched
 * on PATH, as execvp does) in its own process group, its stdout (and, when asked, its stderr)
 * kept up to a cap, the whole group killed at its timeout. Fleet operations run their command
 * templates through it as `/bin/sh -c` (agent_ops.c); upgrade checks run their argv directly
 * (agent_upgrade.c). The loop thread only. */
#ifndef DROVER_AGENT_AGENT_PROC_H
#define DROVER_AGENT_AGENT_PROC_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/err.h"
#include "base/strv.h"

/* After the process exited, its pipes get this long to deliver what is left (a background
 * child that keeps them open is then killed with its group). */
enum { AGENT_PROC_DRAIN_MS = 1000 };

struct agent_proc_spec {
    const char *const *argv; /* NULL-terminated, argv[0] non-empty; borrowed for the call */
    uint64_t timeout_ms;     /* then SIGKILL to the process group */
    size_t max_out_bytes;    /* stdout kept; the rest is read and dropped (out_truncated) */
    size_t max_err_bytes;    /* stderr kept the same way; 0: stderr is discarded */
};

struct agent_proc_result {
    bool timed_out;      /* killed at its timeout */
    bool killed;         /* killed by agent_proc_kill */
    int term_signal;     /* the signal that ended it, 0 when it exited */
    int64_t exit_status; /* when term_signal is 0 */
    struct strv out;     /* borrowed for the callback */
    struct strv err;     /* borrowed for the callback; empty when not kept */
    bool out_truncated;  /* stdout went past max_out_bytes */
};

struct agent_proc;
typedef void agent_proc_done_fn(const struct agent_proc_result *r, void *ctx);

/* Starts the process. On success *out is a handle valid until done is called, which happens
 * exactly once, after the process ended and every handle closed. On failure (argv[0] not
 * found or not executable, out of processes: libuv's UV_E* code) done is never called and
 * nothing is left to free. */
int agent_proc_start(uv_loop_t *loop, const struct agent_proc_spec *spec, agent_proc_done_fn *done,
                     void *ctx, struct agent_proc **out) WUR;
/* Kills the process group now (SIGKILL); done still follows, with killed set. */
void agent_proc_kill(struct agent_proc *p);

#endif
