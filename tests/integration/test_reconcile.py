"""test_reconcile — issue 12 §4: the replicas reconciler never sends a load that cannot
succeed. A real `drover serve` with `replicas.min: 1` entries and scripted agents (the
gateway's side of docs/node_api.md, copied from fake_agent.py and extended with the
load endpoint and an engine kind):

- a llama.cpp agent (its engine cannot load on request): no load is ever sent to it;
- an Ollama agent without the model on disk: no load is sent for it;
- an Ollama agent whose load of a model on its disk fails: one load, then the (model, node)
  pair backs off (30 s), and the backoff ends when the node's disk list changes.

Loads are counted by the agents over a window measured in reconciler passes (the admin API's
`replicas_status.reconciler_passes`), never by sleeping. Loopback only; every wait bounded;
every process ended by its pid (harness.py).
"""
import hashlib
import http.server
import json
import os
import shutil
import sys
import tempfile
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from harness import Proc, request  # noqa: E402

JOIN = "jt"
PASSES = 15  # the window: this many reconciler passes (100 ms each)

CATALOGUE = """
models:
  - {id: m-llama, selector: {pool: llama}, replicas: {min: 1}}
  - {id: m-absent, selector: {pool: olla}, replicas: {min: 1}}
  - {id: m-failing, selector: {pool: olla}, replicas: {min: 1}}
"""


