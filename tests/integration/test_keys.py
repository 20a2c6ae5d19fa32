"""test_keys — client keys, admin roles, usage and the audit log (docs/security.md, DESIGN §10)
with a real `drover serve` in front of a `drover sim` node. Loopback only; readiness lines,
never sleeps; every process ended by its pid.
"""
import json
import os
import subprocess
import sys
import threading

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from harness import DROVER, Proc, log_text, request, start_sim, wait_until  # noqa: E402

OPERATOR = "operator-token-0123456789"
VIEWER = "viewer-token-0123456789"
LEGACY = "legacy-api-key-0123456789"
LLAMA = "llama-3-8b"
MISTRAL = "mistral-7b"

@pytest.fixture(scope="module")
def sim():
    s = start_sim("--model", LLAMA, "--model", MISTRAL, "--tokens-per-second", "0")
    yield s
    s.stop()


def start_gw(sim, tmp_path, db=None, extra=()):
    cfg = tmp_path / "drover.yaml"
    cfg.write_text("admin_token: %s\n"
                   "admin_tokens:\n"
                   "  - {id: alice, token: %s, role: viewer}\n" % (OPERATOR, VIEWER))
    env = {"DROVER_STORE_PATH": str(db)} if db else None
    gw = Proc(["serve", "--config", str(cfg), "--listen", "127.0.0.1:0",
               "--admin-listen", "127.0.0.1:0", "--set", "health.interval=100ms",
               "--set", "health.rise=1", "--set", "usage.flush_interval=100ms",
               "--node", "n0=http://127.0.0.1:%d" % sim.port] + list(extra),
              "drover-serve ready", env=env)
    gw.port = int(gw.fields["listen"].rsplit(":", 1)[1])
    gw.admin = int(gw.fields["admin"].rsplit(":", 1)[1])
    wait_until(None, "node routable",
               lambda: admin(gw, "GET", "/admin/v1/nodes")[1]["nodes"][0]["routable"])
    return gw


@pytest.fixture
def gw(sim, tmp_path):
    g = start_gw(sim, tmp_path)
    yield g
    g.stop()


def admin(gw, method, path, body=None, token=OPERATOR):
    h = {"Authorization": "Bearer " + token} if token else {}
    st, hdrs, data = request(gw.admin, method, path, body=body, headers=h)
    try:
        return st, json.loads(data)
    except ValueError:
        return st, {}


def create(gw, **spec):
    spec.setdefault("name", "k")
    st, body = admin(gw, "POST", "/admin/v1/keys", spec)
    assert st == 201, body
    return body["key"]["id"], body["secret"]


