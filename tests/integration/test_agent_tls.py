"""test_agent_tls — TLS on the gateway <-> agent link (docs/security.md, docs/agent.md "TLS"):
`drover agent` in front of `drover sim` serves TLS with a certificate of a test CA, joins a
`drover serve` whose client listener serves TLS too (the agent pins the CA with
gateway_ca_file), advertises an https:// URL, and the gateway (upstream.ca_file) routes a chat
through it. Mutual TLS: with tls.client_ca the agent admits the gateway's client certificate
and refuses a client without one (and one holding a server-only certificate); a gateway
without a client certificate never sees the node healthy. A wrong CA on either side fails
verification with a clear log line. SIGHUP reloads the agent's certificate. Secrets never go
over plain HTTP beyond loopback: the agent refuses such settings at start, and the gateway
refuses a join whose URL is plain http to a non-loopback address.

The CAs and certificates are made with the openssl CLI in a temporary directory. Loopback
only; every wait bounded; every process stopped by pid.
"""
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from harness import DROVER, Proc, log_text, request, start_sim, wait_until  # noqa: E402

JOIN = "join-token-for-tls-tests"
ADMIN = "admin-token-for-tls-tests"
MODEL = "tls-agent-model"


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True,
                   timeout=60)


def make_ca(d, name, cn):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-days", "2", "-subj", "/CN=" + cn, "-keyout", name + ".key", "-out", name + ".pem",
            cwd=d)


def make_leaf(d, name, cn, ext, ca="ca"):
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj",
            "/CN=" + cn, "-keyout", name + ".key", "-out", name + ".csr", cwd=d)
    with open(os.path.join(d, name + ".ext"), "w") as f:
        f.write(ext)
    openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
            "-CAcreateserial", "-days", "2", "-extfile", name + ".ext", "-out", name + ".pem",
            cwd=d)


SERVER_EXT = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
CLIENT_EXT = "extendedKeyUsage=clientAuth\n"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("the openssl CLI is not installed (scripts/deps.sh installs it)")
    d = str(tmp_path_factory.mktemp("pki"))
    make_ca(d, "ca", "drover-test-fleet-ca")
    make_ca(d, "other-ca", "drover-test-other-ca")
    make_leaf(d, "gw", "drover-gateway-listener", SERVER_EXT)
    make_leaf(d, "gwclient", "drover-gateway-client", CLIENT_EXT)
    make_leaf(d, "agent-one", "drover-agent-one", SERVER_EXT)
    make_leaf(d, "agent-two", "drover-agent-two", SERVER_EXT)
    make_leaf(d, "stranger", "drover-stranger", CLIENT_EXT, ca="other-ca")
    return d


def path(pki, name):
    return os.path.join(pki, name)


@pytest.fixture(scope="module")
def sim():
    s = start_sim("--model", MODEL)
    yield s
    assert s.stop() == 0


def start_gw(pki, *extra, env=None):
    """A gateway whose client listener serves TLS (the agents join over https) and which
    trusts the fleet CA for https:// agents; the admin listener is plain loopback."""
    g = Proc(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
              "--set", "tls.cert=" + path(pki, "gw.pem"), "--set", "tls.key=" + path(pki, "gw.key"),
              "--set", "upstream.ca_file=" + path(pki, "ca.pem"),
              "--set", "join.token=" + JOIN, "--set", "join.auto_approve=true",
              "--set", "admin_token=" + ADMIN, "--set", "join.poll_interval=200ms",
              "--set", "health.interval=100ms", "--set", "health.jitter=20ms",
              "--set", "health.rise=1", "--set", "health.timeout=3s"] + list(extra),
             "drover-serve ready", env=env)
    g.port = int(g.fields["listen"].rsplit(":", 1)[1])
    g.admin = int(g.fields["admin"].rsplit(":", 1)[1])
    return g


def start_agent(pki, gw, sim, tmp, name, *extra, tls=True):
    args = ["agent", "--gateway", "https://127.0.0.1:%d" % gw.port, "--join-token", JOIN,
            "--gateway-ca-file", path(pki, "ca.pem"),
            "--engine", "openai", "--engine-url", "http://127.0.0.1:%d" % sim.port,
            "--listen", "127.0.0.1:0", "--state-file", os.path.join(tmp, name + ".state"),
            "--nvidia-smi", "off", "--name", name]
    if tls:
        args += ["--tls-cert", path(pki, "agent.pem"), "--tls-key", path(pki, "agent.key")]
    a = Proc(args + list(extra), "drover-agent ready")
    a.port = int(a.fields["listen"].rsplit(":", 1)[1])
    return a


