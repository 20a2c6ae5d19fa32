/* admin_client — blocking calls to the gateway's admin API for the CLI commands. The process's
 * main thread only (each call runs a private loop). */
#ifndef DROVER_CLI_ADMIN_CLIENT_H
#define DROVER_CLI_ADMIN_CLIENT_H
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/err.h"

struct admin_target {
    const char *url;   /* "http://127.0.0.1:8081" (DROVER_ADMIN_URL, --admin) */
    const char *token; /* admin token or NULL (DROVER_ADMIN_TOKEN, --token) */
    uint64_t timeout_ms;
};

/* The defaults: $DROVER_ADMIN_URL or http://127.0.0.1:8081, $DROVER_ADMIN_TOKEN. */
void admin_target_init(struct admin_target *t, uint64_t timeout_ms);

/* Splits "http://host:port" (scheme optional). */
int admin_url_parse(const char *url, char *host, size_t host_cap, int *port) WUR;

/* Sends method path with an optional JSON body and collects the answer into out (which the
 * caller initialised with its cap). Returns 0 with *status set when an answer came (any
 * status), else an error with err filled (connection refused, timeout, …). */
int admin_request(const struct admin_target *t, const char *method, const char *path,
                  const char *body, int *status, struct buf *out, struct gw_error *err) WUR;

struct json_object;
/* The string value of key in o (any JSON type printed as JSON), or dflt when absent or null. */
const char *admin_json_str(struct json_object *o, const char *key, const char *dflt);
/* Prints the server's refusal on stderr as "PROG: STATUS code: reason" and, for the answers an
 * operator can act on (401, an unknown path), what to do; returns 1 (the exit code of a
 * refused call). */
int admin_print_refusal(const char *prog, const struct admin_target *t, int status,
                        const struct buf *body);

/* One admin call as the commands make it: sends the request, and on a transport failure or a
 * non-2xx answer prints one line on stderr that says what to do. On a 2xx answer out holds the
 * body and, when root is given, *root the parsed JSON (owned; NULL with an error printed when
 * it is not JSON). *status gets the answer's status (0 when none came). Returns the exit code:
 * 0, 1 (no answer, a refusal, not JSON) or 2 (a malformed admin URL). */
int admin_call(const char *prog, const struct admin_target *t, const char *method, const char *path,
               const char *body, int *status, struct buf *out, struct json_object **root);

/* "PROG: unknown command 'CMD' (commands: LIST; see 'PROG --help')" on stderr; returns 2. */
int admin_unknown_command(const char *prog, const char *cmd, const char *list);

#endif
