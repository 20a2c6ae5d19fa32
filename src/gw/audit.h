/* audit — who did what to the gateway (DESIGN §10): every admin write (any method but GET and
 * HEAD) is recorded in the store's audit_log with who (the admin token's id and role), what
 * (method, path and a summary), when and from where (the peer address). The row is submitted
 * to the store before the handler's own writes, so (the store being FIFO) it is durable before
 * the change is acknowledged. Failed authentications (client and admin listeners) are logged
 * at most audit.auth_log_per_minute lines a minute; the rest are counted and told in one
 * summary line. The loop thread only. */
#ifndef DROVER_GW_AUDIT_H
#define DROVER_GW_AUDIT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/http_server.h"

struct gw;

/* A log limiter: at most per_min lines in each minute window; the suppressed ones are told
 * in one line when the next window opens. Pure (time passed in). */
struct log_limit {
    unsigned per_min;
    uint64_t window_start_ms;
    unsigned in_window;
    uint64_t suppressed;
};
/* True when a line may be written now; when a new window opens and lines were suppressed in
 * the last one, *told gets their count (else 0) so the caller logs the summary first. */
bool log_limit_allow(struct log_limit *l, uint64_t now_ms, uint64_t *told);

struct audit {
    struct log_limit auth_fail;
    uint64_t auth_failures_total;
};

/* Records one admin write. actor and role name the token; summary may be NULL. */
void audit_record(struct gw *g, const struct http_request *req, const char *actor, const char *role,
                  const char *summary);
/* Logs a failed authentication (rate-limited). listener: "client" or "admin". */
void audit_auth_failed(struct gw *g, const struct http_request *req, const char *listener,
                       const char *why, const char *shown_token);
/* GET /admin/v1/audit?limit=N&before=ID */
void audit_admin(struct gw *g, struct http_request *req);

#endif
