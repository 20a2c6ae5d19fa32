/* join — `POST /drover/v1/nodes/join` on the client listener (docs/node_api.md). An agent
 * with the join token asks to join; a new node is pending (or approved at once with
 * join.auto_approve), a known one keeps its admin intent: a pending node never becomes
 * approved by rejoining, and a join for an approved (or draining) name without that node's
 * secret is refused (403 node_identity_refused) and changes nothing. The secret is returned once;
 * the gateway keeps only its SHA-256. The answer is sent after the row is committed. Bad bodies get
 * 400 with the field named and store nothing. The loop thread only. */
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "base/json.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/sha256.h"
#include "gw/errors_http.h"
#include "gw/gw.h"
#include "gw/api.h"
#include "gw/health.h"
#include "gw/join.h"
#include "gw/nodes.h"
#include "gw/upstream.h"
#include "proto/node_api.h"

static void join_apply(struct gw *g, struct http_request *req, struct node_api_join *jr);

/* admin.c's label checks: the join's, from proto. */
bool gw_label_key_is_valid(struct strv s)
{
    return node_api_label_key_is_valid(s);
}

bool gw_label_value_is_valid(struct strv s)
{
    return node_api_label_value_is_valid(s);
}

/* The discovery a join carried, as the gateway keeps it: proto's own shape (what the agent
 * emitted, minus nothing it knows), owned; NULL without one. */
static char *discovery_text(const struct node_api_join *jr)
{
    if (!jr->has_discovery) return NULL;
    struct buf b;
    buf_init(&b, NODE_API_MAX_BODY_BYTES);
    if (node_api_discovery_emit(&b, &jr->discovery)) {
        buf_free(&b);
        return NULL;
    }
    size_t len;
    return buf_take(&b, &len);
}

static enum node_api_join_state join_state(enum node_admin a)
{
    return a == ADMIN_PENDING    ? NODE_API_JOIN_PENDING
           : a == ADMIN_DRAINING ? NODE_API_JOIN_DRAINING
                                 : NODE_API_JOIN_APPROVED;
}

/* Issues a new secret for n: returns it in out (plain) and keeps only its hash. */
static int issue_secret(struct node *n, char out[65])
{
    if (random_secret_hex(out)) return GW_E_STATE;
    char h[65];
    sha256_hex(out, 64, h);
    registry_set_str(&n->secret_hash, h);
    registry_set_str(&n->api_key, h); /* the gateway key H: what we send to the agent */
    return 0;
}

static void fresh_agent_state(struct gw *g, struct node *n)
{
    registry_reset_liveness(&g->reg, n, "joined from scratch");
}

void join_handle(struct gw *g, struct http_request *req)
{
    if (!strv_eq_cstr(req->method, "POST"))
        return gw_reply_error(req, 405, "method_not_allowed", NULL, "use POST");
    if (!http_request_is_private(req))
        return gw_reply_error(req, 403, "insecure_transport", NULL,
                              "the join answer carries a node secret: use the TLS listener "
                              "(tls.cert) or loopback");
    if (!g->cfg.join_token)
        return gw_reply_error(req, 403, "joining_disabled", NULL,
                              "joining is off: the gateway has no join.token");
    if (!gw_bearer_matches(req, g->cfg.join_token)) {
        LOGW("join_refused", "peer=%s reason=\"wrong or missing join token\"", req->peer);
        return gw_reply_error(req, 401, "invalid_join_token", NULL, "missing or wrong join token");
    }
    struct gw_error jerr = {0};
    struct node_api_join *jr = xmalloc(sizeof *jr); /* ~50 KiB: not on the loop's stack */
    char param[NODE_API_MAX_PARAM];
    int prc = node_api_join_parse(req->body.p, req->body.len, jr, param, &jerr);
    if (prc == GW_E_PARSE) {
        xfree(jr);
        char msg[300];
        snprintf(msg, sizeof msg, "the body is not valid JSON: %s", jerr.msg);
        return gw_reply_error(req, 400, "invalid_json", NULL, msg);
    }
    if (prc) {
        xfree(jr);
        return gw_reply_error(req, 400, "invalid_join", param[0] ? param : NULL, jerr.msg);
    }
    join_apply(g, req, jr);
    xfree(jr);
}