def chat(gw, secret, model=LLAMA):
    h = {"Authorization": "Bearer " + secret} if secret else {}
    body = {"model": model, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
    st, hdrs, data = request(gw.port, "POST", "/v1/chat/completions", body=body, headers=h)
    try:
        return st, hdrs, json.loads(data)
    except ValueError:
        return st, hdrs, {}


def models(gw, secret):
    st, _, data = request(gw.port, "GET", "/v1/models",
                          headers={"Authorization": "Bearer " + secret})
    return st, json.loads(data)


def test_create_use_and_wrong_key(gw):
    kid, secret = create(gw, name="team-a", owner="bob", models=["llama-*"])
    assert secret.startswith("dk-") and len(secret) == 43
    st, _, body = chat(gw, secret)
    assert st == 200, body
    st, _, body = chat(gw, "dk-not-a-key-0123456789")
    assert st == 401
    assert body["error"]["code"] == "invalid_api_key"
    assert body["error"]["message"].startswith("Incorrect API key provided: dk-no***")
    assert "0123456789" not in body["error"]["message"]
    st, _, body = chat(gw, None)
    assert st == 401 and body["error"]["code"] == "invalid_api_key"
    # the listing never shows the secret, only its prefix
    st, body = admin(gw, "GET", "/admin/v1/keys")
    assert st == 200
    assert secret not in json.dumps(body)
    assert body["keys"][0]["prefix"] == secret[:8]
    assert body["keys"][0]["spec"]["owner"] == "bob"


def test_models_lists_only_the_keys_globs(gw):
    _, secret = create(gw, models=["llama-*"])
    st, body = models(gw, secret)
    assert st == 200
    ids = {m["id"] for m in body["data"]}
    assert LLAMA in ids and MISTRAL not in ids
    _, every = create(gw, name="all")
    ids = {m["id"] for m in models(gw, every)[1]["data"]}
    assert {LLAMA, MISTRAL} <= ids


def test_model_outside_globs_is_403(gw):
    _, secret = create(gw, models=["llama-*"])
    st, _, body = chat(gw, secret, MISTRAL)
    assert st == 403, body
    assert body["error"]["code"] == "model_not_found"
    assert MISTRAL in body["error"]["message"]
    assert chat(gw, secret, LLAMA)[0] == 200


def test_rpm_third_request_is_429_with_headers(gw):
    _, secret = create(gw, rpm=2, tpm=100000)
    for i in range(2):
        st, h, body = chat(gw, secret)
        assert st == 200, body
        assert h["x-ratelimit-limit-requests"] == "2"
        assert h["x-ratelimit-remaining-requests"] == str(1 - i)
        assert "x-ratelimit-reset-requests" in h and "x-ratelimit-limit-tokens" in h
    st, h, body = chat(gw, secret)
    assert st == 429, body
    assert body["error"]["code"] == "rate_limit_exceeded"
    assert body["error"]["type"] == "requests"
    assert 1 <= int(h["retry-after"]) <= 60
    assert h["x-ratelimit-limit-requests"] == "2"
    assert h["x-ratelimit-remaining-requests"] == "0"
    assert h["x-ratelimit-reset-requests"].endswith("s")


def test_usage_counts_requests_and_tokens(gw):
    kid, secret = create(gw)
    for _ in range(3):
        assert chat(gw, secret)[0] == 200
    assert chat(gw, secret, "no-such-model")[0] == 404

    def rows():
        st, body = admin(gw, "GET", "/admin/v1/usage?group_by=key&key=" + kid)
        assert st == 200, body
        r = body["rows"]
        return r if r and r[0]["requests"] == 4 else None

    r = wait_until(None, "usage flushed", rows)[0]
    assert r["key"] == kid and r["errors"] == 1
    assert r["prompt_tokens"] > 0 and r["completion_tokens"] > 0
    st, body = admin(gw, "GET", "/admin/v1/usage?group_by=model&key=" + kid)
    assert {x["model"] for x in body["rows"]} >= {LLAMA}
    st, body = admin(gw, "GET", "/admin/v1/usage?group_by=node&key=" + kid)
    assert "n0" in {x["node"] for x in body["rows"]}
    st, _, text = request(gw.admin, "GET", "/metrics",
                          headers={"Authorization": "Bearer " + OPERATOR})
    assert ('drover_key_requests_total{key="%s",model="%s"} 3' % (kid, LLAMA)).encode() in text


def test_revoke_takes_effect_at_once(gw):
    kid, secret = create(gw)
    assert models(gw, secret)[0] == 200
    assert chat(gw, secret)[0] == 200
    st, body = admin(gw, "POST", "/admin/v1/keys/%s/revoke" % kid)
    assert st == 200 and body["status"] == "revoked"
    assert chat(gw, secret)[0] == 401
    assert models(gw, secret)[0] == 401
    assert admin(gw, "GET", "/admin/v1/keys/" + kid)[0] == 404
    # revoking the last key never opens the API
    assert chat(gw, None)[0] == 401


def test_rotate_old_secret_stops_new_works(gw):
    kid, old = create(gw, rpm=100)
    st, body = admin(gw, "POST", "/admin/v1/keys/%s/rotate" % kid)
    assert st == 200, body
    new = body["secret"]
    assert new != old and body["key"]["id"] == kid
    assert body["key"]["spec"]["rpm"] == 100
    assert chat(gw, old)[0] == 401
    assert chat(gw, new)[0] == 200


def test_update_limits(gw):
    kid, secret = create(gw, models=["llama-*"])
    st, body = admin(gw, "PATCH", "/admin/v1/keys/" + kid, {"models": ["mistral-*"], "rpm": 5})
    assert st == 200, body
    assert body["spec"]["rpm"] == 5
    ids = {m["id"] for m in models(gw, secret)[1]["data"]}
    assert MISTRAL in ids and LLAMA not in ids
    st, body = admin(gw, "PATCH", "/admin/v1/keys/" + kid, {"rpm": -1})
    assert st == 400 and body["error"]["code"] == "invalid_key_spec"
    st, body = admin(gw, "POST", "/admin/v1/keys", {"name": "x", "bogus": 1})
    assert st == 400 and "bogus" in body["error"]["message"]


def test_viewer_reads_but_cannot_write(gw):
    kid, _ = create(gw)
    st, body = admin(gw, "GET", "/admin/v1/keys", token=VIEWER)
    assert st == 200 and body["keys"]
    assert admin(gw, "GET", "/admin/v1/nodes", token=VIEWER)[0] == 200
    for method, path, body in (("POST", "/admin/v1/keys", {"name": "v"}),
                               ("POST", "/admin/v1/keys/%s/revoke" % kid, None),
                               ("DELETE", "/admin/v1/keys/" + kid, None),
                               ("POST", "/admin/v1/nodes/n0/drain", None)):
        st, b = admin(gw, method, path, body, token=VIEWER)
        assert st == 403, (method, path, b)
        assert b["error"]["code"] == "permission_denied"
    assert admin(gw, "GET", "/admin/v1/keys/" + kid)[1]["status"] == "active"
    assert admin(gw, "GET", "/admin/v1/keys", token="wrong-token-0123456789")[0] == 401
    assert admin(gw, "GET", "/admin/v1/keys", token=None)[0] == 401


def test_audit_lists_the_writes(gw):
    kid, _ = create(gw, name="audited")
    admin(gw, "POST", "/admin/v1/keys/%s/rotate" % kid)
    admin(gw, "POST", "/admin/v1/keys", {"name": "refused"}, token=VIEWER)  # 403: not a write
    st, body = admin(gw, "GET", "/admin/v1/audit", token=VIEWER)
    assert st == 200
    entries = body["entries"]
    assert [(e["method"], e["path"]) for e in entries[:2]] == [
        ("POST", "/admin/v1/keys/%s/rotate" % kid), ("POST", "/admin/v1/keys")]
    for e in entries[:2]:
        assert e["actor"] == "admin_token" and e["role"] == "operator"
        assert e["peer"].startswith("127.0.0.1:") and e["at_ms"] > 0
    assert "audited" in entries[1]["summary"]
    assert all(e["actor"] != "alice" for e in entries)
    # secret-looking members of a body never reach the audit log
    admin(gw, "POST", "/admin/v1/keys", {"name": "s", "owner": "x", "team": "y"})
    admin(gw, "PATCH", "/admin/v1/nodes/n0/labels", {"hf_token": "hf_supersecret"})
    st, body = admin(gw, "GET", "/admin/v1/audit?limit=1")
    assert body["entries"][0]["method"] == "PATCH"
    assert "hf_supersecret" not in body["entries"][0]["summary"]
    assert "***" in body["entries"][0]["summary"]


def test_failed_auth_logged_with_a_limit(gw):
    create(gw)  # with no key at all (and no api_key) the loopback client API is open
    for i in range(15):
        chat(gw, "dk-wrong-%02d-0123456789" % i)
    text = log_text(gw)
    assert text.count("event=auth_failed") == 10
    assert "0123456789" not in text.split("event=auth_failed", 1)[1].split("\n", 1)[0]
    st, _, m = request(gw.admin, "GET", "/metrics", headers={"Authorization": "Bearer " + OPERATOR})
    assert b"drover_auth_failures_total 15" in m


def test_keys_survive_a_restart(sim, tmp_path):
    db = tmp_path / "keys.db"
    g = start_gw(sim, tmp_path, db=db)
    kid, secret = create(g, rpm=7, models=["llama-*"])
    gone, gone_secret = create(g, name="gone")
    admin(g, "DELETE", "/admin/v1/keys/" + gone)
    assert g.stop() == 0
    g = start_gw(sim, tmp_path, db=db)
    try:
        assert chat(g, secret)[0] == 200
        assert chat(g, gone_secret)[0] == 401
        st, body = admin(g, "GET", "/admin/v1/keys/" + kid)
        assert st == 200 and body["spec"]["rpm"] == 7
        st, body = admin(g, "GET", "/admin/v1/audit")
        assert len(body["entries"]) == 3
    finally:
        g.stop()


def test_legacy_api_key_keeps_working(sim, tmp_path):
    g = start_gw(sim, tmp_path, extra=["--set", "api_key=" + LEGACY])
    try:
        assert chat(g, LEGACY)[0] == 200
        _, secret = create(g, models=["llama-*"])
        assert chat(g, secret)[0] == 200
        assert chat(g, LEGACY, MISTRAL)[0] == 200  # the legacy key has no limits
        assert chat(g, "nope-0123456789ab")[0] == 401
    finally:
        g.stop()


def test_cli_keys_and_usage(gw):
    env = dict(os.environ, DROVER_ADMIN_URL="http://127.0.0.1:%d" % gw.admin,
               DROVER_ADMIN_TOKEN=OPERATOR)

    def drover(*args):
        r = subprocess.run([DROVER] + list(args), env=env, capture_output=True, text=True,
                           timeout=30)
        return r.returncode, r.stdout, r.stderr

    rc, out, err = drover("keys", "create", "cli-key", "--models", "llama-*", "--rpm", "3",
                          "--budget", "1000/month", "--json")
    assert rc == 0, err
    created = json.loads(out)
    kid, secret = created["key"]["id"], created["secret"]
    assert created["key"]["spec"]["budget_period"] == "month"
    rc, out, _ = drover("keys", "ls")
    assert rc == 0 and kid in out and "cli-key" in out and secret not in out
    rc, out, _ = drover("keys", "set", kid, "--tpm", "900")
    assert rc == 0 and "900" in out
    rc, out, _ = drover("keys", "rotate", kid)
    assert rc == 0 and "secret: dk-" in out
    rc, out, _ = drover("keys", "revoke", kid)
    assert rc == 0 and "revoked" in out
    rc, out, err = drover("keys", "create", "x", "--rpm", "lots")
    assert rc == 2 and "--rpm" in err
    rc, out, err = drover("usage", "--group-by", "model")
    assert rc == 0, err
    env["DROVER_ADMIN_TOKEN"] = VIEWER
    rc, out, err = drover("keys", "create", "nope")
    assert rc == 1 and "403" in err


def stream(port, secret, path="/v1/chat/completions", model=LLAMA, max_tokens=8, **extra):
    """A streamed request; returns (status, headers, raw body bytes)."""
    if path.startswith("/api/"):
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}],
                "options": {"num_predict": max_tokens}}
    else:
        body = {"model": model, "stream": True, "max_tokens": max_tokens,
                "messages": [{"role": "user", "content": "hi"}]}
    body.update(extra)
    return request(port, "POST", path, body=body,
                   headers={"Authorization": "Bearer " + secret})