class ScriptedAgent:
    """An agent as the gateway sees it (/drover/v1/health, /drover/v1/models/load|unload,
    behind Bearer H where H = hex(SHA-256(secret))), with an engine kind, a scripted model
    list and scripted load answers. Counts every load it is sent, per model."""

    def __init__(self, name, engine, labels, models):
        self.name = name
        self.engine = engine
        self.labels = labels
        self.secret = None
        self.lock = threading.Lock()
        self.models = dict(models)  # id -> "loaded" | "on_disk"
        self.loads = {}  # model -> count
        self.load_answer = {}  # model -> (status, body); default: the engine's own answer
        agent = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go in two writes

            def log_message(self, *a):
                pass

            def _send(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self):
                want = agent.key()
                return want is not None and \
                    self.headers.get("Authorization", "") == "Bearer " + want

            def do_GET(self):
                if not self._authorized():
                    return self._send(401, {"error": {"message": "no", "code": "unauthorized"}})
                if self.path == "/drover/v1/health":
                    with agent.lock:
                        models = [{"id": k, "status": v, "capabilities": ["chat"],
                                   "in_flight": 0} for k, v in sorted(agent.models.items())]
                    return self._send(200, {
                        "status": "ok", "in_flight": 0, "queued": 0,
                        "engine": {"kind": agent.engine, "url": "x", "reachable": True},
                        "models": models})
                return self._send(404, {"error": {"message": "nope"}})

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(n)
                if not self._authorized():
                    return self._send(401, {"error": {"message": "no", "code": "unauthorized"}})
                if self.path in ("/drover/v1/models/load", "/drover/v1/models/unload"):
                    model = json.loads(raw)["model"]
                    if self.path.endswith("/unload"):
                        with agent.lock:
                            agent.models[model] = "on_disk"
                        return self._send(200, {"model": model, "status": "unloaded"})
                    with agent.lock:
                        agent.loads[model] = agent.loads.get(model, 0) + 1
                        status, body = agent.answer_for(model)
                        if status == 200:
                            agent.models[model] = "loaded"
                    return self._send(status, body)
                return self._send(404, {"error": {"message": "nope"}})

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d" % self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def answer_for(self, model):
        """What the real agent would answer (docs/agent.md), unless scripted otherwise."""
        if model in self.load_answer:
            return self.load_answer[model]
        if self.engine != "ollama":
            return 501, {"error": {"message": "the %s engine cannot load models on request"
                                   % self.engine, "type": "unsupported",
                                   "code": "unsupported"}}
        if model not in self.models:
            return 404, {"error": {"message": "model '%s' not found, try pulling it first"
                                   % model, "code": "model_not_found"}}
        return 200, {"model": model, "status": "loaded", "size_mb": 100}

    def key(self):
        return hashlib.sha256(self.secret.encode()).hexdigest() if self.secret else None

    def load_count(self, model=None):
        with self.lock:
            return sum(v for k, v in self.loads.items() if model is None or k == model)

    def join_body(self):
        return {"name": self.name, "url": self.url, "engine": self.engine,
                "labels": self.labels, "agent_version": "test",
                "discovery": {"hostname": self.name, "cpus": 2, "gpus": [], "ops": []}}

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def wait(what, fn, timeout=15.0):
    """Polls fn every 50 ms for at most timeout seconds; returns its first true value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            v = fn()
        except (OSError, ValueError, KeyError):
            v = None
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


class Fleet:
    def __init__(self, tmp):
        cfg = os.path.join(tmp, "gw.yaml")
        with open(cfg, "w") as f:
            f.write(CATALOGUE)
        self.gw = Proc(["serve", "--config", cfg, "--listen", "127.0.0.1:0",
                        "--admin-listen", "127.0.0.1:0", "--set", "join.token=" + JOIN,
                        "--set", "join.auto_approve=true", "--set", "health.interval=100ms",
                        "--set", "health.rise=1", "--set", "health.fall=2",
                        "--set", "health.timeout=3s",
                        "--set", "placement.reconcile_interval=100ms",
                        "--set", "placement.load_wait=2s", "--set", "placement.replica_idle=0"],
                       "drover-serve ready",
                       env={"DROVER_STORE_PATH": os.path.join(tmp, "gw.db")})
        self.api = int(self.gw.fields["listen"].rsplit(":", 1)[1])
        self.admin_port = int(self.gw.fields["admin"].rsplit(":", 1)[1])
        self.agents = {
            "llama": ScriptedAgent("llama", "llamacpp", {"pool": "llama"}, {"other": "loaded"}),
            "olla": ScriptedAgent("olla", "ollama", {"pool": "olla"},
                                  {"m-failing": "on_disk"}),
        }
        # the Ollama node has m-failing's files, but its engine fails to load it
        self.agents["olla"].load_answer["m-failing"] = (
            502, {"error": {"message": "engine answered 500: out of memory",
                            "code": "engine_failed"}})
        for a in self.agents.values():
            st, _, data = request(self.api, "POST", "/drover/v1/nodes/join", body=a.join_body(),
                                  headers={"Authorization": "Bearer " + JOIN})
            assert st == 200, data
            a.secret = json.loads(data)["secret"]
        for name in self.agents:
            wait(name + " routable", lambda name=name: self.node(name).get("routable"))

    def admin(self, method, path, body=None):
        st, _, data = request(self.admin_port, method, path, body=body)
        return st, json.loads(data)

    def node(self, name):
        return self.admin("GET", "/admin/v1/nodes/" + name)[1]

    def model(self, mid):
        return self.admin("GET", "/admin/v1/models/" + mid)[1]

    def passes(self):
        return self.model("m-llama")["replicas_status"]["reconciler_passes"]

    def wait_passes(self, k):
        """Waits for k more reconciler passes: the window is counted, not slept. Returns the
        log lines written meanwhile."""
        mark = len(self.log())
        start = self.passes()
        wait("%d reconciler passes" % k, lambda: self.passes() >= start + k, timeout=30)
        return self.log()[mark:].splitlines()

    def log(self):
        with open(self.gw.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def blocked_lines(self, mid, lines=None):
        return [ln for ln in (self.log().splitlines() if lines is None else lines)
                if "reconcile_blocked" in ln and ("model=%s " % mid) in ln]

    def said_once(self, mid, reason, window):
        """The reason is logged once per change, not once per pass: none came in the window,
        some line carries it, and no reason text is logged twice in a row. (Before every node
        was routable the whole reason could differ in another node's part, which is a change
        and is said again.)"""
        assert self.blocked_lines(mid, window) == [], self.blocked_lines(mid, window)
        lines = self.blocked_lines(mid)
        assert any(reason in ln for ln in lines), lines
        texts = [ln.split(" reason=", 1)[1] for ln in lines]
        assert all(a != b for a, b in zip(texts, texts[1:])), lines

    def close(self):
        self.gw.stop()
        for a in self.agents.values():
            a.close()


@pytest.fixture(scope="module")
def fleet():
    tmp = tempfile.mkdtemp(prefix="drover-reconcile-")
    f = Fleet(tmp)
    try:
        f.wait_passes(PASSES)
        yield f
    finally:
        f.close()
        shutil.rmtree(tmp, ignore_errors=True)


def test_no_load_to_an_engine_that_cannot_load(fleet):
    llama = fleet.agents["llama"]
    before = llama.load_count()
    window = fleet.wait_passes(PASSES)
    assert llama.load_count() == 0, "loads sent to llama.cpp: %d" % llama.load_count()
    assert before == 0
    m = fleet.model("m-llama")
    rs = m["replicas_status"]
    assert rs["wanted"] == 1 and rs["present"] == 0
    assert "engine llamacpp cannot load on request" in (rs["unmet_reason"] or ""), rs
    assert m["placement"]["llama"] == "engine llamacpp cannot load on request"
    # said once, not once per pass
    fleet.said_once("m-llama", "engine llamacpp cannot load on request", window)


def test_no_load_of_a_model_not_on_disk(fleet):
    olla = fleet.agents["olla"]
    window = fleet.wait_passes(PASSES)
    assert olla.load_count("m-absent") == 0, \
        "loads of m-absent: %d" % olla.load_count("m-absent")
    m = fleet.model("m-absent")
    assert m["placement"]["olla"] == "not on disk (install it first)"
    assert "olla: not on disk" in (m["replicas_status"]["unmet_reason"] or "")
    fleet.said_once("m-absent", "olla: not on disk", window)


def test_failed_load_backs_off_per_pair(fleet):
    olla = fleet.agents["olla"]
    wait("the first load of m-failing", lambda: olla.load_count("m-failing") >= 1)
    fleet.wait_passes(PASSES)
    assert olla.load_count("m-failing") == 1, \
        "loads of m-failing in %d passes: %d" % (PASSES, olla.load_count("m-failing"))
    m = fleet.model("m-failing")
    assert m["placement"]["olla"].startswith("load failed 1 time"), m["placement"]
    assert "waiting" in (m["replicas_status"]["unmet_reason"] or ""), m["replicas_status"]
    # the node's disk list changes (say a pull finished): the backoff ends at once, and a
    # load that now succeeds brings the replica
    with olla.lock:
        del olla.load_answer["m-failing"]
        olla.models["pulled"] = "on_disk"
    wait("m-failing loaded after the disk list changed",
         lambda: "m-failing" in {x["id"] for x in fleet.node("olla").get("models", [])})
    assert olla.load_count("m-failing") == 2
    assert fleet.model("m-failing")["replicas_status"]["unmet_reason"] is None


def test_request_gets_404_no_feasible_node(fleet):
    llama = fleet.agents["llama"]
    st, _, data = request(fleet.api, "POST", "/v1/chat/completions", timeout=20, body={
        "model": "m-llama", "messages": [{"role": "user", "content": "hi"}]})
    assert st == 404, data
    assert json.loads(data)["error"]["code"] == "no_feasible_node"
    assert llama.load_count() == 0
