/* agent_discovery — machine facts for the join body and GET /drover/v1/discovery. Parsing is
 * pure; collection reads /etc/os-release, uname(2), sysconf and /proc/meminfo, and runs
 * nvidia-smi through popen under `timeout` so a wedged driver cannot hang the agent. */
#include "agent/agent_discovery.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/strv.h"

enum { DISCOVERY_MAX_READ = 256 * 1024 };

static void copy_strv(char *dst, size_t cap, struct strv v)
{
    size_t n = v.len < cap - 1 ? v.len : cap - 1;
    if (n) memcpy(dst, v.p, n);
    dst[n] = '\0';
}

/* Next line of text (without CR/LF); false at the end. */
static bool next_line(const char *p, size_t len, size_t *pos, struct strv *line)
{
    if (*pos >= len) return false;
    const char *s = p + *pos;
    const char *nl = memchr(s, '\n', len - *pos);
    size_t n = nl ? (size_t)(nl - s) : len - *pos;
    *pos += n + 1;
    if (n && s[n - 1] == '\r') n--;
    *line = strv_make(s, n);
    return true;
}

static int64_t mib_field(struct strv v)
{
    uint64_t n;
    if (strv_to_u64(v, &n) || n > INT64_MAX) return -1; /* [N/A], [Not Supported] */
    return (int64_t)n;
}

static void text_field(char *dst, size_t cap, struct strv v)
{
    if (v.len && v.p[0] == '[') v = STRV_NULL; /* [N/A] */
    copy_strv(dst, cap, v);
}

int agent_discovery_parse_nvidia_smi(const char *p, size_t len, struct node_api_discovery *d,
                                     struct gw_error *err)
{
    size_t pos = 0, n = 0;
    int lineno = 0;
    struct strv line;
    while (next_line(p, len, &pos, &line)) {
        lineno++;
        line = strv_trim(line);
        if (!line.len) continue;
        struct strv f[6];
        size_t nf = 0;
        struct strv rest = line;
        /* the name may not hold commas in practice; the last field takes the rest */
        while (nf < 6) {
            long c = nf < 5 ? strv_index(rest, ',') : -1;
            if (c < 0) {
                f[nf++] = strv_trim(rest);
                break;
            }
            f[nf++] = strv_trim(strv_sub(rest, 0, (size_t)c));
            rest = strv_sub(rest, (size_t)c + 1, rest.len);
        }
        if (nf < 6)
            return gw_error_set(err, GW_E_PARSE, "nvidia-smi line %d: %zu fields, want 6", lineno,
                                nf);
        if (n >= NODE_API_MAX_GPUS)
            return gw_error_set(err, GW_E_LIMIT, "nvidia-smi: more than %d GPUs",
                                NODE_API_MAX_GPUS);
        struct node_api_gpu *g = &d->gpus[n];
        memset(g, 0, sizeof *g);
        uint64_t idx;
        if (strv_to_u64(f[0], &idx) || idx > 1000000)
            return gw_error_set(err, GW_E_PARSE, "nvidia-smi line %d: bad index '%.*s'", lineno,
                                STRV_FMT(f[0]));
        g->index = (int)idx;
        text_field(g->name, sizeof g->name, f[1]);
        g->vram_total_mb = mib_field(f[2]);
        g->vram_free_mb = mib_field(f[3]);
        text_field(g->compute_capability, sizeof g->compute_capability, f[4]);
        text_field(g->driver_version, sizeof g->driver_version, f[5]);
        n++;
    }
    d->n_gpus = n;
    return 0;
}

int agent_discovery_parse_cuda_version(const char *p, size_t len, char *out, size_t cap)
{
    static const char key[] = "CUDA Version:";
    const char *k = memmem(p, len, key, sizeof key - 1);
    if (!k) return GW_E_NOTFOUND;
    size_t i = (size_t)(k - p) + sizeof key - 1;
    while (i < len && p[i] == ' ') i++;
    size_t s = i;
    while (i < len && ((p[i] >= '0' && p[i] <= '9') || p[i] == '.')) i++;
    if (i == s) return GW_E_NOTFOUND;
    copy_strv(out, cap, strv_make(p + s, i - s));
    return 0;
}