@pytest.fixture
def agent_files(pki):
    """The agent reads agent.pem/agent.key; the reload test replaces their contents."""
    for ext in ("pem", "key"):
        shutil.copy(path(pki, "agent-one." + ext), path(pki, "agent." + ext))
    return pki


@pytest.fixture
def procs():
    started = []
    yield started
    for p in reversed(started):
        p.stop()


def admin(gw, method, p, body=None):
    st, _, data = request(gw.admin, method, p, body=body,
                          headers={"Authorization": "Bearer " + ADMIN})
    return st, (json.loads(data) if data else {})


def node(gw, name):
    st, b = admin(gw, "GET", "/admin/v1/nodes/" + name)
    return b if st == 200 else {}


def ctx_for(pki, ca="ca.pem", cert=None):
    ctx = ssl.create_default_context(cafile=path(pki, ca))
    if cert:
        ctx.load_cert_chain(path(pki, cert + ".pem"), path(pki, cert + ".key"))
    return ctx


def https(port, ctx, method, p, body=None, headers=None):
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=15)
    try:
        h = {"Content-Type": "application/json"} if body is not None else {}
        h.update(headers or {})
        c.request(method, p, body=json.dumps(body) if body is not None else None, headers=h)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def chat(gw, pki):
    return https(gw.port, ctx_for(pki), "POST", "/v1/chat/completions",
                 {"model": MODEL, "max_tokens": 4,
                  "messages": [{"role": "user", "content": "hello over tls"}]})


def peer_cn(port, ctx):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            return dict(x[0] for x in s.getpeercert()["subject"])["commonName"]


def log_has(proc, *words):
    return any(all(w in line for w in words) for line in log_text(proc).splitlines())


def refused_by_agent(port, ctx):
    """True when the agent ends the exchange at the TLS layer: a TLS 1.3 client finishes its
    side of the handshake before the server checked its certificate, so the refusal (an alert,
    then the close) may show on the request or on its answer."""
    try:
        https(port, ctx, "GET", "/drover/v1/ping")
    except (ssl.SSLError, OSError, http.client.HTTPException):
        return True
    return False


def test_agent_serves_tls_and_the_gateway_routes_through_it(agent_files, sim, tmp_path, procs):
    pki = agent_files
    gw = start_gw(pki)
    procs.append(gw)
    a = start_agent(pki, gw, sim, str(tmp_path), "tls-1")
    procs.append(a)
    # joined over https (the gateway's listener is TLS only), advertising an https URL
    wait_until(None, "tls-1 routable", lambda: node(gw, "tls-1").get("routable"), 20)
    assert node(gw, "tls-1")["url"] == "https://127.0.0.1:%d" % a.port
    assert log_has(a, "event=start", "tls=on", "client_cert=off")
    st, h, body = chat(gw, pki)
    assert st == 200, body
    assert h.get("x-drover-node") == "tls-1"
    assert json.loads(body)["choices"][0]["message"]["content"]
    # the agent's port speaks TLS only: plain HTTP gets the listener's readable refusal
    with socket.create_connection(("127.0.0.1", a.port), timeout=5) as s:
        s.sendall(b"GET /drover/v1/ping HTTP/1.1\r\nHost: x\r\n\r\n")
        data = s.recv(4096)
    assert data.startswith(b"HTTP/1.1 400 ") and b"plain_http_to_https_port" in data, data
    # the agent's certificate as any client sees it: the fleet CA's, for 127.0.0.1
    assert peer_cn(a.port, ctx_for(pki)) == "drover-agent-one"

    # the gateway's new connections to the agent resume the session the agent gave it: six
    # chats at once need new connections, and only the first connection paid a full handshake
    out = []
    ts = [threading.Thread(target=lambda: out.append(chat(gw, pki)[0])) for _ in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=30)
    assert out == [200] * 6, out
    _, _, m = request(gw.admin, "GET", "/metrics", headers={"Authorization": "Bearer " + ADMIN})
    got = {ln.split(" ")[0]: float(ln.split(" ")[1]) for ln in m.decode().splitlines()
           if ln.startswith("drover_pool_tls_")}
    assert got["drover_pool_tls_handshakes_total"] >= 2, got
    assert got["drover_pool_tls_resumed_total"] >= 1, got
    assert got["drover_pool_tls_resumed_total"] < got["drover_pool_tls_handshakes_total"], got

    # SIGHUP: new connections get the new certificate; the gateway keeps routing
    for ext in ("pem", "key"):
        shutil.copy(path(pki, "agent-two." + ext), path(pki, "agent." + ext))
    a.signal(signal.SIGHUP)
    wait_until(None, "the agent's new certificate",
               lambda: peer_cn(a.port, ctx_for(pki)) == "drover-agent-two", 10)
    assert a.alive() and log_has(a, "event=tls_reloaded", "side=listener")
    assert log_has(a, "event=tls_reloaded", "side=gateway")
    st, h, body = chat(gw, pki)
    assert st == 200 and h.get("x-drover-node") == "tls-1", body
    assert a.stop() == 0


