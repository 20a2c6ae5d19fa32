/* upstream — the one place that says how the gateway reaches a node (see upstream.h): address,
 * credentials, probe path, agent calls. It keeps no state. The loop thread only. */
#include "gw/upstream.h"

#include <stdio.h>

#include "gw/gw.h"
#include "proto/node_api.h"

size_t upstream_auth_header(const struct node *n, struct upstream_auth *a, struct http_header *h)
{
    if (!n->api_key) return 0;
    snprintf(a->value, sizeof a->value, "Bearer %s", n->api_key);
    *h = (struct http_header){STRV_LIT("Authorization"), strv_from_cstr(a->value)};
    return 1;
}

bool upstream_is_plain_beyond_loopback(const struct node *n)
{
    return !n->tls && !http_host_is_loopback(n->host);
}

struct strv upstream_probe_path(const struct node *n)
{
    return n->via_agent ? STRV_LIT(NODE_API_PATH_HEALTH)
                        : strv_from_cstr(node_api_models_path(n->kind));
}

void upstream_address(const struct node *n, struct http_client_request *rq)
{
    rq->host = n->host;
    rq->port = n->port;
    rq->tls = n->tls;
}

int upstream_agent_call(struct gw *g, const struct node *n, const char *method, const char *path,
                        struct strv body, uint64_t timeout_ms,
                        const struct http_client_callbacks *cbs, void *ctx, struct http_call **out)
{
    struct upstream_auth auth;
    struct http_header hdrs[2];
    size_t nh = upstream_auth_header(n, &auth, &hdrs[0]);
    if (!nh) return GW_E_STATE;
    if (body.len)
        hdrs[nh++] = (struct http_header){STRV_LIT("Content-Type"), STRV_LIT("application/json")};
    struct http_client_request rq = {
        .method = strv_from_cstr(method),
        .target = strv_from_cstr(path),
        .headers = hdrs,
        .n_headers = nh,
        .body = body,
        .connect_timeout_ms = g->cfg.connect_timeout_ms,
        .total_timeout_ms = timeout_ms,
    };
    upstream_address(n, &rq);
    return http_client_request(g->client, &rq, cbs, ctx, out);
}
