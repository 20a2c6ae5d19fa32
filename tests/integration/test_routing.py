"""Routing policies end to end (docs/routing.md): real `drover sim` nodes (llama-server's
/metrics format, prefix cache on) behind a real `drover serve` whose catalogue picks a policy
per model. What a user would notice: a shared prompt keeps landing on the node that has it
cached (the sim says so in usage.cached_tokens), a session stays on its node, the default
policy applies to models without one, every decision can be explained in a header and in the
log line, the engines' own load reports are scraped, and the in-flight counts the policies
read go back to exactly what is open after every kind of failure.
"""
import http.client
import json
import os
import socket
import tempfile

import pytest

from harness import Proc, request, start_sim, wait_for

CONFIG = """
routing:
  policy: round_robin
models:
  - id: m
    routing: cache_aware
  - id: s
    routing: session
"""

SYSTEM = " ".join("You are assistant number %d of the fleet and you answer briefly." % i
                  for i in range(40))


def start_gw(tmp, sim, extra=()):
    cfg = os.path.join(tmp, "gw.yaml")
    with open(cfg, "w") as f:
        f.write(CONFIG)
    args = ["serve", "--config", cfg, "--listen", "127.0.0.1:0",
            "--admin-listen", "127.0.0.1:0", "--set", "health.interval=100ms",
            "--set", "health.rise=1", "--set", "log_level=info"]
    for name, port in zip("abc", sim.ports):
        args += ["--node", "%s=http://127.0.0.1:%d,llamacpp" % (name, port)]
    gw = Proc(args + list(extra), "drover-serve ready",
              env={"DROVER_STORE_PATH": os.path.join(tmp, "gw.db")})
    gw.api = int(gw.fields["listen"].rsplit(":", 1)[1])
    gw.admin = int(gw.fields["admin"].rsplit(":", 1)[1])

    def ready():
        _, _, body = request(gw.api, "GET", "/v1/models")
        ids = {m["id"] for m in json.loads(body)["data"]}
        if not {"m", "s", "r"} <= ids:
            return False
        _, _, nodes = request(gw.admin, "GET", "/admin/v1/nodes")
        return all(n.get("routable") for n in json.loads(nodes)["nodes"])
    wait_for("every node routable with every model", ready)
    return gw


@pytest.fixture(scope="module")
def fleet():
    tmp = tempfile.mkdtemp(prefix="drover-routing-")
    sim = start_sim("--model", "m", "--model", "s", "--model", "r", "--preload",
                    "--ttft-per-token-ms", "0.01", "--slots", "8", nodes=3)
    gw = start_gw(tmp, sim)
    yield gw
    gw.stop()
    sim.stop()


def chat(gw, model, content, system=SYSTEM, headers=None, user=None, stream=False):
    body = {"model": model, "max_tokens": 4,
            "messages": [{"role": "system", "content": system},
                         {"role": "user", "content": content}]}
    if user:
        body["user"] = user
    if stream:
        body["stream"] = True
    return request(gw.api, "POST", "/v1/chat/completions", body, headers=headers)


def test_cache_aware_follows_the_prefix_and_explains(fleet):
    gw = fleet
    st, h, body = chat(gw, "m", "first question", headers={"X-Drover-Explain": "1"})
    assert st == 200, body
    home = h["x-drover-node"]
    route = h.get("x-drover-route", "")
    assert route.startswith("policy=cache_aware node=%s " % home), route
    assert "loads=" in route, route
    cached = []
    for i in range(6):
        st, h, body = chat(gw, "m", "question %d of a long conversation" % i,
                           headers={"X-Drover-Explain": "1"})
        assert st == 200
        assert h["x-drover-node"] == home, (h, "a shared system prompt stays where it is cached")
        assert "match=" in h["x-drover-route"]
        cached.append(json.loads(body)["usage"]["prompt_tokens_details"]["cached_tokens"])
    assert min(cached) > 0, "the engine had the prefix every time: %r" % cached
    # without the request header there is no route header (routing.explain is off) ...
    st, h, _ = chat(gw, "m", "no explanation asked")
    assert st == 200 and "x-drover-route" not in h
    # ... but the log line always says how it was routed
    wait_for("a request log line with its route",
             lambda: "route=\"policy=cache_aware node=%s" % home in open(gw.log_path).read())
    # another system prompt goes elsewhere (the nodes without cached prefixes first)
    st, h, _ = chat(gw, "m", "q", system=SYSTEM.replace("assistant", "helper"))
    assert st == 200 and h["x-drover-node"] != home