/* Applies a well-formed join (jr borrowed) and answers it. */
static void join_apply(struct gw *g, struct http_request *req, struct node_api_join *jr)
{
    const char *name = jr->name, *url = jr->url;
    struct node *n = registry_find(&g->reg, strv_from_cstr(name));
    if (n && n->from_config) {
        return gw_reply_error(req, 409, "name_taken", "name",
                              "the name belongs to a node of the config file");
    }
    /* Validate the URL before touching anything. */
    {
        struct registry scratch;
        registry_init(&scratch, NULL);
        struct node *tmp = NULL;
        int bad = registry_add(&scratch, name, url, jr->engine, NULL, &tmp, NULL);
        bool in_clear = !bad && upstream_is_plain_beyond_loopback(tmp);
        registry_free(&scratch);
        if (bad) {
            return gw_reply_error(req, 400, "invalid_join", "url",
                                  "'url' must look like http://10.0.0.5:9300");
        }
        /* Every call to an agent carries its key H: a plain URL beyond loopback would put it
         * on the network in clear, and the HTTP client would refuse each call (DESIGN §10).
         * Say so to the agent now rather than keep a node that can never be reached. */
        if (in_clear && !g->cfg.upstream_allow_plain_secrets) {
            LOGW("join_refused",
                 "node=%s peer=%s url=%s reason=\"plain http to a non-loopback agent\"", name,
                 req->peer, url);
            return gw_reply_error(req, 400, "insecure_node_url", "url",
                                  "the gateway would send this node's key over plain http to a "
                                  "non-loopback address: serve TLS on the agent (tls.cert, "
                                  "tls.key) so it advertises https://, or set "
                                  "upstream.allow_plain_secrets: true on the gateway (a private "
                                  "network)");
        }
    }
    /* An approved identity (name, URL, engine) changes only when the agent proves the node's
     * secret; the join token alone never takes it over (DESIGN §3). Refusing, not sending the
     * node back to pending, keeps the real node serving: a pending copy would take it out of
     * service for anyone holding the join token. */
    if (n && (n->admin == ADMIN_APPROVED || n->admin == ADMIN_DRAINING)) {
        const char *refusal = NULL;
        if (n->secret_hash) {
            char h[65] = "";
            if (jr->secret[0]) sha256_hex(jr->secret, NODE_API_SECRET_HEX, h);
            if (!jr->secret[0])
                refusal = "no secret for an approved node";
            else if (!secret_equal(h, n->secret_hash))
                refusal = "wrong secret for an approved node";
        } else if (strcmp(n->url, url) != 0 || n->kind != jr->engine) {
            /* approved, secret not issued yet: only the address the operator approved gets it */
            refusal = "the node was approved at another url or engine and has no secret yet";
        }
        if (refusal) {
            LOGW("node_identity_refused", "node=%s peer=%s url=%s known_url=%s reason=\"%s\"",
                 n->name, req->peer, url, n->url, refusal);
            return gw_reply_error(req, 403, "node_identity_refused", "secret",
                                  "this name belongs to an approved node: present its secret, or "
                                  "have an admin remove the node so it can join again");
        }
    }
    bool created = false;
    if (!n) {
        if (registry_add(&g->reg, name, url, jr->engine, NULL, &n, NULL)) {
            return gw_reply_error(req, 500, "internal_error", NULL, "could not add the node");
        }
        n->via_agent = true;
        n->created_ms = (int64_t)clock_wall_ms();
        created = true;
    } else if (n->admin == ADMIN_REMOVED) {
        /* A removed machine that comes back asks again, from scratch. */
        fresh_agent_state(g, n);
        n->via_agent = true;
        n->created_ms = (int64_t)clock_wall_ms();
        created = true;
    }
    if (created) {
        registry_set_admin(&g->reg, n, g->cfg.auto_approve ? ADMIN_APPROVED : ADMIN_PENDING,
                           g->cfg.auto_approve ? "joined (auto_approve)" : "joined");
        /* the agent's labels seed a new node; after that the operator owns them */
        registry_clear_labels(n);
        for (size_t i = 0; i < jr->n_labels; i++)
            registry_set_label(n, jr->labels[i].key, jr->labels[i].value);
        LOGI("node_joined", "node=%s url=%s engine=%s state=%s", n->name, url,
             node_kind_name(jr->engine), node_admin_name(n->admin));
    }
    if (strcmp(n->url, url) != 0) {
        LOGI("node_moved", "node=%s from=%s to=%s", n->name, n->url, url);
        if (registry_set_url(n, url) == 0) fresh_agent_state(g, n);
    }
    n->kind = jr->engine;
    n->joined_ms = (int64_t)clock_wall_ms();
    char *disc = discovery_text(jr);
    registry_set_str(&n->discovery_json, disc);
    xfree(disc);
    registry_set_facts_from_discovery(n, n->discovery_json);
    registry_generation++; /* a node joined or changed: infeasible models may fit now */
    if (jr->agent_version[0]) registry_set_str(&n->agent_version, jr->agent_version);
    char presented[65] = "";
    snprintf(presented, sizeof presented, "%s", jr->secret);
    memset(jr->secret, 0, sizeof jr->secret);

    char secret[65] = "";
    bool issued = false;
    if (n->admin == ADMIN_APPROVED || n->admin == ADMIN_DRAINING) {
        char h[65] = "";
        if (presented[0]) sha256_hex(presented, 64, h);
        memset(presented, 0, sizeof presented);
        if (!n->secret_hash || !secret_equal(h, n->secret_hash)) {
            if (issue_secret(n, secret)) {
                return gw_reply_error(req, 500, "internal_error", NULL,
                                      "could not make a node secret");
            }
            issued = true;
            LOGI("node_secret_issued", "node=%s", n->name);
        }
    }
    struct node_api_join_answer ans = {.state = join_state(n->admin),
                                       .poll_ms = g->cfg.agent_poll_ms};
    snprintf(ans.name, sizeof ans.name, "%s", n->name);
    if (issued) snprintf(ans.secret, sizeof ans.secret, "%s", secret);
    struct buf b;
    buf_init(&b, 4096);
    int rc = node_api_join_answer_emit(&b, &ans);
    memset(secret, 0, sizeof secret);
    memset(ans.secret, 0, sizeof ans.secret);
    if (rc) {
        buf_free(&b);
        return gw_reply_error(req, 500, "internal_error", NULL, "answer too large");
    }
    health_attach(g, n);
    if (n->admin == ADMIN_APPROVED && (issued || created)) health_probe_now(g, n);
    nodes_persist_reply(g, n, req, 200, &b);
}
