"""Agent integration: `drover agent` in front of `drover sim` (OpenAI and Ollama engine kinds),
checked against docs/node_api.md: auth, health/models/discovery shapes, inference passed
through byte for byte (stream and not), load/unload, engine down, a client leaving mid-stream,
and joining a fake gateway (pending -> approved -> secret in a 0600 state file -> reused after a
restart; a wrong token is logged). Real processes on loopback; every wait bounded; every
process stopped by pid.

The sim is shared by the module (a test that needs a model unloaded unloads it first); each
test starts its own agents, with a state file in its own temporary directory."""
import hashlib
import http.server
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from harness import (DROVER, Proc, free_port, request, sse_events, start_sim,  # noqa: E402
                     wait_until)

CHAT = "llama3.2:1b"
EMB = "nomic-embed-text"
TOKEN = "join-token-for-tests"

DISCOVERY = {"hostname": "test-node", "os": "TestOS 1", "kernel": "9.9.9", "cpus": 4,
             "ram_mb": 8192,
             "gpus": [{"index": 0, "name": "NVIDIA A10", "vram_total_mb": 23028,
                       "vram_free_mb": 22000, "compute_capability": "8.6",
                       "driver_version": "550.54.15", "cuda_version": "12.4"}]}

CONFIG = """# discovery override: deterministic answers for the test
discovery:
  hostname: test-node
  os: TestOS 1
  kernel: 9.9.9
  cpus: 4
  ram_mb: 8192
  gpus:
    - index: 0
      name: NVIDIA A10
      vram_total_mb: 23028
      vram_free_mb: 22000
      compute_capability: "8.6"
      driver_version: 550.54.15
      cuda_version: "12.4"
labels:
  zone: test
"""


def key_of(secret):
    return hashlib.sha256(secret.encode()).hexdigest()


def auth(secret):
    return {"Authorization": "Bearer " + key_of(secret)}


def write_state(path, secret):
    with open(path, "w") as f:
        json.dump({"name": "n", "secret": secret}, f)
    os.chmod(path, 0o600)


def start_agent(engine, engine_port, state, *extra, config=True):
    args = ["agent", "--engine", engine, "--engine-url", "http://127.0.0.1:%d" % engine_port,
            "--listen", "127.0.0.1:0", "--state-file", state, "--nvidia-smi", "off",
            "--name", "node-%s" % engine, "--set", "engine_timeout=2s"]
    if config:
        cfg = os.path.join(os.path.dirname(state), "agent.yaml")
        with open(cfg, "w") as f:
            f.write(CONFIG)
        args += ["--config", cfg]
    a = Proc(args + list(extra), "drover-agent ready")
    a.port = int(a.fields["listen"].rsplit(":", 1)[1])
    return a


def wait_for(pred, what, timeout=10.0):
    return wait_until(None, what, pred, timeout)


SECRET = "ab" * 32


@pytest.fixture(scope="module")
def sim():
    s = start_sim("--model", CHAT, "--model", EMB + ":embedding", "--cache-blocks", "0")
    yield s
    s.stop()


@pytest.fixture
def secret():
    return SECRET


@pytest.fixture
def state(tmp_path, secret):
    """A state file holding the agent's secret, in the test's own directory."""
    path = str(tmp_path / "agent.state")
    write_state(path, secret)
    return path


@pytest.fixture
def agent_openai(sim, state):
    a = start_agent("openai", sim.port, state)
    yield a
    assert a.stop() == 0, "agent exits 0 on SIGTERM (openai run)"


@pytest.fixture
def agent_ollama(sim, state):
    a = start_agent("ollama", sim.port, state)
    yield a
    assert a.stop() == 0, "agent exits 0 on SIGTERM (ollama run)"


def chat_body(stream, max_tokens=8):
    return {"model": CHAT, "messages": [{"role": "user", "content": "hello there"}],
            "stream": stream, "max_tokens": max_tokens}


VOLATILE = ("id", "created", "created_at", "total_duration", "load_duration",
            "prompt_eval_duration", "eval_duration")


