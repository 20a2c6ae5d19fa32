"""test_tls — `drover serve` with TLS on both listeners (docs/tls.md), seen from Python's ssl
module: a chat request over https, TLS 1.1 refused, plain HTTP on the TLS port refused with a
readable 400, a silent TLS client cut at the handshake timeout, and a certificate reload on
SIGHUP that new connections see while an open keep-alive connection keeps working. The test
CA and certificates are made with the openssl CLI in a temporary directory.
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
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from harness import Proc, start_sim, wait_until  # noqa: E402

CHAT = "tls-model"


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True,
                   timeout=60)


def make_leaf(d, name, cn):
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj",
            "/CN=" + cn, "-keyout", name + ".key", "-out", name + ".csr", cwd=d)
    with open(os.path.join(d, name + ".ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", name + ".ext", "-out", name + ".pem",
            cwd=d)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("the openssl CLI is not installed (scripts/deps.sh installs it)")
    d = str(tmp_path_factory.mktemp("pki"))
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-days", "2", "-subj", "/CN=drover-test-ca", "-keyout", "ca.key", "-out", "ca.pem",
            cwd=d)
    make_leaf(d, "one", "drover-one")
    make_leaf(d, "two", "drover-two")
    # the gateway reads these two paths; the reload test replaces their contents
    shutil.copy(os.path.join(d, "one.pem"), os.path.join(d, "srv.pem"))
    shutil.copy(os.path.join(d, "one.key"), os.path.join(d, "srv.key"))
    return d


@pytest.fixture(scope="module")
def sim():
    s = start_sim("--model", CHAT)
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="module")
def gw(pki, sim):
    crt, key = os.path.join(pki, "srv.pem"), os.path.join(pki, "srv.key")
    args = ["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
            "--set", "tls.cert=" + crt, "--set", "tls.key=" + key,
            "--set", "admin_tls.cert=" + crt, "--set", "admin_tls.key=" + key,
            "--set", "limits.header_timeout=1s",
            "--set", "health.interval=100ms", "--set", "health.jitter=20ms",
            "--node", "n0=http://127.0.0.1:%d,openai" % sim.port]
    g = Proc(args, "drover-serve ready")
    g.port = int(g.fields["listen"].rsplit(":", 1)[1])
    g.admin = int(g.fields["admin"].rsplit(":", 1)[1])
    yield g
    assert g.stop() == 0


def client_ctx(pki, **kw):
    ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.pem"))
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def https(port, pki, method, path, body=None, conn=None):
    c = conn or http.client.HTTPSConnection("127.0.0.1", port, context=client_ctx(pki),
                                            timeout=10)
    hdrs = {"Content-Type": "application/json"} if body is not None else {}
    c.request(method, path, body=json.dumps(body) if body is not None else None, headers=hdrs)
    r = c.getresponse()
    data = r.read()
    if conn is None:
        c.close()
    return r.status, data


def peer_cn(sock):
    cert = sock.getpeercert()
    return dict(x[0] for x in cert["subject"])["commonName"]


def wait_routable(gw, pki):
    def ready():
        st, body = https(gw.admin, pki, "GET", "/admin/v1/nodes")
        return st == 200 and all(n["routable"] for n in json.loads(body)["nodes"])
    wait_until(None, "node routable over the https admin API", ready, 15)


def test_chat_over_https(gw, pki):
    wait_routable(gw, pki)
    st, body = https(gw.port, pki, "POST", "/v1/chat/completions",
                     {"model": CHAT, "messages": [{"role": "user", "content": "hi"}]})
    assert st == 200, body
    assert json.loads(body)["choices"][0]["message"]["content"]
    # what was negotiated: TLS 1.2+ and ALPN http/1.1
    ctx = client_ctx(pki)
    ctx.set_alpn_protocols(["http/1.1"])
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            assert s.version() in ("TLSv1.2", "TLSv1.3")
            assert s.selected_alpn_protocol() == "http/1.1"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls12_ok_tls11_refused(gw, pki):
    ctx = client_ctx(pki, maximum_version=ssl.TLSVersion.TLSv1_2)
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            assert s.version() == "TLSv1.2"
    old = client_ctx(pki)
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as raw:
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            old.wrap_socket(raw, server_hostname="127.0.0.1")


def test_plain_http_to_tls_port_refused(gw):
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 400 "), data
    assert b"plain_http_to_https_port" in data and b"Connection: close" in data


def test_handshake_timeout(gw):
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(b"\x16\x03\x01")  # the start of a ClientHello, then nothing
        t0 = time.monotonic()
        assert s.recv(100) == b""  # closed by the server (limits.header_timeout=1s)
        assert time.monotonic() - t0 < 4


def test_sighup_reloads_cert_keeps_open_connections(gw, pki):
    old = http.client.HTTPSConnection("127.0.0.1", gw.port, context=client_ctx(pki),
                                      timeout=10)
    assert https(gw.port, pki, "GET", "/v1/models", conn=old)[0] == 200
    assert peer_cn(old.sock) == "drover-one"
    shutil.copy(os.path.join(pki, "two.pem"), os.path.join(pki, "srv.pem"))
    shutil.copy(os.path.join(pki, "two.key"), os.path.join(pki, "srv.key"))
    gw.signal(signal.SIGHUP)

    def new_cn():
        ctx = client_ctx(pki)
        with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                return peer_cn(s) == "drover-two"
    wait_until(None, "new connections see the new certificate", new_cn, 10)
    # the admin listener reloaded too
    ctx = client_ctx(pki)
    with socket.create_connection(("127.0.0.1", gw.admin), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            assert peer_cn(s) == "drover-two"
    # the open keep-alive connection still works, on its old session
    sock_before = old.sock
    for _ in range(3):
        assert https(gw.port, pki, "GET", "/v1/models", conn=old)[0] == 200
    assert old.sock is sock_before and peer_cn(old.sock) == "drover-one"
    old.close()


def test_bad_cert_refused_at_start(pki):
    p = subprocess.run([os.environ.get("DROVER_BIN") or os.path.join(
        os.path.dirname(__file__), "..", "..", "build", "asan", "drover"), "serve",
        "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
        "--set", "tls.cert=" + os.path.join(pki, "one.pem"),
        "--set", "tls.key=" + os.path.join(pki, "two.key")],
        capture_output=True, timeout=30, env=dict(os.environ, DROVER_STORE_PATH=":memory:"))
    assert p.returncode == 2, p.stderr
    assert b"two.key" in p.stderr


def _get_models(s):
    s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return out
        out += chunk


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_session_resumption(gw, pki, version):
    """A client that kept the session (a TLS 1.3 ticket, a TLS 1.2 session) resumes it: no
    certificate, no signature on the second handshake."""
    ctx = client_ctx(pki, minimum_version=version, maximum_version=version)
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            assert _get_models(s).startswith(b"HTTP/1.1 200")  # the ticket comes with data
            session = s.session
            assert not s.session_reused
    assert session is not None
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
            assert _get_models(s).startswith(b"HTTP/1.1 200")
            assert s.session_reused, "the session was not resumed"