def test_mutual_tls(agent_files, sim, tmp_path, procs):
    pki = agent_files
    gw = start_gw(pki, "--set", "upstream.client_cert=" + path(pki, "gwclient.pem"),
                  "--set", "upstream.client_key=" + path(pki, "gwclient.key"))
    procs.append(gw)
    a = start_agent(pki, gw, sim, str(tmp_path), "mtls-1",
                    "--tls-client-ca", path(pki, "ca.pem"))
    procs.append(a)
    assert log_has(a, "event=start", "tls=on", "client_cert=required")
    # the gateway presents its client certificate: probes and the chat pass
    wait_until(None, "mtls-1 routable", lambda: node(gw, "mtls-1").get("routable"), 20)
    st, h, body = chat(gw, pki)
    assert st == 200 and h.get("x-drover-node") == "mtls-1", body
    # anyone else is refused by the agent at the TLS layer: no certificate, a certificate of
    # another CA, or a certificate of the fleet CA made for servers only (serverAuth)
    assert https(a.port, ctx_for(pki, cert="gwclient"), "GET", "/drover/v1/ping")[0] == 200
    assert refused_by_agent(a.port, ctx_for(pki)), "a client without a certificate"
    assert refused_by_agent(a.port, ctx_for(pki, cert="stranger")), "another CA's certificate"
    assert refused_by_agent(a.port, ctx_for(pki, cert="agent-one")), "a server certificate"

    # a gateway without a client certificate never sees this node healthy
    gw2 = start_gw(pki)
    procs.append(gw2)
    a2 = start_agent(pki, gw2, sim, str(tmp_path), "mtls-2",
                     "--tls-client-ca", path(pki, "ca.pem"))
    procs.append(a2)
    wait_until(None, "mtls-2 joined gw2", lambda: node(gw2, "mtls-2").get("admin") == "approved")
    wait_until(None, "gw2's failed handshakes logged",
               lambda: log_has(gw2, "event=tls_failed", "certificate required"), 10)
    n = node(gw2, "mtls-2")
    assert not n["routable"] and n["liveness"] != "healthy", n


def test_wrong_ca_fails_verification(agent_files, sim, tmp_path, procs):
    pki = agent_files
    # the gateway trusts another CA for its agents: the agent's certificate fails
    gw = start_gw(pki, "--set", "upstream.ca_file=" + path(pki, "other-ca.pem"))
    procs.append(gw)
    a = start_agent(pki, gw, sim, str(tmp_path), "ca-1")
    procs.append(a)
    wait_until(None, "ca-1 joined", lambda: node(gw, "ca-1").get("admin") == "approved")
    wait_until(None, "the gateway's verification failure logged",
               lambda: log_has(gw, "event=tls_failed", 'reason="certificate verify failed"'), 10)
    n = node(gw, "ca-1")
    assert not n["routable"] and n["liveness"] != "healthy", n
    st, h, body = chat(gw, pki)
    assert st >= 400 and "x-drover-node" not in h, (st, body)

    # the agent trusts another CA for the gateway: its join fails, it never joins
    b = start_agent(pki, gw, sim, str(tmp_path), "ca-2",
                    "--gateway-ca-file", path(pki, "other-ca.pem"))
    procs.append(b)
    wait_until(None, "the agent's verification failure logged",
               lambda: log_has(b, "event=tls_failed", 'reason="certificate verify failed"'), 10)
    assert log_has(b, "event=join_failed")
    assert node(gw, "ca-2") == {}


def run_agent(*args):
    """An agent run expected to stop at start-up; its own listen address (a free port) unless
    args name one, so a regression that does start binds nothing fixed."""
    listen = [] if "--listen" in args else ["--listen", "127.0.0.1:0"]
    return subprocess.run([DROVER, "agent", "--nvidia-smi", "off", "--state-file",
                           "/nonexistent/agent.state"] + listen + list(args),
                          capture_output=True, timeout=30)