def scrub(obj):
    if isinstance(obj, dict):
        return {k: scrub(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [scrub(v) for v in obj]
    return obj


def same_modulo_ids(a, b):
    return scrub(json.loads(a)) == scrub(json.loads(b))


def test_auth(agent_openai, secret):
    agent = agent_openai
    st, h, body = request(agent.port, "GET", "/drover/v1/health")
    assert st == 401, "health without a key"
    e = json.loads(body)["error"]
    assert e["type"] == "authentication_error" and e["message"], "OpenAI-shaped 401: %r" % e
    st, _, _ = request(agent.port, "GET", "/drover/v1/health",
                       headers={"Authorization": "Bearer " + "0" * 64})
    assert st == 401, "health with a wrong key"
    st, _, _ = request(agent.port, "GET", "/drover/v1/health",
                       headers={"Authorization": "Bearer " + secret})
    assert st == 401, "the secret itself is not the key (H is)"
    st, _, _ = request(agent.port, "POST", "/v1/chat/completions", chat_body(False))
    assert st == 401, "inference without a key"
    st, _, body = request(agent.port, "GET", "/drover/v1/ping")
    assert (st, json.loads(body)) == (200, {"ok": True}), "ping needs no key"


def test_shapes_openai(agent_openai, secret):
    agent = agent_openai
    st, _, body = request(agent.port, "GET", "/drover/v1/health", headers=auth(secret))
    assert st == 200, "health status"
    h = json.loads(body)
    assert h["status"] == "ok", "health says ok"
    assert h["engine"]["kind"] == "openai", "engine kind"
    assert h["engine"]["reachable"] == True, "engine reachable"
    assert isinstance(h["in_flight"], int) and isinstance(h["queued"], int), "counts"
    models = {m["id"]: m for m in h["models"]}
    assert CHAT in models and EMB in models, "models listed: %r" % list(models)
    assert models[CHAT]["status"] == "loaded", "openai engine: everything listed is loaded"
    assert sorted(models[CHAT]["capabilities"]) == ["chat", "completions"], "chat caps"
    assert models[EMB]["capabilities"] == ["embeddings"], "embedding caps"
    st, _, body = request(agent.port, "GET", "/drover/v1/models", headers=auth(secret))
    assert st == 200, "models status"
    assert json.loads(body)["models"] == h["models"], "models answer matches health"
    st, _, body = request(agent.port, "GET", "/drover/v1/discovery", headers=auth(secret))
    assert st == 200, "discovery status"
    assert json.loads(body) == DISCOVERY, "discovery is the config override"
    st, _, body = request(agent.port, "POST", "/drover/v1/models/load", {"model": CHAT},
                          headers=auth(secret))
    assert st == 501, "load on an openai engine is unsupported"
    assert json.loads(body)["error"]["code"] == "unsupported", "unsupported code"
    st, _, body = request(agent.port, "POST", "/drover/v1/models/load", b"{}",
                          headers=auth(secret))
    assert st == 400, "load without a model"
    st, _, _ = request(agent.port, "GET", "/drover/v1/nope", headers=auth(secret))
    assert st == 404, "unknown path"


def test_passthrough_openai(agent_openai, sim, secret):
    agent = agent_openai
    direct = request(sim.port, "POST", "/v1/chat/completions", chat_body(False))
    via = request(agent.port, "POST", "/v1/chat/completions", chat_body(False),
                  headers=auth(secret))
    assert via[0] == direct[0], "non-stream status"
    assert via[1].get("content-type") == direct[1].get("content-type"), "content type"
    assert same_modulo_ids(via[2], direct[2]), ("non-stream body identical modulo ids:\n%r\n%r"
             % (via[2], direct[2]))

    direct = request(sim.port, "POST", "/v1/chat/completions", chat_body(True))
    via = request(agent.port, "POST", "/v1/chat/completions", chat_body(True),
                  headers=auth(secret))
    assert via[0] == 200, "stream status"
    assert via[1].get("content-type") == direct[1].get("content-type"), "stream content type"
    norm = lambda b: re.sub(rb'"id":"[^"]*"|"created":\d+', b"", b)  # noqa: E731
    assert norm(via[2]) == norm(direct[2]), "stream bytes identical modulo ids"
    assert sse_events(via[2])[-1] == "[DONE]", "stream ends with [DONE]"

    direct = request(sim.port, "POST", "/v1/embeddings", {"model": EMB, "input": "abc"})
    via = request(agent.port, "POST", "/v1/embeddings", {"model": EMB, "input": "abc"},
                  headers=auth(secret))
    assert via[0] == 200 and same_modulo_ids(via[2], direct[2]), "embeddings identical"

    # the engine's own errors pass through unchanged
    direct = request(sim.port, "POST", "/v1/chat/completions", dict(chat_body(False), model="nope"))
    via = request(agent.port, "POST", "/v1/chat/completions", dict(chat_body(False), model="nope"),
                  headers=auth(secret))
    assert (via[0], via[2]) == (direct[0], direct[2]), "engine 404 passed through"
    via = request(agent.port, "POST", "/v1/chat/completions", chat_body(False),
                  headers=dict(auth(secret), **{"X-Sim-Fault": "status=503;retry_after=2"}))
    assert (via[0], via[1].get("retry-after")) == (503, "2"), "engine 503 + Retry-After passed"
    st, _, body = request(agent.port, "GET", "/v1/models", headers=auth(secret))
    assert st == 200 and CHAT in body.decode(), "GET /v1/models proxied"


def ollama_lines(body):
    return [scrub(json.loads(l)) for l in body.decode().splitlines() if l.strip()]


def health_models(agent, secret):
    st, _, body = request(agent.port, "GET", "/drover/v1/health", headers=auth(secret))
    return {m["id"]: m for m in json.loads(body)["models"]}


def test_ollama(agent_ollama, sim, secret):
    agent = agent_ollama
    # another test may have used the model, so the sim may have it loaded: start from on disk
    st, _, _ = request(agent.port, "POST", "/drover/v1/models/unload", {"model": CHAT},
                       headers=auth(secret))
    assert st == 200, "first unload"
    models = health_models(agent, secret)
    assert models[CHAT]["status"] == "on_disk", "ollama: not loaded"
    assert models[EMB]["capabilities"] == ["embeddings"], "ollama embedding caps"
    assert models[CHAT].get("size_mb", 0) > 0, "size_mb from /api/tags"
    st, _, body = request(agent.port, "POST", "/drover/v1/models/load", {"model": CHAT},
                          headers=auth(secret))
    assert (st, json.loads(body)) == (200, {"model": CHAT, "status": "loaded"}), "load"
    assert health_models(agent, secret)[CHAT]["status"] == "loaded", "loaded after load"
    _, _, ps = request(sim.port, "GET", "/api/ps")
    assert CHAT in ps.decode(), "the engine has it loaded"
    st, _, body = request(agent.port, "POST", "/drover/v1/models/unload", {"model": CHAT},
                          headers=auth(secret))
    assert (st, json.loads(body)) == (200, {"model": CHAT, "status": "unloaded"}), "unload"
    assert health_models(agent, secret)[CHAT]["status"] == "on_disk", "on disk after unload"
    st, _, body = request(agent.port, "POST", "/drover/v1/models/load", {"model": "ghost:7b"},
                          headers=auth(secret))
    assert st == 404, "load of a model the engine does not have"
    assert json.loads(body)["error"]["code"] == "model_not_found", "404 code"

    body = {"model": CHAT, "messages": [{"role": "user", "content": "hi"}],
            "options": {"num_predict": 5}}
    direct = request(sim.port, "POST", "/api/chat", body)
    via = request(agent.port, "POST", "/api/chat", body, headers=auth(secret))
    assert via[0] == 200, "ollama stream status"
    assert via[1].get("content-type") == direct[1].get("content-type"), "ndjson content type"
    assert ollama_lines(via[2]) == ollama_lines(direct[2]), "NDJSON lines identical modulo times"
    assert ollama_lines(via[2])[-1].get("done") is True, "last line done:true"
    st, _, tags = request(agent.port, "GET", "/api/tags", headers=auth(secret))
    assert st == 200 and CHAT in tags.decode(), "GET /api/tags proxied"


FAKE_SMI = """#!/bin/sh
# stands in for nvidia-smi: the CSV query, or the banner without arguments
if [ $# -eq 0 ]; then
  echo "| NVIDIA-SMI 550.54.15    Driver Version: 550.54.15      CUDA Version: 12.4     |"
  exit 0
fi
echo "0, NVIDIA A10, 23028, $(cat "$(dirname "$0")/free-mb"), 8.6, 550.54.15"
echo "1, NVIDIA L4, 23034, [N/A], 8.9, 550.54.15"
"""


def test_detected_discovery(sim, secret, state):
    TMP = os.path.dirname(state)
    smi = os.path.join(TMP, "nvidia-smi")
    with open(smi, "w") as f:
        f.write(FAKE_SMI)
    os.chmod(smi, 0o755)
    with open(os.path.join(TMP, "free-mb"), "w") as f:
        f.write("22000")
    agent = start_agent("openai", sim.port, state, "--nvidia-smi", smi, "--set",
                        "discovery_interval=100ms", config=False)
    try:
        st, _, body = request(agent.port, "GET", "/drover/v1/discovery", headers=auth(secret))
        d = json.loads(body)
        assert st == 200, "detected discovery status"
        assert d["hostname"] == socket.gethostname(), "hostname detected"
        assert d["cpus"] == os.cpu_count(), "cpus detected"
        assert d["ram_mb"] > 0 and d["kernel"] == os.uname().release, "ram and kernel"
        assert d["gpus"] == ([
            {"index": 0, "name": "NVIDIA A10", "vram_total_mb": 23028, "vram_free_mb": 22000,
             "compute_capability": "8.6", "driver_version": "550.54.15", "cuda_version": "12.4"},
            {"index": 1, "name": "NVIDIA L4", "vram_total_mb": 23034,
             "compute_capability": "8.9", "driver_version": "550.54.15", "cuda_version": "12.4"},
        ]), "GPUs from nvidia-smi output"
        # free VRAM changes: the periodic refresh picks it up
        with open(os.path.join(TMP, "free-mb.tmp"), "w") as f:
            f.write("1000")
        os.rename(os.path.join(TMP, "free-mb.tmp"), os.path.join(TMP, "free-mb"))

        def free0():
            d = json.loads(request(agent.port, "GET", "/drover/v1/discovery",
                                   headers=auth(secret))[2])
            return d["gpus"][0].get("vram_free_mb") == 1000 and d["gpus"][0]["cuda_version"]
        assert wait_for(free0, "free VRAM refreshed", 5) == "12.4", (
            "free VRAM refreshed, CUDA version kept")
    finally:
        assert agent.stop() == 0, "agent exits 0 (detected discovery run)"
    agent = start_agent("openai", sim.port, state, "--nvidia-smi",
                        os.path.join(TMP, "no-such-smi"), config=False)
    try:
        d = json.loads(request(agent.port, "GET", "/drover/v1/discovery", headers=auth(secret))[2])
        assert d["gpus"] == [], "no nvidia-smi: no GPUs"
    finally:
        agent.stop()


def test_engine_down(secret, state):
    agent = start_agent("openai", free_port(), state)
    try:
        st, h, body = request(agent.port, "POST", "/v1/chat/completions", chat_body(False),
                              headers=auth(secret))
        assert st == 502, "engine down: 502"
        assert h.get("x-drover-engine") == "unreachable", "X-Drover-Engine header"
        assert json.loads(body)["error"]["code"] == "engine_unreachable", "engine down code"
        st, _, body = request(agent.port, "GET", "/drover/v1/health", headers=auth(secret))
        h = json.loads(body)
        assert (st, h["status"], h["engine"]["reachable"]) == (503, "engine_down", False), (
            "health says engine_down")
        st, h, _ = request(agent.port, "GET", "/drover/v1/models", headers=auth(secret))
        assert (st, h.get("x-drover-engine")) == (502, "unreachable"), "models: engine down"
    finally:
        assert agent.stop() == 0, "agent exits 0 (engine-down run)"


def test_disconnect(secret, state):
    slow = start_sim("--model", CHAT, "--tokens-per-second", "20", "--slots", "1")
    agent = start_agent("openai", slow.port, state)
    try:
        def processing():
            _, _, m = request(slow.port, "GET", "/metrics")
            for line in m.decode().splitlines():
                if line.startswith("llamacpp:requests_processing"):
                    return float(line.rsplit(" ", 1)[1])
            return -1
        s = socket.create_connection(("127.0.0.1", agent.port), timeout=5)
        body = json.dumps(chat_body(True, 500)).encode()
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s"
                  b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                  % (key_of(secret).encode(), len(body), body))
        first = s.recv(4096)
        assert first.startswith(b"HTTP/1.1 200"), "slow stream started: %r" % first[:40]
        assert processing() == 1.0, "the engine's slot is busy while streaming"
        h = json.loads(request(agent.port, "GET", "/drover/v1/health", headers=auth(secret))[2])
        assert h["in_flight"] == 1, "health counts the request in flight"
        assert {m["id"]: m for m in h["models"]}[CHAT]["in_flight"] == 1, "per-model in-flight"
        s.close()
        wait_for(lambda: processing() == 0.0, "engine slot freed after the client left", 5)
        h = json.loads(request(agent.port, "GET", "/drover/v1/health", headers=auth(secret))[2])
        assert h["in_flight"] == 0, "agent in-flight back to 0"
        st, _, _ = request(agent.port, "POST", "/v1/chat/completions", chat_body(False, 2),
                           headers=auth(secret))
        assert st == 200, "the freed slot serves the next request"

        # SIGTERM while a stream runs: the stream completes, then the agent exits 0
        s = socket.create_connection(("127.0.0.1", agent.port), timeout=10)
        body = json.dumps(chat_body(True, 12)).encode()
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s"
                  b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                  % (key_of(secret).encode(), len(body), body))
        got = s.recv(4096)
        agent.signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while not got.endswith(b"0\r\n\r\n") and time.monotonic() < deadline:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        s.close()
        assert b"data: [DONE]" in got and got.endswith(b"0\r\n\r\n"), (
            "stream in flight at SIGTERM completes: %r" % got[-60:])
        try:
            agent.p.wait(timeout=10)
        except Exception:
            pass
        assert agent.p.returncode == 0, "agent exits 0 after draining"
    finally:
        assert agent.stop() == 0, "agent exits 0 (disconnect run)"
        slow.stop()


