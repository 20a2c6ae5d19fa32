/* agent_join — joining the gateway (docs/node_api.md, "Agent → gateway"): POST the join body
 * with the join token at start and then every poll_ms (the gateway's answer wins over the
 * config), keep the issued secret S in the state file and send it on every rejoin. The state
 * file is written atomically (tmp + fsync + rename + fsync of the directory) with mode 0600;
 * H = hex(SHA-256(S)) is what the gateway must present. At most one join call is in flight.
 * The loop thread only (the state file is written synchronously: a few hundred bytes, rarely). */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent.h"
#include "base/json.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/sha256.h"
#include "base/version.h"

enum {
    JOIN_TIMEOUT_MS = 10000,
    JOIN_MAX_ANSWER = 64 * 1024,
    JOIN_MIN_POLL_MS = 100,
    JOIN_MAX_POLL_MS = 3600000,
    STATE_MAX_BYTES = 64 * 1024,
};

void agent_set_secret(struct agent *a, const char *s)
{
    if (!s || !s[0]) {
        a->secret[0] = a->key[0] = '\0';
        return;
    }
    snprintf(a->secret, sizeof a->secret, "%s", s);
    sha256_hex(a->secret, strlen(a->secret), a->key);
}

int agent_state_save(const char *path, const char *name, const char *secret, struct gw_error *err)
{
    struct buf b;
    buf_init(&b, STATE_MAX_BYTES);
    int rc = buf_append_cstr(&b, "{\"name\":");
    if (!rc) rc = json_append_str(&b, name, strlen(name));
    if (!rc) rc = buf_append_cstr(&b, ",\"secret\":");
    if (!rc) rc = json_append_str(&b, secret, strlen(secret));
    if (!rc) rc = buf_append_cstr(&b, "}\n");
    if (rc) {
        buf_free(&b);
        return gw_error_set(err, rc, "%s: state too large", path);
    }
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp) {
        buf_free(&b);
        return gw_error_set(err, GW_E_INVALID, "%s: path too long", path);
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        buf_free(&b);
        return gw_error_set(err, rc, "%s: %s", tmp, strerror(-rc));
    }
    (void)fchmod(fd, 0600); /* an old tmp file may have had other bits */
    size_t off = 0;
    while (off < b.len) {
        ssize_t w = write(fd, b.p + off, b.len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            rc = -errno;
            break;
        }
        off += (size_t)w;
    }
    if (!rc && fsync(fd) != 0) rc = -errno;
    if (close(fd) != 0 && !rc) rc = -errno;
    buf_free(&b);
    if (!rc && rename(tmp, path) != 0) rc = -errno;
    if (rc) {
        (void)unlink(tmp);
        return gw_error_set(err, rc, "%s: %s", path, strerror(-rc));
    }
    /* make the rename itself durable */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return 0;
}

