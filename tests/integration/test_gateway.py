"""Gateway integration: `drover serve` in front of `drover sim` nodes, through the rows of
DESIGN §4 (failure taxonomy) and §5 (answers when no node can serve). Real processes on
loopback; readiness lines, never sleeps for synchronisation; every wait bounded.

Each test starts its own gateway (the `gateway` fixture) in front of just the nodes it needs,
so no test depends on another's state. Sims whose state no test changes are shared by the
module; a sim a test kills or stops is the test's own."""
import json
import os
import signal
import socket
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import Proc, request, sse_events, start_sim, wait_until  # noqa: E402

CHAT = "llama3.2:1b"
EMB = "nomic-embed-text"


def start_gateway(nodes, *extra, env=None):
    args = ["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
            "--set", "health.interval=100ms", "--set", "health.jitter=20ms",
            "--set", "health.timeout=300ms", "--set", "upstream.first_byte_timeout=2s",
            # a request every node answers busy waits for capacity this long, then 503
            "--set", "queue.max_wait=1s"]
    for name, port, kind in nodes:
        args += ["--node", "%s=http://127.0.0.1:%d,%s" % (name, port, kind)]
    gw = Proc(args + list(extra), "drover-serve ready", env=env)
    gw.port = int(gw.fields["listen"].rsplit(":", 1)[1])
    gw.admin = int(gw.fields["admin"].rsplit(":", 1)[1])
    return gw


def admin_nodes(gw):
    st, _, body = request(gw.admin, "GET", "/admin/v1/nodes")
    assert st == 200, body
    return {n["name"]: n for n in json.loads(body)["nodes"]}


def wait_for(pred, what, timeout=10.0):
    return wait_until(None, what, pred, timeout)


def wait_routable(gw, names, timeout=10.0):
    return wait_for(lambda: all(admin_nodes(gw)[n]["routable"] for n in names),
                    "nodes %s routable" % (names,), timeout)


def metric(gw, name):
    return harness.metric(gw.admin, name)


@pytest.fixture(scope="module")
def sim_a():
    """Three nodes with a chat and an embedding model: a0 (openai), a1 (llamacpp), o0
    (ollama). The tests' faults are per request (X-Sim-Fault), so the sim keeps no state."""
    s = start_sim("--model", CHAT, "--model", EMB + ":embedding", "--tokens-per-second", "0",
                  nodes=3)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def sim_bad():
    s = start_sim("--model", CHAT, "--fault-rate", "1", "--fault", "reset")
    yield s
    s.stop()


@pytest.fixture
def sim_c():
    s = start_sim("--model", CHAT, "--tokens-per-second", "0")
    yield s
    s.stop()


@pytest.fixture
def sim_d():
    s = start_sim("--model", "dmodel")
    yield s
    os.kill(s.p.pid, signal.SIGCONT)
    s.stop()


@pytest.fixture(scope="module")
def sim_e():
    s = start_sim("--model", "slow", "--tokens-per-second", "20", "--slots", "1")
    yield s
    s.stop()


def a_nodes(sim_a):
    return [("a0", sim_a.ports[0], "openai"), ("a1", sim_a.ports[1], "llamacpp"),
            ("o0", sim_a.ports[2], "ollama")]


@pytest.fixture
def gateway():
    """Starts a gateway (its own store) in front of the given nodes and waits until they
    are routable; at teardown it must exit 0 on SIGTERM."""
    started = []

    def start(nodes, *extra):
        gw = start_gateway(nodes, "--set", "limits.header_timeout=500ms", *extra)
        started.append(gw)
        wait_routable(gw, [n[0] for n in nodes])
        return gw
    yield start
    for gw in started:
        assert gw.stop() == 0, "gateway exits 0 on SIGTERM"


@pytest.fixture
def gw_a(gateway, sim_a):
    """A gateway in front of a0, a1 and o0 only."""
    return gateway(a_nodes(sim_a))


def chat(gw, model=CHAT, stream=False, headers=None, extra=None, path="/v1/chat/completions"):
    body = {"model": model, "messages": [{"role": "user", "content": "hello there"}],
            "stream": stream, "max_tokens": 8}
    if extra:
        body.update(extra)
    return request(gw.port, "POST", path, body, headers=headers)