def test_session_policy_keeps_a_session_on_its_node(fleet):
    gw = fleet
    seen = {}
    for key in ("alice", "bob", "carol", "dave", "erin", "frank"):
        nodes = {chat(gw, "s", "hi", headers={"X-Session-Id": key})[1]["x-drover-node"]
                 for _ in range(4)}
        assert len(nodes) == 1, "one session, one node: %r" % nodes
        seen[key] = nodes.pop()
    assert len(set(seen.values())) > 1, "sessions spread over the nodes: %r" % seen
    # the body's `user` field is a session key too
    nodes = {chat(gw, "s", "hi", user="user-42")[1]["x-drover-node"] for _ in range(4)}
    assert len(nodes) == 1
    st, h, _ = chat(gw, "s", "hi", headers={"X-Session-Id": "alice", "X-Drover-Explain": "1"})
    assert h["x-drover-route"].startswith("policy=session node=" + seen["alice"])


def test_global_policy_for_models_without_one(fleet):
    gw = fleet
    nodes = []
    for _ in range(6):
        st, h, _ = chat(gw, "r", "hi", headers={"X-Drover-Explain": "1"})
        assert st == 200
        assert h["x-drover-route"].startswith("policy=round_robin ")
        nodes.append(h["x-drover-node"])
    assert sorted(set(nodes)) == ["a", "b", "c"], nodes


def test_engine_signals_are_scraped(fleet):
    gw = fleet

    def scraped():
        _, _, body = request(gw.admin, "GET", "/metrics")
        lines = [l for l in body.decode().splitlines()
                 if l.startswith("drover_node_engine_running{")]
        return len(lines) == 3 and lines
    wait_for("engine signals of all three nodes", scraped)


def admin_inflight(gw):
    _, _, body = request(gw.admin, "GET", "/admin/v1/nodes")
    nodes = json.loads(body)["nodes"]
    node_total = sum(n["in_flight"] for n in nodes)
    model_total = sum(m["in_flight"] for n in nodes for m in n.get("models", [])
                      if isinstance(m, dict) and "in_flight" in m)
    return node_total, model_total


def open_stream(port, model, tokens):
    """A stream the test holds open (the sim paces tokens); returns the socket after the
    response head arrived."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    body = json.dumps({"model": model, "stream": True, "max_tokens": tokens,
                       "messages": [{"role": "user", "content": "tell a long story"}]})
    s.sendall(("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
               "application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)).encode())
    got = b""
    while b"data:" not in got:
        chunk = s.recv(4096)
        assert chunk, "stream closed early"
        got += chunk
    return s


def test_inflight_counts_go_back_exactly(tmp_path):
    """Every path that sends to a node raises the counts once and lowers them once: after
    resets, cut streams, 5xx, busy answers and clients that leave, the counts equal exactly the
    streams still open (a double decrement would show fewer, a missed one more), then 0."""
    sim = start_sim("--model", "m", "--model", "s", "--model", "r", "--preload",
                    "--tokens-per-second", "20", "--slots", "16", nodes=3)
    gw = start_gw(str(tmp_path), sim, extra=["--set", "faults.threshold=1000",
                                             "--set", "queue.max_wait=1s"])
    try:
        held = [open_stream(gw.api, "r", 4000) for _ in range(3)]
        assert admin_inflight(gw) == (3, 3)
        def faulty(fault):
            for stream in (False, True):
                body = {"model": "r", "max_tokens": 5, "stream": stream,
                        "messages": [{"role": "user", "content": "x"}]}
                try:
                    request(gw.api, "POST", "/v1/chat/completions", body,
                            headers={"X-Sim-Fault": fault}, timeout=15)
                except (OSError, http.client.HTTPException):
                    pass
        for fault in ("reset", "status=500", "cut_after=2", "status=400",
                      "slow_headers=50;status=502"):
            faulty(fault)
        # clients that leave mid-stream
        for _ in range(3):
            open_stream(gw.api, "r", 400).close()
        # busy answers last: they lower the nodes' concurrency limits (docs/gateway.md), so
        # later requests would wait for capacity
        faulty("status=503;retry_after=1")
        wait_for("only the held streams in flight", lambda: admin_inflight(gw) == (3, 3),
                 timeout=20)
        for s in held:
            s.close()
        wait_for("nothing in flight", lambda: admin_inflight(gw) == (0, 0), timeout=20)
    finally:
        gw.stop()
        sim.stop()
