/* agent_discovery — what the node is: hostname, OS, kernel, CPUs, RAM and NVIDIA GPUs. The
 * parsers (os-release, nvidia-smi CSV and banner, /proc/meminfo) are pure functions over text;
 * agent_discovery_collect reads the machine (blocking, once at start-up and on rejoin, before
 * or between loop iterations: nvidia-smi is run with a time limit). Any thread. */
#ifndef DROVER_AGENT_AGENT_DISCOVERY_H
#define DROVER_AGENT_AGENT_DISCOVERY_H
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "base/err.h"
#include "proto/node_api.h"

/* The query the agent runs (docs/node_api.md). */
#define AGENT_NVIDIA_SMI_QUERY                                                                     \
    "--query-gpu=index,name,memory.total,memory.free,compute_cap,driver_version "                  \
    "--format=csv,noheader,nounits"

/* Parses nvidia-smi CSV (one GPU per line: index, name, memory.total, memory.free,
 * compute_cap, driver_version; MiB numbers; "[N/A]" or "[Not Supported]" read as unknown) into
 * d->gpus (replacing them). Blank lines are skipped; a line with fewer than 6 fields is
 * GW_E_PARSE naming the line. At most NODE_API_MAX_GPUS (GW_E_LIMIT past). */
int agent_discovery_parse_nvidia_smi(const char *p, size_t len, struct node_api_discovery *d,
                                     struct gw_error *err) WUR;
/* Finds "CUDA Version: 12.4" in nvidia-smi's banner; copies "12.4" into out (cap bytes).
 * GW_E_NOTFOUND when absent. */
int agent_discovery_parse_cuda_version(const char *p, size_t len, char *out, size_t cap) WUR;
/* PRETTY_NAME from os-release text (quotes removed); GW_E_NOTFOUND when absent. */
int agent_discovery_parse_os_release(const char *p, size_t len, char *out, size_t cap) WUR;
/* MemTotal from /proc/meminfo text, in MiB; GW_E_NOTFOUND when absent. */
int agent_discovery_parse_meminfo(const char *p, size_t len, int64_t *mb) WUR;

/* Reads the machine into d (after node_api_discovery_init). nvidia_smi is the program to run
 * (NULL or "" or "off": no GPU probe); its absence or failure gives no GPUs. */
void agent_discovery_collect(struct node_api_discovery *d, const char *nvidia_smi);

/* --- periodic GPU refresh on the loop (free VRAM changes) ---------------------------------
 * Runs `timeout 10 PROG <query>` with uv_spawn and hands its stdout to done (exit status 0
 * only; rc < 0 otherwise). One run at a time per probe. Loop thread only. */
struct agent_gpu_probe;
typedef void agent_gpu_done_fn(int rc, const char *out, size_t len, void *ctx);
/* Returns an owned probe, or NULL when prog is off/unsafe. */
struct agent_gpu_probe *agent_gpu_probe_new(uv_loop_t *loop, const char *prog);
/* Starts a run unless one is running (then returns GW_E_STATE; done is not called). */
int agent_gpu_probe_run(struct agent_gpu_probe *p, agent_gpu_done_fn *done, void *ctx) WUR;
/* Kills a running child and frees the probe from its close callbacks (done not called). */
void agent_gpu_probe_free(struct agent_gpu_probe *p);

#endif