def sse_chunks(data):
    out = []
    for ev in data.decode().split("\n\n"):
        for line in ev.splitlines():
            if line.startswith("data: ") and line != "data: [DONE]":
                out.append(json.loads(line[6:]))
    return out


def usage_rows(gw, kid, requests):
    def rows():
        st, body = admin(gw, "GET", "/admin/v1/usage?group_by=key&key=" + kid)
        assert st == 200, body
        r = body["rows"]
        return r if r and r[0]["requests"] == requests else None
    return wait_until(None, "usage flushed", rows)[0]


def test_stream_tokens_counted_and_usage_chunk_not_shown(gw):
    """The client did not ask for usage: the gateway asks the node, counts the tokens, and the
    client sees no usage chunk (the stream ends with [DONE] as usual)."""
    kid, secret = create(gw)
    st, h, data = stream(gw.port, secret, max_tokens=8)
    assert st == 200, data
    chunks = sse_chunks(data)
    assert chunks and all(c.get("choices") for c in chunks), data
    assert not any(c.get("usage") for c in chunks), "a usage chunk the client did not ask for"
    assert data.rstrip().endswith(b"data: [DONE]")
    r = usage_rows(gw, kid, 1)
    assert r["prompt_tokens"] > 0 and r["completion_tokens"] == 8, r