int agent_state_load(const char *path, char secret[NODE_API_SECRET_HEX + 1], struct gw_error *err)
{
    secret[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT) return GW_E_NOTFOUND;
        return gw_error_set(err, -e, "%s: %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && (st.st_mode & 077))
        LOGW("state_file", "path=%s mode=%04o reason=\"readable by others; should be 0600\"", path,
             (unsigned)(st.st_mode & 0777));
    static char buf[STATE_MAX_BYTES];
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    if (n < 0 || (size_t)n >= sizeof buf)
        return gw_error_set(err, GW_E_INVALID, "%s: unreadable or too large", path);
    struct json_object *root = json_parse_strict(buf, (size_t)n, 8, err);
    if (!root) return gw_error_set(err, GW_E_PARSE, "%s: not JSON", path);
    struct strv s;
    int rc = 0;
    if (!json_object_is_type(root, json_type_object) || json_get_str(root, "secret", &s) ||
        !node_api_secret_is_valid(s))
        rc = gw_error_set(err, GW_E_INVALID, "%s: no valid \"secret\"", path);
    else {
        memcpy(secret, s.p, s.len);
        secret[s.len] = '\0';
    }
    json_object_put(root);
    return rc;
}

/* --- the join loop ------------------------------------------------------------------------ */

static void join_tick(uv_timer_t *t);

static void schedule(struct agent *a)
{
    if (a->stopping) return;
    uint64_t ms = a->poll_ms ? a->poll_ms : a->cfg.poll_ms;
    uv_timer_start(&a->join_timer, join_tick, ms, 0);
}

static void set_state(struct agent *a, const char *state)
{
    snprintf(a->join_state, sizeof a->join_state, "%s", state);
}

static void j_head(struct http_call *call, const struct http_response_head *head, void *ctx)
{
    struct agent *a = ctx;
    (void)call;
    a->join_status = head->status;
}

static void j_data(struct http_call *call, const char *p, size_t len, void *ctx)
{
    struct agent *a = ctx;
    (void)call;
    if (buf_append(&a->join_answer, p, len)) a->join_status = -1; /* too large */
}

/* Is body an OpenAI-shaped error {"error":{"code":CODE,…}}? */
static bool error_code_is(struct strv body, const char *code)
{
    struct json_object *root = json_parse_strict(body.p ? body.p : "", body.len, 8, NULL);
    struct json_object *e = NULL;
    struct strv c;
    bool is = root && json_get_obj(root, "error", &e) == 0 && json_get_str(e, "code", &c) == 0 &&
              strv_eq_cstr(c, code);
    if (root) json_object_put(root);
    return is;
}

static void j_done(struct http_call *call, const struct http_call_result *res, void *ctx)
{
    struct agent *a = ctx;
    (void)call;
    a->join_call = NULL;
    char prev[24];
    snprintf(prev, sizeof prev, "%s", a->join_state);
    int st = a->join_status;
    struct strv body = buf_view(&a->join_answer);
    if (res->err || st <= 0) {
        if (strcmp(prev, "unreachable") != 0)
            LOGW("join_failed", "gateway=%s err=%s", a->cfg.gateway,
                 res->err ? gw_strerror(res->err) : "answer too large");
        set_state(a, "unreachable");
    } else if (st == 200) {
        struct node_api_join_answer ans;
        struct gw_error err = {0};
        if (node_api_join_answer_parse(body.p, body.len, &ans, &err)) {
            LOGE("join_failed", "gateway=%s reason=\"bad answer: %s\"", a->cfg.gateway, err.msg);
            set_state(a, "bad_answer");
        } else {
            if (ans.poll_ms)
                a->poll_ms = ans.poll_ms < JOIN_MIN_POLL_MS   ? JOIN_MIN_POLL_MS
                             : ans.poll_ms > JOIN_MAX_POLL_MS ? JOIN_MAX_POLL_MS
                                                              : ans.poll_ms;
            if (ans.secret[0] && strcmp(ans.secret, a->secret) != 0) {
                struct gw_error serr = {0};
                if (agent_state_save(a->cfg.state_file, a->cfg.name, ans.secret, &serr))
                    LOGE("state_save_failed",
                         "reason=\"%s\" note=\"the secret lives in memory "
                         "only; a restart rejoins for a new one\"",
                         serr.msg);
                else
                    LOGI("secret_stored", "path=%s", a->cfg.state_file);
                agent_set_secret(a, ans.secret);
            }
            const char *now = ans.state == NODE_API_JOIN_PENDING ? "pending" : "approved";
            if (strcmp(prev, now) != 0)
                LOGI("join", "gateway=%s name=%s state=%s has_secret=%d poll_ms=%llu",
                     a->cfg.gateway, a->cfg.name, now, a->secret[0] != 0,
                     (unsigned long long)(a->poll_ms ? a->poll_ms : a->cfg.poll_ms));
            set_state(a, now);
        }
    } else if (st == 400 && error_code_is(body, "insecure_node_url")) {
        /* the gateway will not send this node's key over plain http beyond loopback */
        if (strcmp(prev, "refused_insecure") != 0)
            LOGE("join_refused",
                 "gateway=%s name=%s status=400 code=insecure_node_url advertise=%s reason=\"the "
                 "gateway refuses to call a plain http:// agent beyond loopback: serve TLS "
                 "(tls.cert, tls.key) so the agent advertises https://\"",
                 a->cfg.gateway, a->cfg.name, a->advertise);
        set_state(a, "refused_insecure");
    } else if (st == 403 && error_code_is(body, "node_identity_refused")) {
        /* the name is approved and this agent does not hold its secret: nothing it can do
         * by retrying; say so plainly, once per change of state */
        if (strcmp(prev, "refused_403") != 0)
            LOGE("join_refused",
                 "gateway=%s name=%s status=403 code=node_identity_refused reason=\"the gateway "
                 "refused this node's identity: the secret was rejected; an operator must remove "
                 "and re-approve the node\" has_secret=%d state_file=%s",
                 a->cfg.gateway, a->cfg.name, a->secret[0] != 0, a->cfg.state_file);
        set_state(a, "refused_403");
    } else {
        char snippet[200];
        size_t n = body.len < 150 ? body.len : 150;
        log_quote(snippet, sizeof snippet, body.p ? body.p : "", n);
        const char *why = st == 401   ? "wrong or missing join token"
                          : st == 409 ? "the name belongs to a static node of the gateway"
                          : st == 400 ? "the gateway refused the join body"
                                      : "unexpected answer";
        char now[24];
        snprintf(now, sizeof now, "refused_%d", st);
        if (strcmp(prev, now) != 0)
            LOGE("join_refused", "gateway=%s status=%d reason=\"%s\" body=%s", a->cfg.gateway, st,
                 why, snippet);
        set_state(a, now);
    }
    buf_reset(&a->join_answer);
    schedule(a);
}

static void join_tick(uv_timer_t *t)
{
    struct agent *a = t->data;
    if (a->join_call || a->stopping) return;
    struct node_api_join j;
    memset(&j, 0, sizeof j);
    snprintf(j.name, sizeof j.name, "%s", a->cfg.name);
    snprintf(j.url, sizeof j.url, "%s", a->advertise);
    j.engine = a->cfg.engine;
    memcpy(j.labels, a->cfg.labels, sizeof j.labels);
    j.n_labels = a->cfg.n_labels;
    snprintf(j.secret, sizeof j.secret, "%s", a->secret);
    j.has_discovery = true;
    j.discovery = a->disc;
    snprintf(j.agent_version, sizeof j.agent_version, "%s", drover_version());
    struct buf body;
    buf_init(&body, NODE_API_MAX_BODY_BYTES);
    if (node_api_join_emit(&body, &j)) {
        LOGE("join_failed", "reason=\"join body larger than %d bytes\"", NODE_API_MAX_BODY_BYTES);
        buf_free(&body);
        schedule(a);
        return;
    }
    char auth[1100];
    snprintf(auth, sizeof auth, "Bearer %s", a->cfg.join_token);
    struct http_header h[2] = {
        {STRV_LIT("Content-Type"), STRV_LIT("application/json")},
        {STRV_LIT("Authorization"), strv_from_cstr(auth)},
    };
    struct http_client_request req = {
        .host = a->gw_host,
        .port = a->gw_port,
        .method = STRV_LIT("POST"),
        .target = STRV_LIT(NODE_API_PATH_JOIN),
        .headers = h,
        .n_headers = 2,
        .body = buf_view(&body),
        .connect_timeout_ms = JOIN_TIMEOUT_MS,
        .first_byte_timeout_ms = JOIN_TIMEOUT_MS,
        .total_timeout_ms = JOIN_TIMEOUT_MS,
        .tls = a->gw_tls,
        .tls_name = a->gw_tls ? a->gw_tls_name : NULL,
    };
    a->join_status = 0;
    buf_reset(&a->join_answer);
    static const struct http_client_callbacks cbs = {j_head, j_data, j_done};
    int rc = http_client_request(a->client, &req, &cbs, a, &a->join_call);
    buf_free(&body);
    if (rc) {
        a->join_call = NULL;
        LOGW("join_failed", "gateway=%s err=%s", a->cfg.gateway, gw_strerror(rc));
        schedule(a);
    }
}

/* http_client takes numeric addresses: resolve a name once, at start. */
static int resolve(char *host, size_t cap, struct gw_error *err)
{
    if (strcmp(host, "localhost") == 0) return 0;
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, NULL, &hints, &res) == 0) {
        freeaddrinfo(res);
        return 0;
    }
    hints.ai_flags = 0;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0 || !res)
        return gw_error_set(err, GW_E_INVALID, "gateway: cannot resolve '%s': %s", host,
                            gai_strerror(rc));
    char num[NI_MAXHOST];
    rc = getnameinfo(res->ai_addr, res->ai_addrlen, num, sizeof num, NULL, 0, NI_NUMERICHOST);
    freeaddrinfo(res);
    if (rc != 0) return gw_error_set(err, GW_E_INVALID, "gateway: cannot resolve '%s'", host);
    size_t n = strlen(num);
    if (n >= cap) return gw_error_set(err, GW_E_INVALID, "gateway: address of '%s' too long", host);
    memcpy(host, num, n + 1);
    return 0;
}

int agent_join_start(struct agent *a, struct gw_error *err)
{
    uv_timer_init(a->loop, &a->join_timer);
    a->join_timer.data = a;
    buf_init(&a->join_answer, JOIN_MAX_ANSWER);
    if (!a->cfg.gateway) return 0;
    int rc = agent_engine_parse_base_url(a->cfg.gateway, a->gw_host, sizeof a->gw_host, &a->gw_port,
                                         &a->gw_tls, err);
    if (rc) return rc;
    snprintf(a->gw_tls_name, sizeof a->gw_tls_name, "%s", a->gw_host);
    if ((rc = resolve(a->gw_host, sizeof a->gw_host, err))) return rc;
    uv_timer_start(&a->join_timer, join_tick, 0, 0);
    return 0;
}

void agent_join_stop(struct agent *a)
{
    uv_timer_stop(&a->join_timer);
    if (a->join_call) http_call_cancel(a->join_call);
    a->join_call = NULL;
    buf_free(&a->join_answer);
    if (!uv_is_closing((uv_handle_t *)&a->join_timer))
        uv_close((uv_handle_t *)&a->join_timer, NULL);
}