class FakeGateway:
    """The gateway's join endpoint as docs/node_api.md specifies it, in-process."""

    def __init__(self):
        self.approved = False
        self.secret = "5eed" * 16
        self.joins = []
        self.lock = threading.Lock()
        fg = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(n)
                if self.path != "/drover/v1/nodes/join":
                    return self.answer(404, {"error": {"message": "no"}})
                if self.headers.get("Authorization") != "Bearer " + TOKEN:
                    return self.answer(401, {"error": {"message": "bad join token",
                                                       "type": "authentication_error",
                                                       "code": "invalid_join_token"}})
                body = json.loads(raw)
                with fg.lock:
                    fg.joins.append(body)
                    ans = {"name": body["name"], "state": "pending", "poll_ms": 100}
                    if fg.approved:
                        ans["state"] = "approved"
                        if body.get("secret") != fg.secret:
                            ans["secret"] = fg.secret
                self.answer(200, ans)

            def answer(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.srv.server_address[1]
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def count(self):
        with self.lock:
            return len(self.joins)

    def last(self):
        with self.lock:
            return self.joins[-1] if self.joins else None

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def log_has(proc, text):
    return text in proc.read_log()


@pytest.fixture
def fake_gateway():
    gw = FakeGateway()
    yield gw
    gw.close()


def test_join(sim, fake_gateway, tmp_path):
    gw = fake_gateway
    d = str(tmp_path / "join")
    os.makedirs(d)
    state = os.path.join(d, "agent.state")
    url = "http://127.0.0.1:%d" % gw.port
    agent = start_agent("ollama", sim.port, state, "--gateway", url, "--join-token", TOKEN,
                        "--poll-interval", "60s")
    try:
        # a second join within 5 s proves the answer's poll_ms (100) overrides the 60 s
        wait_for(lambda: gw.count() >= 2, "two pending joins (poll_ms from the answer)", 5)
        j = gw.last()
        assert j["name"] == "node-ollama", "join name"
        assert j["url"] == "http://127.0.0.1:%d" % agent.port, "join url is the advertised one"
        assert j["engine"] == "ollama", "join engine"
        assert j["labels"] == {"zone": "test"}, "join labels"
        disc = dict(j["discovery"])
        ops = disc.pop("ops", None)
        assert disc == DISCOVERY, "join carries discovery"
        assert ops == (["model.install", "model.upgrade", "model.delete", "model.load",
                       "model.unload"]), "an Ollama agent takes the adapter's model ops"
        assert "secret" not in j, "no secret before approval"
        assert not os.path.exists(state), "no state file while pending"
        st, _, _ = request(agent.port, "GET", "/drover/v1/health", headers=auth(gw.secret))
        assert st == 401, "pending agent refuses every key"
        gw.approved = True
        wait_for(lambda: os.path.exists(state), "state file after approval", 10)
        assert stat.S_IMODE(os.stat(state).st_mode) == 0o600, "state file mode 0600"
        with open(state) as f:
            assert json.load(f)["secret"] == gw.secret, "the issued secret is stored"
        assert not os.path.exists(state + ".tmp"), "no temporary file left"
        st, _, _ = request(agent.port, "GET", "/drover/v1/health", headers=auth(gw.secret))
        assert st == 200, "approved agent accepts H"
        n = gw.count()
        wait_for(lambda: gw.count() > n, "a rejoin after approval", 10)
        assert gw.last().get("secret") == gw.secret, "rejoin sends the secret"
        assert log_has(agent, "state=approved"), "approval logged"
    finally:
        assert agent.stop() == 0, "agent exits 0 (join run)"

    # restart: the secret comes from the state file, before any join
    n = gw.count()
    agent = start_agent("ollama", sim.port, state, "--gateway", url, "--join-token", TOKEN)
    try:
        st, _, _ = request(agent.port, "GET", "/drover/v1/health", headers=auth(gw.secret))
        assert st == 200, "restarted agent accepts H at once"
        wait_for(lambda: gw.count() > n, "join after restart", 10)
        assert gw.joins[n].get("secret") == gw.secret, "first join after restart sends S"
    finally:
        assert agent.stop() == 0, "agent exits 0 (restart run)"

    # wrong token: 401 from the gateway is logged, once, with the reason
    bad_state = os.path.join(d, "bad.state")
    n = gw.count()
    agent = start_agent("ollama", sim.port, bad_state, "--gateway", url, "--join-token", "wrong")
    try:
        wait_for(lambda: log_has(agent, "join_refused"), "join_refused logged", 10)
        log = agent.read_log()
        assert "status=401" in log and "join token" in log, "401 logged with a reason"
        assert gw.count() == n, "nothing joined with a wrong token"
        assert not os.path.exists(bad_state), "no state file with a wrong token"
    finally:
        assert agent.stop() == 0, "agent exits 0 (wrong token run)"


def test_cli(tmp_path):
    TMP = str(tmp_path)
    r = subprocess.run([DROVER, "agent", "--help"], capture_output=True, timeout=10)
    assert r.returncode == 0 and b"--join-token" in r.stdout, "--help"
    bad = os.path.join(TMP, "bad.yaml")
    with open(bad, "w") as f:
        f.write("engine: ollama\nengine_typo: 1\n")
    r = subprocess.run([DROVER, "agent", "--config", bad], capture_output=True, timeout=10)
    err = r.stderr.decode()
    assert r.returncode == 2, "bad config exits 2"
    assert err.count("\n") == 1 and "bad.yaml:2:" in err, "one line with file:line: %r" % err
    r = subprocess.run([DROVER, "agent", "--engine", "tgi"], capture_output=True, timeout=10)
    assert r.returncode == 2 and b"tgi" in r.stderr, "bad engine kind refused"
    r = subprocess.run([DROVER, "agent", "--bogus"], capture_output=True, timeout=10)
    assert r.returncode == 2, "unknown flag exits 2"
