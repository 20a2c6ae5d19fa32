"""Fleet safety (issue 12 §1–§3, issue 20): no client can change what other clients get, a
stream completes only at its terminal event, busy is not dead, and busy answers degrade
gracefully instead of turning into a fleet-wide refusal.

The scripted nodes are small Python HTTP servers in this file whose answer the *request*
chooses (the user message names the answer), so a hostile client can make a node answer
any class of DESIGN §4 for its own requests, as real engines do for some inputs. Real
`drover serve` and `drover sim` processes on loopback; every wait is for an event, bounded.
"""
import json
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from harness import Proc, request, start_sim  # noqa: E402

MODEL = "m"


class ScriptedNode:
    """An OpenAI-compatible node on a free loopback port. Chat answers follow the last user
    message: "answer:<spec>" picks a scripted answer, anything else is a normal completion.
    `probe_hang` makes GET /v1/models hang (a node whose HTTP threads are all busy)."""

    def __init__(self, name):
        self.name = name
        self.probe_hang = False
        self.all_busy = False  # answer every chat 503 + Retry-After (a node at capacity)
        self.served = 0
        self.received = 0
        self.lock = threading.Lock()
        node = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go in two writes

            def log_message(self, *a):
                pass

            def send(self, status, obj, extra=None):
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path == "/v1/models":
                    if node.probe_hang:
                        time.sleep(2.0)  # the scripted node's own slowness, not a test wait
                        return
                    self.send(200, {"object": "list", "data": [{"id": MODEL}]})
                    return
                self.send(404, {"error": {"message": "no route"}})

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                req = json.loads(self.rfile.read(n) or b"{}")
                with node.lock:
                    node.received += 1
                if node.all_busy:
                    self.send(503, {"error": {"message": "busy"}}, {"Retry-After": "30"})
                    return
                if req.get("model") != MODEL:
                    self.send(404, {"error": {"message": "model '%s' not found" % req.get("model"),
                                              "type": "invalid_request_error",
                                              "code": "model_not_found"}})
                    return
                msg = (req.get("messages") or [{}])[-1].get("content", "")
                spec = msg[7:] if isinstance(msg, str) and msg.startswith("answer:") else ""
                if req.get("tools"):
                    self.send(400, {"error": {"message": "%s does not support tools" % MODEL}})
                elif spec == "404model":
                    self.send(404, {"error": {"message": "model '%s' not found" % MODEL}})
                elif spec == "404route":
                    self.send(404, {"error": {"message": "404 page not found"}})
                elif spec == "400":
                    self.send(400, {"error": {"message": "bad prompt"}})
                elif spec == "501":
                    self.send(501, {"error": {"message": "not implemented"}})
                elif spec == "500":
                    self.send(500, {"error": {"message": "internal error"}})
                elif spec == "503":
                    self.send(503, {"error": {"message": "busy"}}, {"Retry-After": "30"})
                elif spec == "429":
                    self.send(429, {"error": {"message": "slow down"}}, {"Retry-After": "30"})
                elif spec == "fake_done":
                    # one event whose *content* holds the terminal marker, then the node dies
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    ev = json.dumps({"choices": [{"delta": {"content": "x\n\ndata: [DONE]\n\n"}}]})
                    data = ("data: %s\n\n" % ev).encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                else:
                    with node.lock:
                        node.served += 1
                    self.send(200, {"id": "c", "object": "chat.completion", "model": MODEL,
                                    "choices": [{"index": 0, "finish_reason": "stop",
                                                 "message": {"role": "assistant",
                                                             "content": "ok"}}]})

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        self.port = self.srv.server_address[1]
        self.t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.t.start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def start_gateway(nodes, *sets):
    args = ["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
            "--set", "health.interval=100ms", "--set", "health.jitter=20ms",
            "--set", "health.timeout=300ms", "--set", "upstream.first_byte_timeout=2s"]
    for s in sets:
        args += ["--set", s]
    for name, port in nodes:
        args += ["--node", "%s=http://127.0.0.1:%d,openai" % (name, port)]
    gw = Proc(args, "drover-serve ready")
    gw.port = int(gw.fields["listen"].rsplit(":", 1)[1])
    gw.admin = int(gw.fields["admin"].rsplit(":", 1)[1])
    return gw