int agent_discovery_parse_os_release(const char *p, size_t len, char *out, size_t cap)
{
    size_t pos = 0;
    struct strv line;
    while (next_line(p, len, &pos, &line)) {
        if (!strv_starts_with(line, STRV_LIT("PRETTY_NAME="))) continue;
        struct strv v = strv_trim(strv_sub(line, 12, line.len));
        if (v.len >= 2 && (v.p[0] == '"' || v.p[0] == '\'') && v.p[v.len - 1] == v.p[0])
            v = strv_sub(v, 1, v.len - 2);
        copy_strv(out, cap, v);
        return 0;
    }
    return GW_E_NOTFOUND;
}

int agent_discovery_parse_meminfo(const char *p, size_t len, int64_t *mb)
{
    size_t pos = 0;
    struct strv line;
    while (next_line(p, len, &pos, &line)) {
        if (!strv_starts_with(line, STRV_LIT("MemTotal:"))) continue;
        struct strv v = strv_trim(strv_sub(line, 9, line.len));
        long sp = strv_index(v, ' ');
        if (sp > 0) v = strv_sub(v, 0, (size_t)sp);
        uint64_t kb;
        if (strv_to_u64(v, &kb)) return GW_E_PARSE;
        *mb = (int64_t)(kb / 1024);
        return 0;
    }
    return GW_E_NOTFOUND;
}

static size_t read_file(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    return n;
}

static size_t run_cmd(const char *cmd, char *buf, size_t cap)
{
    FILE *f = popen(cmd, "r");
    if (!f) return 0;
    size_t n = 0, r;
    while (n < cap - 1 && (r = fread(buf + n, 1, cap - 1 - n, f)) > 0) n += r;
    buf[n] = '\0';
    int st = pclose(f);
    return st == 0 ? n : 0;
}

/* True if prog is a plain name or path without shell metacharacters. */
static bool safe_prog(const char *prog)
{
    for (const char *c = prog; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              strchr("/._-+", *c)))
            return false;
    return *prog != '\0';
}

void agent_discovery_collect(struct node_api_discovery *d, const char *nvidia_smi)
{
    static char buf[DISCOVERY_MAX_READ];
    if (gethostname(d->hostname, sizeof d->hostname) != 0) d->hostname[0] = '\0';
    d->hostname[sizeof d->hostname - 1] = '\0';
    size_t n = read_file("/etc/os-release", buf, sizeof buf);
    if (!n || agent_discovery_parse_os_release(buf, n, d->os, sizeof d->os)) {
        n = read_file("/usr/lib/os-release", buf, sizeof buf);
        if (n && agent_discovery_parse_os_release(buf, n, d->os, sizeof d->os)) d->os[0] = '\0';
    }
    struct utsname u;
    if (uname(&u) == 0) snprintf(d->kernel, sizeof d->kernel, "%s", u.release);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    d->cpus = cpus > 0 ? cpus : -1;
    n = read_file("/proc/meminfo", buf, sizeof buf);
    if (!n || agent_discovery_parse_meminfo(buf, n, &d->ram_mb)) d->ram_mb = -1;
    d->n_gpus = 0;
    if (!nvidia_smi || !nvidia_smi[0] || strcmp(nvidia_smi, "off") == 0) return;
    if (!safe_prog(nvidia_smi)) {
        LOGW("discovery", "nvidia_smi=\"%s\" reason=\"unsafe program name; no GPU probe\"",
             nvidia_smi);
        return;
    }
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "timeout 10 %s " AGENT_NVIDIA_SMI_QUERY " 2>/dev/null", nvidia_smi);
    n = run_cmd(cmd, buf, sizeof buf);
    if (!n) {
        LOGD("discovery", "gpus=0 reason=\"%s not found or failed\"", nvidia_smi);
        return;
    }
    struct gw_error err = {0};
    if (agent_discovery_parse_nvidia_smi(buf, n, d, &err)) {
        LOGW("discovery", "gpus=0 reason=\"%s\"", err.msg);
        d->n_gpus = 0;
        return;
    }
    char cuda[32] = "";
    snprintf(cmd, sizeof cmd, "timeout 10 %s 2>/dev/null", nvidia_smi);
    n = run_cmd(cmd, buf, sizeof buf);
    if (n && agent_discovery_parse_cuda_version(buf, n, cuda, sizeof cuda) == 0)
        for (size_t i = 0; i < d->n_gpus; i++)
            snprintf(d->gpus[i].cuda_version, sizeof d->gpus[i].cuda_version, "%s", cuda);
}

/* --- periodic GPU refresh ------------------------------------------------------------------ */

struct agent_gpu_probe {
    uv_loop_t *loop;
    char *prog;
    uv_process_t proc;
    uv_pipe_t out;
    struct buf buf;
    int open_handles;
    bool running, exited, eof, freeing;
    int64_t exit_status;
    agent_gpu_done_fn *done;
    void *ctx;
};

