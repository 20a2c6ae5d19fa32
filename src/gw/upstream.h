/* upstream — how the gateway addresses a node: its address, the Bearer header it sends (the
 * node's API key; for an agent the gateway key H of docs/node_api.md), the path of its probe
 * (an agent's /drover/v1/health, an Ollama's /api/tags, anyone else's /v1/models) and calls to
 * its agent. Every request the gateway makes to a node takes these from here, so the proxy,
 * the probes, loads, operations and inventory cannot disagree on them. The loop thread only. */
#ifndef DROVER_GW_UPSTREAM_H
#define DROVER_GW_UPSTREAM_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/strv.h"
#include "net/http_client.h"

struct gw;
struct node;

/* Storage for one Authorization value; lives as long as the request's headers. */
struct upstream_auth {
    char value[512];
};

/* Writes n's "Authorization: Bearer KEY" to *h (its value in *a) and returns 1; returns 0 and
 * writes nothing when n has no key. */
size_t upstream_auth_header(const struct node *n, struct upstream_auth *a, struct http_header *h);

/* True when requests to n cross a network in clear: a plain http:// URL whose host is not
 * loopback. The HTTP client refuses to send n's key there unless upstream.allow_plain_secrets
 * (DESIGN §10); joins and start-up use this to say so before any request is tried. */
bool upstream_is_plain_beyond_loopback(const struct node *n);

/* The request target of n's health probe. */
struct strv upstream_probe_path(const struct node *n);

/* Fills rq's address (host, port) for n; the rest of rq is left as it is. */
void upstream_address(const struct node *n, struct http_client_request *rq);

/* A call to n's agent with the gateway key (Bearer H) and, with a body, a JSON content type;
 * path is one of NODE_API_PATH_*. GW_E_STATE when n holds no key. The http_client_request
 * contract: the callbacks run only when it returns 0. */
int upstream_agent_call(struct gw *g, const struct node *n, const char *method, const char *path,
                        struct strv body, uint64_t timeout_ms,
                        const struct http_client_callbacks *cbs, void *ctx,
                        struct http_call **out) WUR;

#endif