def err_code(body):
    try:
        return json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def test_basic(gw_a):
    gw = gw_a
    st, h, body = chat(gw)
    assert st == 200, "non-stream chat status"
    assert h.get("x-drover-node") in ("a0", "a1"), "X-Drover-Node names a node: %r" % h
    assert h.get("x-drover-attempts") == "1", "one attempt"
    assert json.loads(body)["choices"][0]["message"]["content"], "content present"

    st, h, body = chat(gw, stream=True)
    assert st == 200, "stream chat status"
    ev = sse_events(body)
    assert len(ev) >= 2 and ev[-1] == "[DONE]", "stream ends with [DONE]: %r" % ev[-2:]

    st, _, body = request(gw.port, "GET", "/v1/models")
    ids = [m["id"] for m in json.loads(body)["data"]]
    assert CHAT in ids and EMB in ids, "fleet model list: %r" % ids

    st, _, body = request(gw.port, "POST", "/v1/embeddings", {"model": EMB, "input": "hi"})
    assert st == 200, "embeddings status"
    assert len(json.loads(body)["data"][0]["embedding"]) > 0, "embedding vector"

    # Ollama native API goes to Ollama nodes only
    st, h, body = chat(gw, path="/api/chat", extra={"stream": True})
    assert st == 200, "ollama chat status"
    assert h.get("x-drover-node") == "o0", "ollama request routed to the ollama node"
    lines = [json.loads(l) for l in body.decode().splitlines() if l.strip()]
    assert lines and lines[-1].get("done") is True, "NDJSON ends with done:true"
    st, _, body = request(gw.port, "GET", "/api/tags")
    assert st == 200 and CHAT in [m["name"] for m in json.loads(body)["models"]], (
        "ollama tags from the ollama node")


