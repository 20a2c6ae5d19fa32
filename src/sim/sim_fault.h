/* sim_fault — the fault spec the simulator injects, from the X-Sim-Fault header or from
 * --fault. Grammar: items separated by ';', each `key` or `key=value`, blanks ignored:
 *   status=NNN [retry_after=S]   answer NNN (100..599) with an error body (and Retry-After)
 *   reset                        close with RST before any byte of the response
 *   hang                         never answer; keep the connection until the client leaves
 *   cut_after=N                  send N stream events (or N body bytes) then close
 *   slow_headers=MS              wait MS before the status line
 *   reset_after_complete         send the whole response, then RST the connection
 *   none                         no fault (an empty spec too)
 * status, reset and hang exclude each other. Pure functions; any thread. */
#ifndef DROVER_SIM_SIM_FAULT_H
#define DROVER_SIM_SIM_FAULT_H
#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"
#include "base/strv.h"

struct sim_fault {
    int status;             /* 0: none */
    bool has_retry_after;   /* with status */
    uint32_t retry_after_s; /* Retry-After seconds */
    bool reset;             /* RST before the response */
    bool hang;              /* never answer */
    bool reset_after_complete;
    int64_t cut_after;        /* -1: none; else events (stream) or bytes (fixed body) */
    uint64_t slow_headers_ms; /* 0: none */
};

/* Sets f to "no fault". */
void sim_fault_clear(struct sim_fault *f);
/* Parses spec into *out (untouched on error). Refuses unknown keys, missing or non-numeric
 * values, statuses outside 100..599, retry_after without status, and conflicting kinds. */
int sim_fault_parse(struct strv spec, struct sim_fault *out, struct gw_error *err) WUR;
bool sim_fault_is_none(const struct sim_fault *f);

#endif