def test_stream_usage_shown_when_the_client_asks(gw):
    kid, secret = create(gw)
    st, h, data = stream(gw.port, secret, max_tokens=5,
                         stream_options={"include_usage": True})
    assert st == 200, data
    last = sse_chunks(data)[-1]
    assert last["choices"] == [] and last["usage"]["completion_tokens"] == 5, last
    r = usage_rows(gw, kid, 1)
    assert r["completion_tokens"] == 5, r


def test_ollama_stream_tokens_counted(gw):
    kid, secret = create(gw)
    st, h, data = stream(gw.port, secret, path="/api/chat", max_tokens=6)
    assert st == 200, data
    lines = [json.loads(x) for x in data.decode().splitlines() if x.strip()]
    assert lines[-1]["done"] is True
    r = usage_rows(gw, kid, 1)
    assert r["completion_tokens"] == 6 and r["prompt_tokens"] > 0, r


def test_stream_tokens_feed_tpm(gw):
    _, secret = create(gw, tpm=10)
    st, h, data = stream(gw.port, secret, max_tokens=40)
    assert st == 200, data
    st, h, body = chat(gw, secret)
    assert st == 429, body
    assert body["error"]["type"] == "tokens", body


def test_budget_spent_mid_stream_finishes_then_refuses(gw):
    """A budget of 20 tokens, a stream of 60: the stream finishes whole (no cut in the middle);
    the next request is refused with 429 insufficient_quota."""
    kid, secret = create(gw, budget_tokens=20, budget_period="day")
    st, h, data = stream(gw.port, secret, max_tokens=60)
    assert st == 200, data
    chunks = sse_chunks(data)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length", chunks[-1]
    assert data.rstrip().endswith(b"data: [DONE]")
    st, h, body = chat(gw, secret)
    assert st == 429, body
    assert body["error"]["code"] == "insufficient_quota"
    assert body["error"]["type"] == "insufficient_quota"
    assert int(h["retry-after"]) >= 1
    st, body = admin(gw, "GET", "/admin/v1/keys/" + kid)
    assert st == 200, body
    key = body.get("key", body)
    assert key["budget_used"] >= 60, key