def test_agent_refuses_plain_http_beyond_loopback(pki, tmp_path):
    # the join token and the node secret to a non-loopback gateway over plain http
    r = run_agent("--gateway", "http://192.0.2.1:8080", "--join-token", JOIN)
    err = r.stderr.decode()
    assert r.returncode == 2 and err.count("\n") == 1, err
    assert "192.0.2.1" in err and "in clear" in err and "allow_plain_http" in err, err
    # the gateway's key, prompts and answers on a plain listener beyond loopback
    r = run_agent("--listen", "0.0.0.0:0")
    err = r.stderr.decode()
    assert r.returncode == 2 and "0.0.0.0:0 (not loopback) without TLS" in err, err
    assert "tls.cert" in err and "allow_plain_http" in err, err
    # TLS files go together, and agree with the URLs
    for args, want in [
        (["--tls-cert", path(pki, "agent-one.pem")], "tls.cert and tls.key go together"),
        (["--tls-client-ca", path(pki, "ca.pem")], "tls.client_ca"),
        (["--tls-cert", path(pki, "agent-one.pem"), "--tls-key", path(pki, "agent-one.key"),
          "--advertise", "http://127.0.0.1:9300"], "advertise an https:// URL"),
        (["--gateway", "http://127.0.0.1:1", "--join-token", JOIN,
          "--gateway-ca-file", path(pki, "ca.pem")], "gateway_ca_file"),
        (["--tls-cert", path(pki, "agent-one.pem"), "--tls-key", path(pki, "agent-two.key")],
         "agent-two.key"),
    ]:
        r = run_agent(*args)
        assert r.returncode == 2 and want in r.stderr.decode(), (args, r.stderr)
    # an https gateway beyond loopback is fine; so is plain http with the explicit opt-out
    state = str(tmp_path / "a.state")
    for extra in (["--gateway", "https://192.0.2.1:8443"],
                  ["--gateway", "http://192.0.2.1:8080", "--allow-plain-http"]):
        a = Proc(["agent", "--nvidia-smi", "off", "--state-file", state, "--listen",
                  "127.0.0.1:0", "--join-token", JOIN] + extra, "drover-agent ready")
        assert a.stop() == 0


def test_gateway_refuses_a_plain_agent_url_beyond_loopback(agent_files, sim, tmp_path, procs):
    pki = agent_files
    gw = start_gw(pki)
    procs.append(gw)
    # the agent's listener is loopback, but it tells the gateway to call a plain address
    # beyond loopback: the gateway would send the node's key in clear, so it refuses the join
    a = start_agent(pki, gw, sim, str(tmp_path), "plain-1", "--advertise",
                    "http://192.0.2.5:9300", tls=False)
    procs.append(a)
    wait_until(None, "the agent's refusal logged",
               lambda: log_has(a, "event=join_refused", "code=insecure_node_url"), 10)
    assert log_has(gw, "event=join_refused", "node=plain-1", "url=http://192.0.2.5:9300")
    assert node(gw, "plain-1") == {}
    # the same join through the node API, to read the answer
    st, _, body = https(gw.port, ctx_for(pki), "POST", "/drover/v1/nodes/join",
                        {"name": "plain-2", "url": "http://192.0.2.5:9300", "engine": "openai"},
                        headers={"Authorization": "Bearer " + JOIN})
    e = json.loads(body)["error"]
    assert st == 400 and e["code"] == "insecure_node_url" and e["param"] == "url", body
    assert "upstream.allow_plain_secrets" in e["message"]
    # https and loopback URLs are welcome
    for name, url in (("tls-url", "https://192.0.2.5:9300"), ("lo-url", "http://127.0.0.1:9")):
        st, _, body = https(gw.port, ctx_for(pki), "POST", "/drover/v1/nodes/join",
                            {"name": name, "url": url, "engine": "openai"},
                            headers={"Authorization": "Bearer " + JOIN})
        assert st == 200, body
    # the explicit opt-out lets the plain one join (approved: the gateway now holds its key)
    db = {"DROVER_STORE_PATH": str(tmp_path / "plain.db")}
    gw2 = start_gw(pki, "--set", "upstream.allow_plain_secrets=true", env=db)
    procs.append(gw2)
    st, _, body = https(gw2.port, ctx_for(pki), "POST", "/drover/v1/nodes/join",
                        {"name": "plain-2", "url": "http://192.0.2.5:9300", "engine": "openai"},
                        headers={"Authorization": "Bearer " + JOIN})
    assert st == 200 and json.loads(body).get("secret"), body
    assert gw2.stop() == 0
    # the same store without the opt-out: the node is named at start as unreachable in clear
    gw3 = start_gw(pki, env=db)
    procs.append(gw3)
    assert node(gw3, "plain-2").get("url") == "http://192.0.2.5:9300"
    assert log_has(gw3, "event=node_unreachable_in_clear", "node=plain-2")