def test_validation(gw_a):
    gw = gw_a
    before = metric(gw, "drover_attempts_total")
    cases = [
        (b"{not json", None, "invalid_json"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model", "missing_parameter"),
        ({"model": 5, "messages": [{"role": "user", "content": "x"}]}, "model", "invalid_type"),
        ({"model": CHAT, "messages": []}, "messages", "invalid_value"),
        ({"model": CHAT, "messages": [{"role": "user"}], "stream": "yes"}, "stream",
         "invalid_type"),
    ]
    for body, param, code in cases:
        st, h, resp = request(gw.port, "POST", "/v1/chat/completions", body)
        assert st == 400, "validation status for %r" % (body,)
        e = json.loads(resp)["error"]
        assert e["param"] == param, "param named for %r" % (body,)
        assert e["code"] == code, "code for %r" % (body,)
    assert metric(gw, "drover_attempts_total") == before, "no node saw a refused request"
    st, _, resp = request(gw.port, "POST", "/api/chat", b"[]")
    assert st == 400 and isinstance(json.loads(resp)["error"], str), "ollama-shaped 400"


def test_answers(gw_a):
    gw = gw_a
    st, h, body = chat(gw, model="no-such-model")
    assert st == 404, "unknown model status"
    assert err_code(body) == "model_not_found", "unknown model code"

    # an embedding model asked to chat: the client's mistake, never the node's
    for i in range(10):
        st, _, body = chat(gw, model=EMB)
        assert st == 400, "embedding model asked to chat (%d)" % i
    nodes = admin_nodes(gw)
    assert nodes["a0"]["routable"] and nodes["a1"]["routable"], "nodes stay routable"
    assert nodes["a0"]["consecutive_faults"] + nodes["a1"]["consecutive_faults"] == 0, (
        "no faults counted for capability misses")
    st, _, body = request(gw.port, "POST", "/v1/embeddings", {"model": EMB, "input": "x"})
    assert st == 200, "the embedding model still embeds"

    # every node busy: 503 capacity with Retry-After
    st, h, body = chat(gw, headers={"X-Sim-Fault": "status=503;retry_after=2"})
    assert st == 503, "all busy status"
    assert err_code(body) == "capacity", "all busy code"
    assert h.get("retry-after") in ("1", "2"), "Retry-After on capacity: %r" % h.get("retry-after")
    # busy answers cost nothing
    nodes = admin_nodes(gw)
    assert nodes["a0"]["consecutive_faults"] + nodes["a1"]["consecutive_faults"] == 0, (
        "busy answers count nothing")
    wait_for(lambda: all(n["cooling_ms"] == 0 for n in admin_nodes(gw).values()), "cooling over")

    # poison request: 5xx on two nodes stops, answers 502 and counts nothing
    st, h, body = chat(gw, headers={"X-Sim-Fault": "status=500"})
    assert st == 502, "poison request status"
    assert err_code(body) == "upstream_failed", "poison request code"
    assert h.get("x-drover-attempts") == "2", "poison stops after two nodes"
    nodes = admin_nodes(gw)
    assert nodes["a0"]["consecutive_faults"] + nodes["a1"]["consecutive_faults"] == 0, (
        "poison request counts nothing")

    # client error from the engine is passed through and counts nothing
    st, h, body = chat(gw, headers={"X-Sim-Fault": "status=422"})
    assert st == 422, "engine's 4xx passed through"
    assert "error" in json.loads(body), "OpenAI-shaped error body"

    # completion is authoritative: a reset after the complete response is a success
    st, h, body = chat(gw, headers={"X-Sim-Fault": "reset_after_complete"})
    assert st == 200, "reset after complete is a success"
    assert h.get("x-drover-attempts") == "1", "no retry after a complete response"


def test_stream_fault(gw_a):
    gw = gw_a
    # a fault after the first byte: error event, no [DONE], counted against the node
    before = {n: v["faults_total"] for n, v in admin_nodes(gw).items()}
    st, h, body = chat(gw, stream=True, headers={"X-Sim-Fault": "cut_after=2"})
    assert st == 200, "cut stream status line"
    ev = sse_events(body)
    assert "[DONE]" not in ev, "no [DONE] after a cut"
    assert ev and "error" in json.loads(ev[-1]), "last event is an error: %r" % ev[-1:]
    node = h.get("x-drover-node")
    after = admin_nodes(gw)
    assert after[node]["faults_total"] == before[node] + 1, "cut stream counts against its node"
    request(gw.admin, "POST", "/admin/v1/nodes/%s/recover" % node)

    # Ollama stream cut: a final JSON line with "error"
    st, h, body = chat(gw, path="/api/chat", extra={"stream": True},
                       headers={"X-Sim-Fault": "cut_after=2"})
    lines = [json.loads(l) for l in body.decode().splitlines() if l.strip()]
    assert lines and "error" in lines[-1] and not any(l.get("done") for l in lines), (
        "ollama cut stream ends with an error line")
    request(gw.admin, "POST", "/admin/v1/nodes/o0/recover")


def test_exclusion_and_recover(gateway, sim_a, sim_bad):
    gw = gateway(a_nodes(sim_a) + [("bad", sim_bad.port, "openai")])
    # four chat nodes share the traffic, so the bad one sees about one request in four
    for i in range(60):
        st, h, body = chat(gw)
        assert st == 200, "requests succeed while a node resets (%d)" % i
        if admin_nodes(gw)["bad"]["excluded"]:
            break
    nodes = admin_nodes(gw)
    assert nodes["bad"]["excluded"], "3 node faults exclude the node"
    assert not nodes["bad"]["routable"], "excluded node is not routable"
    before = nodes["bad"]["requests_total"], nodes["bad"]["faults_total"]
    for _ in range(5):
        chat(gw)
    nodes = admin_nodes(gw)
    assert nodes["bad"]["faults_total"] == before[1], "excluded node gets no traffic"
    st, _, body = request(gw.admin, "POST", "/admin/v1/nodes/bad/recover")
    assert st == 200, "recover answers"
    n = json.loads(body)
    assert not n["excluded"] and n["consecutive_faults"] == 0, "recover brings it back"
    st, _, _ = request(gw.admin, "POST", "/admin/v1/nodes/nope/recover")
    assert st == 404, "recover of an unknown node"
    # drained, it takes no new requests
    request(gw.admin, "POST", "/admin/v1/nodes/bad/drain")
    assert not admin_nodes(gw)["bad"]["routable"], "drained node takes no new requests"


def test_killed_node_under_load(gateway, sim_a, sim_c):
    victim = sim_c
    gw = gateway(a_nodes(sim_a) + [("c0", sim_c.port, "openai")])
    results = []
    stop = threading.Event()

    def worker():
        while not stop.is_set() and len(results) < 400:
            try:
                st, _, _ = chat(gw)
            except OSError as e:
                st = str(e)
            results.append(st)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    wait_for(lambda: len(results) >= 30, "load started")
    victim.kill9()
    n_at_kill = len(results)
    wait_for(lambda: len(results) >= n_at_kill + 60, "load after the kill")
    stop.set()
    for t in threads:
        t.join(timeout=20)
    failed = [r for r in results if r != 200]
    assert failed == [], "no non-stream request lost when a node is killed under load"
    wait_for(lambda: not admin_nodes(gw)["c0"]["routable"], "killed node leaves the pool", 5)


def test_probe_debounce(gateway, sim_d):
    gw = gateway([("d0", sim_d.port, "openai")])
    os.kill(sim_d.p.pid, signal.SIGSTOP)
    try:
        seen_one_miss = wait_for(
            lambda: (lambda n: n if 1 <= n["probe_fail_streak"] <= 2 else None)(
                admin_nodes(gw)["d0"]), "first missed probe")
        if seen_one_miss:
            assert seen_one_miss["routable"], "one or two missed probes keep the node"
        wait_for(lambda: not admin_nodes(gw)["d0"]["routable"], "three misses take it out")
        assert admin_nodes(gw)["d0"]["probe_fail_streak"] >= 3, "taken out after three"
    finally:
        os.kill(sim_d.p.pid, signal.SIGCONT)
    wait_routable(gw, ["d0"])


def test_slowloris(gw_a):
    gw = gw_a
    before = metric(gw, "drover_attempts_total")
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
    got = b""
    deadline = time.monotonic() + 5
    try:
        while time.monotonic() < deadline:
            try:
                s.sendall(b"X-A: b\r\n")
            except OSError:
                break
            s.settimeout(0.1)
            try:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
            except socket.timeout:
                pass
            except OSError:
                break
    finally:
        s.close()
    assert got.startswith(b"HTTP/1.1 408"), "slowloris gets 408: %r" % got[:40]
    assert time.monotonic() < deadline, "slowloris connection was closed"
    assert metric(gw, "drover_attempts_total") == before, "slowloris never reaches a node"


def test_client_disconnect_frees_slot(gateway, sim_e):
    gw = gateway([("e0", sim_e.port, "openai")])
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    body = json.dumps({"model": "slow", "messages": [{"role": "user", "content": "x"}],
                       "stream": True, "max_tokens": 500}).encode()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
              b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    first = s.recv(4096)
    assert first.startswith(b"HTTP/1.1 200"), "slow stream started"

    def processing():
        _, _, m = request(sim_e.port, "GET", "/metrics")
        for line in m.decode().splitlines():
            if line.startswith("llamacpp:requests_processing"):
                return float(line.rsplit(" ", 1)[1])
        return -1
    assert processing() == 1.0, "the node's slot is busy while streaming"
    s.close()
    wait_for(lambda: processing() == 0.0, "slot freed after the client left", 3)
    n = admin_nodes(gw)["e0"]
    assert n["in_flight"] == 0, "gateway in-flight back to 0"
    assert n["consecutive_faults"] == 0, "a client leaving is no fault of the node"


def test_admin_and_metrics(gw_a):
    gw = gw_a
    # traffic of its own for the metrics: a success and a node fault (a stream cut)
    st, _, _ = chat(gw)
    assert st == 200
    st, _, _ = chat(gw, stream=True, headers={"X-Sim-Fault": "cut_after=2"})
    assert st == 200
    assert metric(gw, 'drover_outcomes_total{class="node_fault"}') >= 1, "the cut is a node fault"
    st, _, body = request(gw.admin, "GET", "/admin/v1/nodes/a0")
    n = json.loads(body)
    for k in ("admin", "liveness", "excluded", "consecutive_faults", "in_flight", "models"):
        assert k in n, "node json has %s" % k
    _, _, m = request(gw.admin, "GET", "/metrics")
    text = m.decode()
    for name in ("drover_requests_total{", "drover_attempts_total", "drover_retries_total",
                 "drover_outcomes_total{class=\"node_fault\"}", "drover_node_up{",
                 "drover_in_flight", "drover_time_to_first_byte_seconds_bucket",
                 "drover_request_duration_seconds_count", "drover_pool_connections"):
        assert name in text, "metrics has %s" % name
    st, _, _ = request(gw.port, "GET", "/metrics")
    assert st == 404, "metrics are not on the client listener"