struct agent_gpu_probe *agent_gpu_probe_new(uv_loop_t *loop, const char *prog)
{
    if (!prog || !prog[0] || strcmp(prog, "off") == 0 || !safe_prog(prog)) return NULL;
    struct agent_gpu_probe *p = xcalloc(1, sizeof *p);
    p->loop = loop;
    p->prog = xstrdup(prog);
    buf_init(&p->buf, DISCOVERY_MAX_READ);
    return p;
}

static void probe_release(struct agent_gpu_probe *p)
{
    if (p->open_handles > 0 || !p->freeing) return;
    buf_free(&p->buf);
    xfree(p->prog);
    xfree(p);
}

static void probe_closed(uv_handle_t *h)
{
    struct agent_gpu_probe *p = h->data;
    p->open_handles--;
    if (p->open_handles == 0) {
        p->running = false;
        if (!p->freeing && p->done) {
            int rc = p->exit_status == 0 && p->buf.len ? 0 : GW_E_INVALID;
            p->done(rc, p->buf.p ? p->buf.p : "", p->buf.len, p->ctx);
        }
        buf_reset(&p->buf);
    }
    probe_release(p);
}

static void probe_maybe_close(struct agent_gpu_probe *p)
{
    if (!p->exited || !p->eof) return;
    if (!uv_is_closing((uv_handle_t *)&p->proc)) uv_close((uv_handle_t *)&p->proc, probe_closed);
    if (!uv_is_closing((uv_handle_t *)&p->out)) uv_close((uv_handle_t *)&p->out, probe_closed);
}

static void probe_exit(uv_process_t *proc, int64_t status, int sig)
{
    struct agent_gpu_probe *p = proc->data;
    p->exit_status = sig ? -1 : status;
    p->exited = true;
    probe_maybe_close(p);
}

static void probe_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    static char slab[64 * 1024];
    (void)h;
    (void)hint;
    *b = uv_buf_init(slab, sizeof slab);
}

static void probe_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct agent_gpu_probe *p = s->data;
    if (n > 0) {
        if (buf_append(&p->buf, b->base, (size_t)n)) p->exit_status = -1;
        return;
    }
    if (n < 0) {
        uv_read_stop(s);
        p->eof = true;
        probe_maybe_close(p);
    }
}

int agent_gpu_probe_run(struct agent_gpu_probe *p, agent_gpu_done_fn *done, void *ctx)
{
    if (p->running || p->freeing) return GW_E_STATE;
    memset(&p->proc, 0, sizeof p->proc);
    uv_pipe_init(p->loop, &p->out, 0);
    p->out.data = p;
    p->proc.data = p;
    char *args[] = {"timeout",
                    "10",
                    p->prog,
                    "--query-gpu=index,name,memory.total,memory.free,"
                    "compute_cap,driver_version",
                    "--format=csv,noheader,nounits",
                    NULL};
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_IGNORE},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&p->out},
        {.flags = UV_IGNORE},
    };
    uv_process_options_t opt = {
        .exit_cb = probe_exit,
        .file = "timeout",
        .args = args,
        .stdio = stdio,
        .stdio_count = 3,
    };
    p->exited = p->eof = false;
    p->exit_status = 0;
    buf_reset(&p->buf);
    p->done = done;
    p->ctx = ctx;
    p->open_handles = 1; /* the pipe */
    int rc = uv_spawn(p->loop, &p->proc, &opt);
    if (rc) {
        /* libuv: the process handle must still be closed after a failed spawn */
        p->open_handles = 2;
        p->done = NULL;
        p->running = true;
        uv_close((uv_handle_t *)&p->proc, probe_closed);
        uv_close((uv_handle_t *)&p->out, probe_closed);
        return rc;
    }
    p->open_handles = 2;
    p->running = true;
    uv_read_start((uv_stream_t *)&p->out, probe_alloc, probe_read);
    return 0;
}

void agent_gpu_probe_free(struct agent_gpu_probe *p)
{
    if (!p) return;
    p->freeing = true;
    if (!p->running) {
        probe_release(p);
        return;
    }
    if (!uv_is_closing((uv_handle_t *)&p->proc)) {
        (void)uv_process_kill(&p->proc, SIGKILL);
        uv_close((uv_handle_t *)&p->proc, probe_closed);
    }
    if (!uv_is_closing((uv_handle_t *)&p->out)) uv_close((uv_handle_t *)&p->out, probe_closed);
}
