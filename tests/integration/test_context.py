"""Context length as a routing constraint (issue 18, docs/routing.md "Context length"): real
`drover sim` nodes started with different `--ctx` behind a real `drover serve`. What a user
would notice: the gateway learns each node's context where the engine shows it (the admin API
says so), a long prompt goes only to a node whose context holds it, one no node can hold gets
OpenAI's 400 context_length_exceeded (from the gateway itself, or after a node's own refusal,
which never costs the node anything), a node that refuses for its context hands the request
to a larger one, and one that only a busy or down node could hold gets the usual 503.

Sizes: the sim counts a prompt as ceil(content bytes / 4) tokens; the gateway estimates
ceil(bytes / 3) + 8 per message + 8 (high) and bytes / 8 (sure), so 3000 bytes (750 tokens)
may not fit 512 and surely fits 4096, 6000 bytes (1500) surely does not fit 512, 20000 bytes
(5000) may fit 4096 by the estimate but does not, and 40000 bytes surely fits nowhere.
"""
import json
import os
import socket
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness import Proc, request, start_sim, wait_for

SMALL, BIG = 512, 4096


def start_gw(tmp, nodes, extra=()):
    args = ["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
            "--set", "health.interval=100ms", "--set", "health.rise=1",
            "--set", "health.jitter=20ms", "--set", "log_level=info"]
    for name, port, kind in nodes:
        args += ["--node", "%s=http://127.0.0.1:%d,%s" % (name, port, kind)]
    gw = Proc(args + list(extra), "drover-serve ready",
              env={"DROVER_STORE_PATH": os.path.join(tmp, "gw.db")})
    gw.api = int(gw.fields["listen"].rsplit(":", 1)[1])
    gw.admin = int(gw.fields["admin"].rsplit(":", 1)[1])
    return gw


def admin_nodes(gw):
    _, _, body = request(gw.admin, "GET", "/admin/v1/nodes")
    return {n["name"]: n for n in json.loads(body)["nodes"]}


def model_entry(gw, node, model="m"):
    for m in admin_nodes(gw)[node]["models"]:
        if m["id"] == model:
            return m
    return None


def learned(gw, want):
    """Every node in want ({name: ctx}) routable with its context learned."""
    nodes = admin_nodes(gw)
    for name, ctx in want.items():
        m = model_entry(gw, name)
        if not nodes[name]["routable"] or not m or m.get("context_length") != ctx:
            return False
    return True