def admin_nodes(gw):
    st, _, body = request(gw.admin, "GET", "/admin/v1/nodes")
    assert st == 200, body
    return {n["name"]: n for n in json.loads(body)["nodes"]}


def wait_until(pred, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)  # polling interval of the wait, never a proof
    raise AssertionError("timed out waiting for " + what)


def metric(gw, name, node=None):
    _, _, body = request(gw.admin, "GET", "/metrics")
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            if node is None or ('node="%s"' % node) in line:
                total += float(line.rsplit(" ", 1)[1])
    return total


def chat(gw, content="hello", model=MODEL, extra=None, stream=False, timeout=15.0):
    body = {"model": model, "messages": [{"role": "user", "content": content}],
            "stream": stream}
    if extra:
        body.update(extra)
    return request(gw.port, "POST", "/v1/chat/completions", body, timeout=timeout)


def in_threads(n_threads, per_thread, fn):
    """Runs fn(i) n_threads × per_thread times concurrently; returns the results."""
    out, lock = [], threading.Lock()

    def run(t):
        for i in range(per_thread):
            r = fn(t * per_thread + i)
            with lock:
                out.append(r)
    ts = [threading.Thread(target=run, args=(t,)) for t in range(n_threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    return out


@pytest.fixture
def two_nodes():
    a, b = ScriptedNode("a"), ScriptedNode("b")
    gw = start_gateway([("a", a.port), ("b", b.port)], "busy.trickle_interval=100ms",
                       "queue.max_wait=500ms")
    try:
        wait_until(lambda: all(n["routable"] for n in admin_nodes(gw).values()), "both routable")
        yield gw, a, b
    finally:
        gw.stop()
        a.close()
        b.close()


HOSTILE = [
    # (what the hostile client sends, the status it may get)
    ("control-char model", {"model": "m\u0000x"}, "hello", (400,)),
    ("tools the node lacks", {"tools": [{"type": "function", "function": {"name": "f"}}]},
     "hello", (400,)),
    ("model not found", None, "answer:404model", (400, 404, 502, 503)),
    ("404 for a route", None, "answer:404route", (404,)),
    ("400 from the engine", None, "answer:400", (400,)),
    ("501", None, "answer:501", (400, 501)),
    ("500 (poison)", None, "answer:500", (502,)),
    ("503 busy", None, "answer:503", (503,)),
    ("429 busy", None, "answer:429", (503,)),
]


@pytest.mark.parametrize("label,extra,content,statuses", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_client_cannot_change_what_others_get(two_nodes, label, extra, content, statuses):
    """Issue 12 §1: a client that makes the nodes give one class of answer 100 times cannot make
    any other client's ordinary request fail, nor take a node or a model away."""
    gw, a, b = two_nodes
    body_extra = dict(extra or {})
    model = body_extra.pop("model", MODEL)

    def hostile(_):
        st, _, body = chat(gw, content, model=model, extra=body_extra)
        return st

    got = in_threads(4, 25, hostile)
    assert len(got) == 100
    assert set(got) <= set(statuses), (label, sorted(set(got)))
    # every ordinary request of another client succeeds, at once or after a short wait
    served_before = a.served + b.served
    for i in range(20):
        st, hdrs, body = chat(gw, "hello %d" % i)
        assert st == 200, (label, i, st, body[:300])
    assert a.served + b.served - served_before == 20
    nodes = admin_nodes(gw)
    for name in ("a", "b"):
        assert not nodes[name]["excluded"], (label, nodes[name])
    # and chats with the model keep being listed
    st, _, body = request(gw.port, "GET", "/v1/models")
    assert MODEL in [m["id"] for m in json.loads(body)["data"]]


def test_control_char_model_is_refused_by_validation(two_nodes):
    """A model name with control characters never reaches a node (issue 12 §1)."""
    gw, a, b = two_nodes
    st, _, body = chat(gw, model="m\u0000x")
    assert st == 400
    err = json.loads(body)["error"]
    assert err["param"] == "model"


def test_tools_mark_names_tools_not_chat(two_nodes):
    """"does not support tools" marks tools on that node and model, visible with its cause;
    plain chats are untouched."""
    gw, a, b = two_nodes
    st, _, _ = chat(gw, extra={"tools": [{"type": "function", "function": {"name": "f"}}]})
    assert st == 400
    nodes = admin_nodes(gw)
    marks = [m for n in nodes.values() for mod in n["models"] for m in mod.get("marks", [])]
    assert marks, nodes
    assert {m["capability"] for m in marks} == {"tools"}
    assert all("does not support tools" in m["cause"] and m["age_ms"] >= 0 for m in marks)
    st, _, _ = chat(gw)
    assert st == 200


def test_stream_completes_only_at_terminal_event(two_nodes):
    """Issue 12 §2: "data: [DONE]" inside a JSON string is content; a node that dies after
    sending it did not complete the stream: the client gets an error event, the node a
    fault."""
    gw, a, b = two_nodes
    st, _, body = chat(gw, "answer:fake_done", stream=True)
    assert st == 200
    text = body.decode()
    assert '"error"' in text, text
    assert not text.rstrip().endswith("data: [DONE]"), text
    nodes = admin_nodes(gw)
    assert sum(n["consecutive_faults"] for n in nodes.values()) == 1, nodes


def test_busy_is_not_dead():
    """Issue 12 §3: a node whose probes time out (all its HTTP threads busy) while it serves
    requests successfully stays routable; no request is refused untried."""
    a = ScriptedNode("a")
    gw = start_gateway([("a", a.port)], "health.fall=2")
    try:
        wait_until(lambda: admin_nodes(gw)["a"]["routable"], "a routable")
        a.probe_hang = True
        # keep traffic flowing for longer than interval × fall plus the probe timeouts
        deadline = time.monotonic() + 2.0
        n = 0
        while time.monotonic() < deadline:
            st, _, body = chat(gw, "hi")
            assert st == 200, body
            n += 1
        assert n > 5
        assert admin_nodes(gw)["a"]["routable"]
    finally:
        gw.stop()
        a.close()


def test_panic_routing_tries_unhealthy_nodes():
    """Issue 12 §3: when no replica of a model is healthy but some are neither excluded nor
    drained, they are tried instead of an untried 503."""
    a = ScriptedNode("a")
    gw = start_gateway([("a", a.port)], "health.fall=2")
    try:
        wait_until(lambda: admin_nodes(gw)["a"]["routable"], "a routable")
        a.probe_hang = True
        wait_until(lambda: admin_nodes(gw)["a"]["liveness"] == "unhealthy", "a unhealthy")
        st, hdrs, body = chat(gw, "hi")
        assert st == 200, body
        assert hdrs.get("x-drover-node") == "a"
    finally:
        gw.stop()
        a.close()


def test_one_percent_busy_is_not_a_fleet_refusal():
    """Issue 20: three sim nodes answering 5 % of requests 503 + Retry-After: the clients'
    failure rate stays below the nodes' busy rate, and every node keeps receiving traffic."""
    sim = start_sim("--fault-rate", "0.05", "--fault", "status=503;retry_after=1",
                    "--model", MODEL, nodes=3)
    nodes = [("s%d" % i, p) for i, p in enumerate(sim.ports)]
    gw = start_gateway(nodes)
    try:
        wait_until(lambda: all(n["routable"] for n in admin_nodes(gw).values()), "sims routable")
        got = in_threads(8, 60, lambda i: chat(gw, "hello %d" % i)[0])
        failed = sum(1 for s in got if s != 200)
        busy = metric(gw, "drover_node_busy_total")
        assert busy > 0  # the nodes did answer busy
        assert failed <= 0.05 * len(got), (failed, busy)
        per_node = [admin_nodes(gw)[n]["requests_total"] for n, _ in nodes]
        assert all(r > len(got) / 10 for r in per_node), per_node
        # no request waited out its budget: busy answers moved requests, never stalled them
        assert metric(gw, "drover_queue_timeouts_total") == 0
    finally:
        gw.stop()
        sim.stop()


def test_all_busy_requests_wait_then_complete():
    """Issue 20: when every node is at its limit, requests wait in the admission queue and
    complete when capacity frees; 503 capacity comes only after the wait runs out."""
    sim = start_sim("--slots", "1", "--queue", "0", "--busy-retry-after", "1",
                    "--tokens-per-second", "50", "--max-tokens", "5", "--model", MODEL, nodes=1)
    gw = start_gateway([("s0", sim.port)], "queue.max_wait=20s")
    try:
        wait_until(lambda: admin_nodes(gw)["s0"]["routable"], "sim routable")
        got = in_threads(6, 2, lambda i: chat(gw, "hello %d" % i, timeout=30)[0])
        assert got == [200] * 12, got
        assert metric(gw, "drover_queue_entered_total") > 0
        assert metric(gw, "drover_queue_served_total") > 0
    finally:
        gw.stop()
        sim.stop()


def test_capacity_answer_only_after_the_wait():
    sim = start_sim("--slots", "1", "--queue", "0", "--busy-retry-after", "1",
                    "--tokens-per-second", "5", "--max-tokens", "10", "--model", MODEL, nodes=1)
    gw = start_gateway([("s0", sim.port)], "queue.max_wait=300ms")
    try:
        wait_until(lambda: admin_nodes(gw)["s0"]["routable"], "sim routable")
        results = []

        def one(i):
            t0 = time.monotonic()
            st, hdrs, body = chat(gw, "hello %d" % i, timeout=30)
            return st, hdrs, body, time.monotonic() - t0
        results = in_threads(4, 1, one)
        refused = [r for r in results if r[0] == 503]
        assert any(r[0] == 200 for r in results), results
        assert refused, [r[0] for r in results]
        for st, hdrs, body, dt in refused:
            assert json.loads(body)["error"]["code"] == "capacity"
            assert int(hdrs["retry-after"]) >= 1
            assert dt >= 0.3, dt
    finally:
        gw.stop()
        sim.stop()


def test_node_busy_to_everything_gets_a_trickle_then_recovers():
    """Issue 20: a node that answers busy to everything receives at most a trickle until it
    recovers, and full traffic again at once when it does; clients are served by the others."""
    a, b = ScriptedNode("a"), ScriptedNode("b")
    gw = start_gateway([("a", a.port), ("b", b.port)], "busy.trickle_interval=200ms")
    try:
        wait_until(lambda: all(n["routable"] for n in admin_nodes(gw).values()), "both routable")
        a.all_busy = True
        t0 = time.monotonic()
        got = in_threads(4, 40, lambda i: chat(gw, "hello %d" % i)[0])
        elapsed = time.monotonic() - t0
        assert got == [200] * 160, sorted(set(got))
        # before it cooled: at most a few requests per client thread; then one per 200 ms
        assert a.received <= 4 * 4 + elapsed / 0.2 + 2, (a.received, elapsed)
        assert metric(gw, "drover_node_cooled", "a") == 1
        # it recovers: its next trickle request succeeds and traffic flows again
        a.all_busy = False
        served_a = a.served
        wait_until(lambda: chat(gw, "again")[0] == 200 and a.served > served_a,
                   "a serves again", timeout=10)
        assert metric(gw, "drover_node_cooled", "a") == 0
    finally:
        gw.stop()
        a.close()
        b.close()