# ---- safe defaults: the join token and plain HTTP beyond loopback (DESIGN §10) ----------------

def serve_refused(*args):
    p = subprocess.run([DROVER, "serve", "--listen", "127.0.0.1:0", "--admin-listen",
                        "127.0.0.1:0", "--set", "store.path="] + list(args),
                       capture_output=True, timeout=20, stdin=subprocess.DEVNULL)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert b"drover-serve ready" not in p.stdout
    return p.stderr.decode()


def join_status(port, token):
    st, _, _ = request(port, "POST", "/drover/v1/nodes/join", body={"name": "x"},
                       headers={"Authorization": "Bearer " + token})
    return st


def test_join_token_generated_once_and_reused(tmp_path):
    db = tmp_path / "d.db"
    args = ["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
            "--set", "join.enabled=true"]
    gw = Proc(args, "drover serve: new join token", env={"DROVER_STORE_PATH": str(db)})
    try:
        token = gw.ready_line.rsplit(": ", 1)[1]
        assert token.startswith("djt-") and len(token) == 52, gw.ready_line
        f = tmp_path / "d.db.join-token"
        assert f.read_text().strip() == token
        assert (f.stat().st_mode & 0o777) == 0o600
        assert token not in gw.read_log(), "the token is never logged"
    finally:
        gw.stop()
    gw = Proc(args, "drover-serve ready", env={"DROVER_STORE_PATH": str(db)})
    try:
        port = int(gw.fields["listen"].rsplit(":", 1)[1])
        assert join_status(port, token) != 401, "the stored token is reused"
        assert join_status(port, "dev-join-token") == 401
        assert "join_token" in gw.read_log() and token not in gw.read_log()
    finally:
        gw.stop()


def test_example_join_token_refused():
    err = serve_refused("--set", "join.token=dev-join-token")
    assert "published example" in err and "join.allow_example_token" in err, err
    gw = Proc(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
               "--set", "join.token=dev-join-token", "--set", "join.allow_example_token=true"],
              "drover-serve ready")
    gw.stop()


def test_non_loopback_listener_needs_tls_or_explicit_plain_http(tmp_path):
    err = serve_refused("--listen", "0.0.0.0:0", "--set", "api_key=" + LEGACY)
    assert "without TLS" in err and "allow_plain_http" in err and "tls.cert" in err, err
    gw = Proc(["serve", "--listen", "0.0.0.0:0", "--admin-listen", "127.0.0.1:0",
               "--set", "api_key=" + LEGACY, "--set", "allow_plain_http=true"],
              "drover-serve ready")
    gw.stop()


def queue_metric(gw, name):
    _, _, text = request(gw.admin, "GET", "/metrics", headers={"Authorization": "Bearer " + OPERATOR})
    for line in text.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_full_queue_is_shared_across_keys(tmp_path):
    """Issue 16: the admission queue is fair across keys. One key fills the queue of a node
    whose only slot is busy; another key's request is not refused for a queue it did not fill:
    it takes the newest place of the first key (that one gets 503 capacity) and is served."""
    slow = start_sim("--model", LLAMA, "--slots", "1", "--queue", "0", "--busy-retry-after", "1",
                     "--tokens-per-second", "20", "--max-tokens", "4")
    gw = start_gw(slow, tmp_path, extra=["--set", "queue.max=3", "--set", "queue.max_wait=20s"])
    try:
        _, flood = create(gw, name="flood")
        _, other = create(gw, name="other")
        results = []
        lock = threading.Lock()

        def one(secret):
            st, _, body = chat(gw, secret)
            with lock:
                results.append((secret, st, body))
        ts = [threading.Thread(target=one, args=(flood,)) for _ in range(4)]
        for t in ts:
            t.start()
        wait_until(None, "the flooding key fills the queue",
                   lambda: queue_metric(gw, "drover_queue_waiting") >= 3)
        st, _, body = chat(gw, other)
        assert st == 200, body
        for t in ts:
            t.join(timeout=60)
        assert queue_metric(gw, "drover_queue_pushed_out_total") == 1
        flood_st = sorted(st for s, st, _ in results if s == flood)
        assert flood_st == [200, 200, 200, 503], flood_st
        refused = [b for s, st, b in results if st == 503][0]
        assert refused["error"]["code"] == "capacity", refused
    finally:
        gw.stop()
        slow.stop()