def chat(gw, nbytes, max_tokens=4, headers=None, stream=False, timeout=15.0):
    body = {"model": "m", "messages": [{"role": "user", "content": "word " * (nbytes // 5)}]}
    if max_tokens:
        body["max_tokens"] = max_tokens
    if stream:
        body["stream"] = True
    return request(gw.api, "POST", "/v1/chat/completions", body, headers=headers,
                   timeout=timeout)


def sim_requests(port):
    _, _, body = request(port, "GET", "/metrics")
    for line in body.decode().splitlines():
        if line.startswith("drover_sim_requests_total"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def assert_context_400(st, h, body, n_ctx):
    assert st == 400, body
    err = json.loads(body)["error"]
    assert err["code"] == "context_length_exceeded", err
    assert err["type"] == "invalid_request_error", err
    assert err["param"] == "messages", err
    assert err["message"].startswith(
        "This model's maximum context length is %d tokens. However, " % n_ctx), err
    return err


@pytest.fixture(scope="module")
def fleet():
    tmp = tempfile.mkdtemp(prefix="drover-ctx-")
    small = start_sim("--model", "m", "--preload", "--ctx", str(SMALL))
    big = start_sim("--model", "m", "--preload", "--ctx", str(BIG))
    gw = start_gw(tmp, [("small", small.port, "llamacpp"), ("big", big.port, "llamacpp")])
    wait_for("both contexts learned", lambda: learned(gw, {"small": SMALL, "big": BIG}))
    yield gw, small, big
    gw.stop()
    small.stop()
    big.stop()


def test_admin_api_shows_the_learned_context(fleet):
    gw, _, _ = fleet
    for name, ctx in (("small", SMALL), ("big", BIG)):
        m = model_entry(gw, name)
        assert m["context_length"] == ctx and m["context_source"] == "models", m


def test_short_prompts_go_anywhere(fleet):
    gw, _, _ = fleet
    seen = {chat(gw, 100)[1]["x-drover-node"] for _ in range(6)}
    assert seen == {"small", "big"}, seen


def test_a_long_prompt_goes_only_to_the_large_context_node(fleet):
    gw, small, _ = fleet
    before = sim_requests(small.port)
    for nbytes, max_tokens in ((3000, 4), (6000, 4), (1600, 300)):
        for _ in range(4):
            st, h, body = chat(gw, nbytes, max_tokens=max_tokens,
                               headers={"X-Drover-Explain": "1"})
            assert st == 200, body
            assert h["x-drover-node"] == "big", (nbytes, h)
            assert h["x-drover-attempts"] == "1", h
            assert "need=" in h["x-drover-route"] and "ctx=%d" % BIG in h["x-drover-route"], h
    assert sim_requests(small.port) == before, "the small node never saw a long prompt"


def test_no_node_can_hold_it_is_a_400_from_the_gateway(fleet):
    gw, small, big = fleet
    before = sim_requests(small.port) + sim_requests(big.port)
    st, h, body = chat(gw, 40000, max_tokens=None)
    err = assert_context_400(st, h, body, BIG)
    assert "your messages resulted in" in err["message"], err
    assert "x-drover-attempts" not in h, "no node was asked"
    # with a completion, OpenAI's other wording
    st, h, body = chat(gw, 40000, max_tokens=100)
    err = assert_context_400(st, h, body, BIG)
    assert "in the completion" in err["message"], err
    assert sim_requests(small.port) + sim_requests(big.port) == before


def test_a_nodes_refusal_is_the_clients_400_and_costs_the_node_nothing(fleet):
    gw, _, _ = fleet
    for _ in range(5):
        st, h, body = chat(gw, 20000, max_tokens=None)
        err = assert_context_400(st, h, body, BIG)
        # the node counted: its number, not the estimate
        assert "resulted in 5000 tokens" in err["message"], err
        assert h["x-drover-node"] == "big" and h["x-drover-attempts"] == "1", h
    big = admin_nodes(gw)["big"]
    assert big["routable"] and big["consecutive_faults"] == 0 and not big["excluded"], big
    st, h, _ = chat(gw, 3000)
    assert st == 200 and h["x-drover-node"] == "big"


def test_completions_and_the_ollama_api_are_judged_too(fleet):
    gw, _, _ = fleet
    st, _, body = request(gw.api, "POST", "/v1/completions",
                          {"model": "m", "prompt": "x" * 40000, "max_tokens": 4})
    err = json.loads(body)["error"]
    assert st == 400 and err["code"] == "context_length_exceeded" and err["param"] == "prompt"
    # Ollama's API: its own error shape, options.num_predict as the completion
    st, _, body = request(gw.api, "POST", "/api/chat",
                          {"model": "m", "stream": False, "options": {"num_predict": 10},
                           "messages": [{"role": "user", "content": "word " * 8000}]})
    err = json.loads(body)["error"]
    assert st == 400 and err.startswith("This model's maximum context length is %d" % BIG), body
    assert "10 in the completion" in err, err
    st, h, body = request(gw.api, "POST", "/api/chat",
                          {"model": "m", "stream": False,
                           "messages": [{"role": "user", "content": "word " * 600}]})
    assert st == 200 and h["x-drover-node"] == "big", body


def test_a_refusal_moves_the_request_to_a_larger_node(tmp_path):
    """A node whose context the gateway cannot learn refuses; the request goes on to a node
    with a larger context, and the gateway remembers what the refusal said."""
    hidden = start_sim("--model", "m", "--preload", "--ctx", str(SMALL), "--hide-ctx", "all")
    big = start_sim("--model", "m", "--preload", "--ctx", str(BIG))
    gw = start_gw(str(tmp_path), [("hidden", hidden.port, "llamacpp"),
                                  ("big", big.port, "llamacpp")])
    try:
        wait_for("both routable, big's context learned",
                 lambda: learned(gw, {"big": BIG}) and admin_nodes(gw)["hidden"]["routable"])
        assert model_entry(gw, "hidden")["context_length"] is None
        attempts = []
        for _ in range(6):
            st, h, body = chat(gw, 3000)
            assert st == 200, body
            assert h["x-drover-node"] == "big", h
            attempts.append(h["x-drover-attempts"])
        assert "2" in attempts, "one request went to the hidden node first: %r" % attempts
        assert attempts[-1] == "1", "then the refusal's context was known: %r" % attempts
        m = model_entry(gw, "hidden")
        assert m["context_length"] == SMALL and m["context_source"] == "rejection", m
        hn = admin_nodes(gw)["hidden"]
        assert hn["routable"] and hn["consecutive_faults"] == 0, hn
        # short prompts still use both
        seen = {chat(gw, 100)[1]["x-drover-node"] for _ in range(6)}
        assert seen == {"hidden", "big"}, seen
    finally:
        gw.stop()
        hidden.stop()
        big.stop()


def test_only_a_down_node_could_hold_it_is_a_503(tmp_path):
    small = start_sim("--model", "m", "--preload", "--ctx", str(SMALL))
    big = start_sim("--model", "m", "--preload", "--ctx", str(BIG))
    gw = start_gw(str(tmp_path), [("small", small.port, "llamacpp"),
                                  ("big", big.port, "llamacpp")],
                  extra=["--set", "health.timeout=300ms"])
    try:
        wait_for("both contexts learned", lambda: learned(gw, {"small": SMALL, "big": BIG}))
        big.stop()
        wait_for("big not routable", lambda: not admin_nodes(gw)["big"]["routable"])
        for nbytes in (6000, 3000):  # surely too long for small; maybe too long for it
            st, h, body = chat(gw, nbytes)
            assert st == 503, body
            assert json.loads(body)["error"]["code"] == "feasible_node_unhealthy", body
            assert int(h["retry-after"]) >= 1, h
        # what small can hold is served
        st, h, _ = chat(gw, 100)
        assert st == 200 and h["x-drover-node"] == "small"
        sn = admin_nodes(gw)["small"]
        assert sn["consecutive_faults"] == 0 and sn["routable"], sn
    finally:
        gw.stop()
        small.stop()


def open_stream(port, nbytes, tokens):
    """A stream the test holds open (the sim paces tokens); the socket after the first event."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    body = json.dumps({"model": "m", "stream": True, "max_tokens": tokens,
                       "messages": [{"role": "user", "content": "word " * (nbytes // 5)}]})
    s.sendall(("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
               "application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)).encode())
    got = b""
    while b"data:" not in got:
        chunk = s.recv(4096)
        assert chunk, "stream closed early"
        got += chunk
    return s, got


def test_only_a_busy_node_could_hold_it_is_a_503_capacity(tmp_path):
    small = start_sim("--model", "m", "--preload", "--ctx", str(SMALL))
    big = start_sim("--model", "m", "--preload", "--ctx", str(BIG), "--slots", "1",
                    "--queue", "0", "--busy-retry-after", "1", "--tokens-per-second", "20")
    gw = start_gw(str(tmp_path), [("small", small.port, "llamacpp"),
                                  ("big", big.port, "llamacpp")],
                  extra=["--set", "queue.max_wait=300ms"])
    try:
        wait_for("both contexts learned", lambda: learned(gw, {"small": SMALL, "big": BIG}))
        held, head = open_stream(gw.api, 6000, 2000)  # big's only slot, for a long while
        assert b"x-drover-node: big" in head.lower(), head
        try:
            st, h, body = chat(gw, 6000)
            assert st == 503, body
            assert json.loads(body)["error"]["code"] == "capacity", body
            assert int(h["retry-after"]) >= 1, h
            st, h, _ = chat(gw, 100)
            assert st == 200 and h["x-drover-node"] == "small"
        finally:
            held.close()
    finally:
        gw.stop()
        small.stop()
        big.stop()


@pytest.mark.parametrize("kind,hide,source", [("llamacpp", "models", "props"),
                                              ("vllm", "none", "models"),
                                              ("ollama", "none", "api_show")])
def test_context_is_learned_where_each_engine_shows_it(tmp_path, kind, hide, source):
    sim = start_sim("--model", "m", "--ctx", "2048", "--hide-ctx", hide)
    gw = start_gw(str(tmp_path), [("n", sim.port, kind)])
    try:
        def seen():
            m = model_entry(gw, "n")
            return m and m.get("context_length") == 2048 and m
        m = wait_for("the context learned from %s" % source, seen)
        assert m["context_source"] == source, m
    finally:
        gw.stop()
        sim.stop()


def test_an_agent_reports_its_engines_context(tmp_path):
    """Through `drover agent`: the agent reads its llama-server's /props (the sim shows the
    context nowhere else here) and reports context_length; the gateway routes by it, and the
    engine's refusal passes back through the agent as the client's 400."""
    sim = start_sim("--model", "m", "--preload", "--ctx", "1024", "--hide-ctx", "models")
    gw = start_gw(str(tmp_path), [], extra=["--set", "join.token=join-token-for-ctx",
                                            "--set", "join.poll_interval=200ms",
                                            "--set", "allow_empty_fleet=true"])
    state = str(tmp_path / "agent.state")
    agent = Proc(["agent", "--gateway", "http://127.0.0.1:%d" % gw.api,
                  "--join-token", "join-token-for-ctx", "--engine", "llamacpp",
                  "--engine-url", "http://127.0.0.1:%d" % sim.port, "--listen", "127.0.0.1:0",
                  "--state-file", state, "--nvidia-smi", "off", "--name", "a1"],
                 "drover-agent ready")
    try:
        wait_for("a1 joined", lambda: "a1" in admin_nodes(gw))
        st, _, body = request(gw.admin, "POST", "/admin/v1/nodes/a1/approve")
        assert st == 200, body
        m = wait_for("a1's context from its agent",
                     lambda: (model_entry(gw, "a1") or {}).get("context_length") == 1024 and
                     model_entry(gw, "a1"))
        assert m["context_source"] == "agent", m
        st, h, body = chat(gw, 6000, max_tokens=None)  # 1500 tokens: the estimate cannot say
        assert_context_400(st, h, body, 1024)
        assert h["x-drover-attempts"] == "1" and h["x-drover-node"] == "a1", h
        st, h, body = chat(gw, 40000)  # surely too long: no attempt
        assert_context_400(st, h, body, 1024)
        assert "x-drover-attempts" not in h, h
        st, h, body = chat(gw, 1000)
        assert st == 200 and h["x-drover-node"] == "a1", body
        n = admin_nodes(gw)["a1"]
        assert n["routable"] and n["consecutive_faults"] == 0, n
    finally:
        agent.stop()
        gw.stop()
        sim.stop()


class FailingNode:
    """An OpenAI-compatible node that lists "m" (saying no context) and answers every
    completion 500: a node that might hold any request, and fails."""

    def __init__(self):
        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def send(self, status, obj):
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self.send(200, {"object": "list", "data": [{"id": "m"}]})

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send(500, {"error": {"message": "internal error", "type": "server_error"}})

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def test_a_refusal_does_not_hide_a_larger_nodes_failure(tmp_path):
    """small refuses for its context; the only other node, whose context is unknown, failed
    with a 500: the client gets that failure (502), not a 400 saying nothing could hold it."""
    small = start_sim("--model", "m", "--preload", "--ctx", str(SMALL))
    bad = FailingNode()
    gw = start_gw(str(tmp_path), [("small", small.port, "llamacpp"),
                                  ("bad", bad.port, "openai")])
    try:
        wait_for("small's context learned, bad routable",
                 lambda: learned(gw, {"small": SMALL}) and admin_nodes(gw)["bad"]["routable"])
        st, h, body = chat(gw, 3000)  # fits bad (unknown context), tight on small
        assert st == 502, body
        assert json.loads(body)["error"]["code"] == "upstream_failed", body
        assert h["x-drover-attempts"] == "2", h
        # what small surely cannot hold never reaches it; bad's 500 is the answer
        st, h, body = chat(gw, 6000)
        assert st == 502 and h["x-drover-node"] == "bad", (st, h, body)
        sn = admin_nodes(gw)["small"]
        assert sn["consecutive_faults"] == 0, sn
    finally:
        gw.stop()
        bad.close()
        small.stop()
