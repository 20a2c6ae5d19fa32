/* join — `POST /drover/v1/nodes/join` on the client listener (docs/node_api.md). An agent
 * with the join token asks to join; a new node is pending (or approved at once with
 * join.auto_approve), a known one keeps its admin intent: a pending node never becomes
 * approved by rejoining, and a join for an approved (or draining) name without that node's
 * secret is refused (403 node_identity_refused) and changes nothing. The secret is returned once;
 * the gateway keeps only its SHA-256. The answer is sent after the row is committed. Bad bodies get
 * 400 with the field named and store nothing. The loop thread only. */
#include <stdio.h>
#include <string.h>
#include <time.h>

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

enum {
    JOIN_MAX_NAME = 63,
    JOIN_MAX_URL = 255,
    JOIN_MAX_LABELS = 32,
    JOIN_MAX_LABEL_KEY = 63,
    JOIN_MAX_LABEL_VALUE = 255,
    JOIN_MAX_DISCOVERY_BYTES = 64 * 1024,
    JOIN_MAX_VERSION = 64,
    JOIN_MAX_DEPTH = 8,
};

struct join_req {
    struct strv name, url, engine, secret, version;
    enum node_kind kind;
    struct json_object *labels;    /* borrowed from the parse, may be NULL */
    struct json_object *discovery; /* borrowed, may be NULL */
};

bool gw_name_is_valid(struct strv s)
{
    if (s.len == 0 || s.len > JOIN_MAX_NAME) return false;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.p[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok) return false;
    }
    return true;
}

bool gw_label_key_is_valid(struct strv s)
{
    if (s.len == 0 || s.len > JOIN_MAX_LABEL_KEY) return false;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.p[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-' || c == '/';
        if (!ok) return false;
    }
    return true;
}

bool gw_label_value_is_valid(struct strv s)
{
    if (s.len > JOIN_MAX_LABEL_VALUE) return false;
    for (size_t i = 0; i < s.len; i++)
        if ((unsigned char)s.p[i] < 0x20) return false;
    return true;
}

static bool is_hex64(struct strv s)
{
    if (s.len != 64) return false;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.p[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    return true;
}

/* Fills jr from root; on a bad field returns -1 with *param and *why set. */
static int parse_join(struct json_object *root, struct join_req *jr, const char **param,
                      const char **why)
{
    memset(jr, 0, sizeof *jr);
    if (!json_object_is_type(root, json_type_object)) {
        *param = NULL, *why = "the body must be a JSON object";
        return -1;
    }
    static const char *const known[] = {"name",   "url",       "engine",       "labels",
                                        "secret", "discovery", "agent_version"};
    json_object_object_foreach(root, key, val)
    {
        (void)val;
        bool ok = false;
        for (size_t i = 0; i < sizeof known / sizeof known[0] && !ok; i++)
            ok = strcmp(key, known[i]) == 0;
        if (!ok) {
            *param = key, *why = "unknown field";
            return -1;
        }
    }
    if (json_get_str(root, "name", &jr->name) || !gw_name_is_valid(jr->name)) {
        *param = "name", *why = "'name' must be 1-63 characters of A-Z a-z 0-9 . _ -";
        return -1;
    }
    if (json_get_str(root, "url", &jr->url) || jr->url.len > JOIN_MAX_URL) {
        *param = "url", *why = "'url' must be a string like http://10.0.0.5:9300";
        return -1;
    }
    char kind[16];
    if (json_get_str(root, "engine", &jr->engine) || jr->engine.len >= sizeof kind) {
        *param = "engine", *why = "'engine' must be one of llamacpp, ollama, vllm, openai";
        return -1;
    }
    memcpy(kind, jr->engine.p, jr->engine.len);
    kind[jr->engine.len] = '\0';
    if (node_kind_parse(kind, &jr->kind)) {
        *param = "engine", *why = "'engine' must be one of llamacpp, ollama, vllm, openai";
        return -1;
    }
    struct json_object *v = NULL;
    if (json_object_object_get_ex(root, "labels", &v) && v &&
        !json_object_is_type(v, json_type_null)) {
        if (!json_object_is_type(v, json_type_object)) {
            *param = "labels", *why = "'labels' must be an object of strings";
            return -1;
        }
        if (json_object_object_length(v) > JOIN_MAX_LABELS) {
            *param = "labels", *why = "at most 32 labels";
            return -1;
        }
        json_object_object_foreach(v, lk, lv)
        {
            struct strv k = strv_from_cstr(lk);
            if (!gw_label_key_is_valid(k) || !json_object_is_type(lv, json_type_string) ||
                !gw_label_value_is_valid((struct strv){json_object_get_string(lv),
                                                       (size_t)json_object_get_string_len(lv)})) {
                *param = "labels",
                *why = "label keys are 1-63 of A-Z a-z 0-9 . _ - /, values strings of at "
                       "most 255 printable bytes";
                return -1;
            }
        }
        jr->labels = v;
    }
    v = NULL;
    if (json_object_object_get_ex(root, "secret", &v) && v &&
        !json_object_is_type(v, json_type_null)) {
        if (json_get_str(root, "secret", &jr->secret) || !is_hex64(jr->secret)) {
            *param = "secret", *why = "'secret' must be 64 lowercase hex characters";
            return -1;
        }
    }
    v = NULL;
    if (json_object_object_get_ex(root, "discovery", &v) && v &&
        !json_object_is_type(v, json_type_null)) {
        if (!json_object_is_type(v, json_type_object) ||
            strlen(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN)) >
                JOIN_MAX_DISCOVERY_BYTES) {
            *param = "discovery", *why = "'discovery' must be an object of at most 64 KiB";
            return -1;
        }
        jr->discovery = v;
    }
    v = NULL;
    if (json_object_object_get_ex(root, "agent_version", &v) && v &&
        !json_object_is_type(v, json_type_null)) {
        if (json_get_str(root, "agent_version", &jr->version) ||
            jr->version.len > JOIN_MAX_VERSION) {
            *param = "agent_version", *why = "'agent_version' must be a short string";
            return -1;
        }
    }
    return 0;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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
    struct json_object *root = json_parse_strict(req->body.p, req->body.len, JOIN_MAX_DEPTH, &jerr);
    if (!root) {
        char msg[300];
        snprintf(msg, sizeof msg, "the body is not valid JSON: %s", jerr.msg);
        return gw_reply_error(req, 400, "invalid_json", NULL, msg);
    }
    struct join_req jr;
    const char *param = NULL, *why = NULL;
    char url[JOIN_MAX_URL + 1], name[JOIN_MAX_NAME + 1];
    if (parse_join(root, &jr, &param, &why)) {
        gw_reply_error(req, 400, "invalid_join", param, why);
        json_object_put(root);
        return;
    }
    memcpy(url, jr.url.p, jr.url.len);
    url[jr.url.len] = '\0';
    memcpy(name, jr.name.p, jr.name.len);
    name[jr.name.len] = '\0';

    struct node *n = registry_find(&g->reg, jr.name);
    if (n && n->from_config) {
        json_object_put(root);
        return gw_reply_error(req, 409, "name_taken", "name",
                              "the name belongs to a node of the config file");
    }
    /* Validate the URL before touching anything. */
    {
        struct registry scratch;
        registry_init(&scratch, NULL);
        struct node *tmp = NULL;
        int bad = registry_add(&scratch, name, url, jr.kind, NULL, &tmp, NULL);
        registry_free(&scratch);
        if (bad) {
            json_object_put(root);
            return gw_reply_error(req, 400, "invalid_join", "url",
                                  "'url' must look like http://10.0.0.5:9300");
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
            if (jr.secret.len == 64) sha256_hex(jr.secret.p, 64, h);
            if (!jr.secret.len)
                refusal = "no secret for an approved node";
            else if (!secret_equal(h, n->secret_hash))
                refusal = "wrong secret for an approved node";
        } else if (strcmp(n->url, url) != 0 || n->kind != jr.kind) {
            /* approved, secret not issued yet: only the address the operator approved gets it */
            refusal = "the node was approved at another url or engine and has no secret yet";
        }
        if (refusal) {
            LOGW("node_identity_refused", "node=%s peer=%s url=%s known_url=%s reason=\"%s\"",
                 n->name, req->peer, url, n->url, refusal);
            json_object_put(root);
            return gw_reply_error(req, 403, "node_identity_refused", "secret",
                                  "this name belongs to an approved node: present its secret, or "
                                  "have an admin remove the node so it can join again");
        }
    }
    bool created = false;
    if (!n) {
        if (registry_add(&g->reg, name, url, jr.kind, NULL, &n, NULL)) {
            json_object_put(root);
            return gw_reply_error(req, 500, "internal_error", NULL, "could not add the node");
        }
        n->via_agent = true;
        n->created_ms = wall_ms();
        created = true;
    } else if (n->admin == ADMIN_REMOVED) {
        /* A removed machine that comes back asks again, from scratch. */
        fresh_agent_state(g, n);
        n->via_agent = true;
        n->created_ms = wall_ms();
        created = true;
    }
    if (created) {
        registry_set_admin(&g->reg, n, g->cfg.auto_approve ? ADMIN_APPROVED : ADMIN_PENDING,
                           g->cfg.auto_approve ? "joined (auto_approve)" : "joined");
        /* the agent's labels seed a new node; after that the operator owns them */
        registry_clear_labels(n);
        if (jr.labels) {
            json_object_object_foreach(jr.labels, lk, lv)
                registry_set_label(n, lk, json_object_get_string(lv));
        }
        LOGI("node_joined", "node=%s url=%s engine=%s state=%s", n->name, url,
             node_kind_name(jr.kind), node_admin_name(n->admin));
    }
    if (strcmp(n->url, url) != 0) {
        LOGI("node_moved", "node=%s from=%s to=%s", n->name, n->url, url);
        if (registry_set_url(n, url) == 0) fresh_agent_state(g, n);
    }
    n->kind = jr.kind;
    n->joined_ms = wall_ms();
    registry_set_str(
        &n->discovery_json,
        jr.discovery ? json_object_to_json_string_ext(jr.discovery, JSON_C_TO_STRING_PLAIN) : NULL);
    registry_set_facts_from_discovery(n, n->discovery_json);
    registry_generation++; /* a node joined or changed: infeasible models may fit now */
    if (jr.version.len) {
        char ver[JOIN_MAX_VERSION + 1];
        memcpy(ver, jr.version.p, jr.version.len);
        ver[jr.version.len] = '\0';
        registry_set_str(&n->agent_version, ver);
    }
    char presented[65] = "";
    if (jr.secret.len == 64) {
        memcpy(presented, jr.secret.p, 64);
        presented[64] = '\0';
    }
    json_object_put(root); /* jr's views die here */

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
    struct buf b;
    buf_init(&b, 4096);
    int rc = buf_append_cstr(&b, "{\"name\":");
    if (!rc) rc = json_append_str(&b, n->name, strlen(n->name));
    if (!rc)
        rc = buf_appendf(&b, ",\"state\":\"%s\",\"poll_ms\":%llu",
                         n->admin == ADMIN_PENDING ? "pending" : node_admin_name(n->admin),
                         (unsigned long long)g->cfg.agent_poll_ms);
    if (!rc && issued) rc = buf_appendf(&b, ",\"secret\":\"%s\"", secret);
    if (!rc) rc = buf_append_cstr(&b, "}");
    memset(secret, 0, sizeof secret);
    if (rc) {
        buf_free(&b);
        return gw_reply_error(req, 500, "internal_error", NULL, "answer too large");
    }
    health_attach(g, n);
    if (n->admin == ADMIN_APPROVED && (issued || created)) health_probe_now(g, n);
    nodes_persist_reply(g, n, req, 200, &b);
}
