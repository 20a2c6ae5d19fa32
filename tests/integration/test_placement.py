"""test_placement — issue 5's proof: the catalogue and placement of DESIGN §6 with real
`drover agent`s in front of `drover sim` nodes (Ollama engine) of different sizes, told their
GPUs through the agents' discovery override.

Fleet: A (1 device, 4000 MiB, zone a), B (2 devices, 8000 MiB, zone b), C (1 device,
4000 MiB, zone c). Loopback only; every wait bounded; every process ended by its pid.

Tests that only read the fleet share one (module scope); a test that loads, evicts, stops a
node or edits the catalogue gets its own fleet (gateway, sims and agents), in its own
directory.
"""
import json
import os
import subprocess
import sys
import threading

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from harness import DROVER, Proc, log_text, request, sse_events, start_sim, wait_until  # noqa: E402

JOIN = "jt"
MODELS = ["big", "small", "emb", "f1", "f2", "f3", "rep", "once", "api-model"]

CATALOGUE = """
models:
  - id: big
    min_devices: 2
    min_vram_mb: 2000
    capabilities: [chat, completions]
  - id: small
    aliases: [tiny]
    min_vram_mb: 1000
    selector: {zone: a}
    pinned: true
  - id: emb
    capabilities: [embeddings]
  - {id: f1, min_vram_mb: 1500, selector: {zone: a}}
  - {id: f2, min_vram_mb: 1500, selector: {zone: a}}
  - {id: f3, min_vram_mb: 1500, selector: {zone: a}}
  - {id: rep, min_vram_mb: 500, replicas: {min: 2, max: 3}, selector: {pool: rep}}
  - {id: once, min_vram_mb: 500, selector: {zone: c}}
  - {id: huge, min_devices: 4}
"""


def start_gw(db, cfg):
    return Proc(["serve", "--config", cfg, "--listen", "127.0.0.1:0",
                 "--admin-listen", "127.0.0.1:0", "--set", "join.token=" + JOIN,
                 "--set", "join.auto_approve=true", "--set", "health.interval=100ms",
                 "--set", "health.rise=1", "--set", "health.fall=2",
                 "--set", "health.timeout=3s", "--set", "join.poll_interval=200ms",
                 "--set", "placement.reconcile_interval=200ms",
                 "--set", "placement.load_wait=5s", "--set", "placement.replica_idle=0"],
                "drover-serve ready", env={"DROVER_STORE_PATH": db})


def ports(gw):
    return int(gw.fields["listen"].rsplit(":", 1)[1]), int(gw.fields["admin"].rsplit(":", 1)[1])


def start_agent(TMP, gw, name, sim_port, devices, vram, labels):
    cfg = os.path.join(TMP, name + ".yaml")
    gpus = "\n".join("    - {index: %d, name: sim, vram_total_mb: %d}" % (i, vram // devices)
                     for i in range(devices))
    with open(cfg, "w") as f:
        f.write("discovery:\n  gpus:\n%s\n" % gpus)
    args = ["agent", "--config", cfg, "--gateway", "http://127.0.0.1:%d" % ports(gw)[0],
            "--join-token", JOIN, "--engine", "ollama",
            "--engine-url", "http://127.0.0.1:%d" % sim_port, "--listen", "127.0.0.1:0",
            "--state-file", os.path.join(TMP, name + ".state"), "--nvidia-smi", "off",
            "--name", name]
    for k, v in labels.items():
        args += ["--label", "%s=%s" % (k, v)]
    return Proc(args, "drover-agent ready")


def admin(gw, method, path, body=None):
    st, _, data = request(ports(gw)[1], method, path, body=body)
    try:
        return st, json.loads(data)
    except ValueError:
        return st, {}


def nodes(gw):
    return {n["name"]: n for n in admin(gw, "GET", "/admin/v1/nodes")[1].get("nodes", [])}


def loaded(gw, name):
    return {m["id"] for m in nodes(gw).get(name, {}).get("models", [])}


def wait_for(what, fn, timeout=15.0):
    return wait_until(None, what, fn, timeout)


def chat(gw, model, stream=False, max_tokens=4, path="/v1/chat/completions"):
    body = {"model": model, "stream": stream, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "hi"}]}
    st, h, data = request(ports(gw)[0], "POST", path, body=body, timeout=30)
    return st, h, data


def err_code(data):
    try:
        return json.loads(data)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


FLEET = {"A": (0, 1, 4000, {"zone": "a"}), "B": (1, 2, 8000, {"zone": "b", "pool": "rep"}),
         "C": (2, 1, 4000, {"zone": "c"})}


class Fleet:
    """A gateway with the catalogue above, one sim process with a node per agent, and the
    agents A, B and C (routable); all stopped by pid at close."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.cfg = os.path.join(tmp, "gw.yaml")
        with open(self.cfg, "w") as f:
            f.write(CATALOGUE)
        margs = []
        for m in MODELS:
            margs += ["--model", m + (":embedding" if m == "emb" else "")]
        self.sims = start_sim(*margs, "--tokens-per-second", "50", "--load-ms", "300", nodes=3)
        self.gw = None
        self.agents = {}
        self.start_gw()
        for n in "ABC":
            self.agent(n)
        for n in "ABC":
            self.wait_routable(n)

    def start_gw(self):
        self.gw = start_gw(os.path.join(self.tmp, "gw.db"), self.cfg)
        return self.gw

    def agent(self, name):
        i, devices, vram, labels = FLEET[name]
        self.agents[name] = start_agent(self.tmp, self.gw, name, self.sims.ports[i], devices,
                                        vram, labels)
        return self.agents[name]

    def wait_routable(self, name):
        wait_for(name + " routable", lambda: nodes(self.gw).get(name, {}).get("routable"))

    def close(self):
        for a in self.agents.values():
            a.stop()
        self.gw.stop()
        self.sims.stop()


@pytest.fixture(scope="module")
def shared_fleet(tmp_path_factory):
    """For tests that change nothing: no load, no label, no catalogue edit."""
    f = Fleet(str(tmp_path_factory.mktemp("placement-shared")))
    yield f
    f.close()


@pytest.fixture
def fleet(tmp_path):
    f = Fleet(str(tmp_path))
    yield f
    f.close()


def test_catalogue_validation_and_model_list(shared_fleet):
    gw = shared_fleet.gw
    # catalogue validation, through the API (the file's entries are checked the same way)
    st, b = admin(gw, "POST", "/admin/v1/models", body={"id": "x", "replicas": {"min": 3,
                                                                               "max": 1}})
    assert st == 400 and b["error"]["param"] == "replicas.max", "bad replicas refused"
    st, b = admin(gw, "POST", "/admin/v1/models", body={"id": "x", "min_devices": "two"})
    assert st == 400 and b["error"]["param"] == "min_devices", "bad min_devices refused"
    st, b = admin(gw, "PUT", "/admin/v1/models/big", body={"id": "big"})
    assert st == 409, "the file's entries are not edited through the API"
    st, b = admin(gw, "POST", "/admin/v1/models", body={"id": "x2", "aliases": ["tiny"]})
    assert st == 409, "an alias cannot be taken twice"

    # /v1/models shows catalogued models and where they could run
    st, _, data = request(ports(gw)[0], "GET", "/v1/models")
    ms = {m["id"]: m for m in json.loads(data)["data"]}
    assert "big" in ms and ms["big"].get("could_load_on") == ["B"], (
        "big could only load on B: %r" % ms.get("big"))
    assert set(ms.get("small", {}).get("could_load_on", [])) == {"A"}, (
        "small only where the selector allows")


def test_capability_and_no_feasible_node(shared_fleet):
    gw = shared_fleet.gw
    # capability: no node is touched
    before = {n: v["requests_total"] for n, v in nodes(gw).items()}
    st, _, data = chat(gw, "emb")
    assert st == 400 and err_code(data) == "model_capability_missing", (
        "chat to an embeddings-only model is a 400: %r" % data[:120])
    assert {n: v["requests_total"] for n, v in nodes(gw).items()} == before, (
        "and no node saw it")
    # no feasible node at all: 404
    st, _, data = chat(gw, "huge")
    assert st == 404 and err_code(data) == "no_feasible_node", (
        "no node with 4 devices: 404 no_feasible_node")
    st, _, data = chat(gw, "nothing-like-it")
    assert st == 404 and err_code(data) == "model_not_found", "unknown model: 404"


def test_devices_and_selector(fleet):
    gw, sims = fleet.gw, fleet.sims
    # a 2-device model goes only to the 2-device node, through a cold load
    st, h, data = chat(gw, "big")
    assert st == 200 and h.get("x-drover-node") == "B", (
        "big is cold-loaded on the 2-device node: %d %r" % (st, h.get("x-drover-node")))
    assert "big" in loaded(gw, "B") and "big" not in loaded(gw, "A"), (
        "the registry shows big loaded on B only")

    # selector honoured on the cached path: small loaded on B (by hand, behind the gateway's
    # back) never serves
    request(sims.ports[1], "POST", "/api/generate", body={"model": "small", "prompt": ""})
    wait_for("small seen loaded on B", lambda: "small" in loaded(gw, "B"))
    served = set()
    for _ in range(6):
        st, h, data = chat(gw, "small")
        served.add(h.get("x-drover-node") if st == 200 else st)
    assert served == {"A"}, "a selector-excluded node never serves, even with it loaded"
    st, h, data = chat(gw, "tiny")
    assert (st == 200 and h.get("x-drover-node") == "A" and
            json.loads(data).get("model") == "small"), (
        "an alias is served as its model: %r" % data[:100])


def test_only_feasible_node_down(fleet):
    gw = fleet.gw
    # the only 2-device node down: 503 + Retry-After 3, served once it is back
    fleet.agents["B"].stop()
    wait_for("B down", lambda: not nodes(gw)["B"]["routable"])
    st, h, data = chat(gw, "big")
    assert (st == 503 and err_code(data) == "feasible_node_unhealthy" and
            h.get("retry-after") == "3"), (
        "2-device node down: 503 RA 3 (%d %r)" % (st, data[:100]))
    fleet.agent("B")
    wait_for("B back", lambda: nodes(gw)["B"]["routable"])
    st, h, data = chat(gw, "big")
    assert st == 200 and h.get("x-drover-node") == "B", "served once it is back"


def test_eviction_on_full_node(fleet):
    gw = fleet.gw
    # eviction on a full node: A holds small (pinned, 1000) + f1 + f2 (1500 each) = 4000;
    # f3 needs room: f1 is busy, small pinned, so f2 goes
    for m in ("small", "f1", "f2"):
        st, h, _ = chat(gw, m)
        assert st == 200 and h.get("x-drover-node") == "A", m + " loaded on A"
    res = {}

    def busy_f1():
        res["f1"] = chat(gw, "f1", stream=True, max_tokens=150)  # 3 s at 50 tokens/s

    t = threading.Thread(target=busy_f1)
    t.start()
    wait_for("f1 busy", lambda: any(m["id"] == "f1" and m["in_flight"] > 0
                                    for m in nodes(gw)["A"]["models"]))
    st, h, _ = chat(gw, "f3")
    assert st == 200 and h.get("x-drover-node") == "A", "f3 loaded on the full node"
    have = loaded(gw, "A")
    assert {"small", "f1", "f3"} <= have and "f2" not in have, (
        "the idle LRU model was evicted, never the busy or the pinned one: %r" % have)
    t.join(timeout=20)
    st, _, body = res.get("f1", (0, {}, b""))
    assert st == 200 and sse_events(body)[-1:] == ["[DONE]"], "the busy model's stream finished"


def test_min_replicas_kept_and_restored(fleet):
    gw = fleet.gw
    # min replicas kept by the reconciler, restored after a node dies
    assert wait_for("rep on B", lambda: "rep" in loaded(gw, "B")), (
        "the reconciler loads rep on the only node its selector allows")
    st, m = admin(gw, "GET", "/admin/v1/models/rep")
    assert "already holds" in m.get("reconciler", ""), (
        "it says why it cannot reach min: %r" % m.get("reconciler"))
    code_c = subprocess.run([DROVER, "nodes", "--admin",
                             "http://127.0.0.1:%d" % ports(gw)[1], "label", "C",
                             "pool=rep"], capture_output=True, timeout=20).returncode
    assert code_c == 0, "label C into the pool"
    assert wait_for("rep on C", lambda: "rep" in loaded(gw, "C")), (
        "a label change lets the reconciler reach min replicas")
    admin(gw, "PATCH", "/admin/v1/nodes/A/labels", body={"pool": "rep"})
    fleet.agents["C"].stop()
    wait_for("C down", lambda: not nodes(gw)["C"]["routable"])
    assert wait_for("rep restored on A", lambda: "rep" in loaded(gw, "A")), (
        "min replicas restored after a node died")


def test_concurrent_first_requests_one_load(fleet):
    gw = fleet.gw
    results = []

    def first():
        results.append(chat(gw, "once"))

    ts = [threading.Thread(target=first) for _ in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=30)
    assert len(results) == 6 and all(r[0] == 200 for r in results), (
        "six concurrent first requests all served: %r" % [r[0] for r in results])
    loads = log_text(gw).count("event=model_load node=C model=once")
    assert loads == 1, "exactly one load for six concurrent first requests"


def test_catalogue_api_change_survives_restart(fleet):
    gw = fleet.gw
    # a catalogue change through the API applies at once and survives a restart
    st, b = admin(gw, "PUT", "/admin/v1/models/f2", body={"min_vram_mb": 9000})
    assert st == 409, "a file entry is not replaced through the API"
    st, b = admin(gw, "POST", "/admin/v1/models",
                  body={"id": "api-model", "aliases": ["apim"], "selector": {"zone": "c"}})
    assert st == 201, "catalogue entry added through the API"
    st, h, data = chat(gw, "apim")
    assert st == 200 and h.get("x-drover-node") == "C", (
        "applied without a restart: %d %r" % (st, data[:100]))
    assert gw.stop() == 0, "gateway stops"
    gw = fleet.start_gw()
    st, m = admin(gw, "GET", "/admin/v1/models/api-model")
    assert st == 200 and m.get("aliases") == ["apim"] and m.get("source") == "api", (
        "the API's entry survived the restart")
    st, _ = admin(gw, "DELETE", "/admin/v1/models/api-model")
    assert st == 200, "entry deleted"
    st, _ = admin(gw, "GET", "/admin/v1/models/api-model")
    assert st == 404, "and gone"


class SlowFleet:
    """Two nodes whose loads take longer than a request may wait; replicas idle after 1 s.
    A catalogue entry `canary` (min 1, for nodes labelled canary=yes, none at first) lets a
    test see that the reconciler ran after some point: label a node and wait for its load."""

    def __init__(self, tmp):
        self.tmp = tmp
        cfg = os.path.join(tmp, "gw2.yaml")
        with open(cfg, "w") as f:
            f.write("models:\n  - {id: slow, min_vram_mb: 100}\n"
                    "  - {id: pair, min_vram_mb: 100, replicas: {min: 1, max: 2}}\n"
                    "  - {id: canary, min_vram_mb: 100, replicas: {min: 1, max: 1},"
                    " selector: {canary: 'yes'}}\n")
        self.sims = start_sim("--model", "slow", "--model", "pair", "--model", "canary",
                              "--load-ms", "1500", nodes=2)
        self.gw = Proc(["serve", "--config", cfg, "--listen", "127.0.0.1:0",
                        "--admin-listen", "127.0.0.1:0", "--set", "join.token=" + JOIN,
                        "--set", "join.auto_approve=true", "--set", "health.interval=100ms",
                        "--set", "health.rise=1", "--set", "join.poll_interval=200ms",
                        "--set", "placement.reconcile_interval=100ms",
                        "--set", "placement.load_wait=300ms",
                        "--set", "placement.replica_idle=1s"],
                       "drover-serve ready", env={"DROVER_STORE_PATH": tmp + "/gw2.db"})
        self.agents = [start_agent(tmp, self.gw, "S%d" % i, self.sims.ports[i], 1, 4000, {})
                       for i in range(2)]
        for i in range(2):
            wait_for("S%d routable" % i,
                     lambda i=i: nodes(self.gw).get("S%d" % i, {}).get("routable"))

    def close(self):
        for a in self.agents:
            a.stop()
        self.gw.stop()
        self.sims.stop()


@pytest.fixture
def slow_fleet(tmp_path):
    f = SlowFleet(str(tmp_path))
    yield f
    f.close()


def test_slow_load_answers_503_then_serves(slow_fleet):
    """A load longer than the request may wait: 503 model_loading + Retry-After 2, then
    served."""
    gw = slow_fleet.gw
    st, h, data = chat(gw, "slow")
    assert st == 503 and err_code(data) == "model_loading" and h.get("retry-after") == "2", (
        "a load longer than the wait: 503 model_loading RA 2 (%d %r)" % (st, data[:80]))
    where = wait_for("slow loaded", lambda: [n for n in ("S0", "S1") if "slow" in loaded(gw, n)])
    st, h, _ = chat(gw, "slow")
    assert st == 200 and where and h.get("x-drover-node") == where[0], "served once loaded"


def test_idle_extra_replica_unloaded_never_below_min(slow_fleet):
    """An idle extra replica is unloaded after placement.replica_idle, never below min."""
    gw, sims = slow_fleet.gw, slow_fleet.sims
    # pair: min 1 kept by the reconciler; a second replica loaded behind the gateway's back
    first = wait_for("pair min replica", lambda: [n for n in ("S0", "S1")
                                                  if "pair" in loaded(gw, n)])
    other = "S1" if first and first[0] == "S0" else "S0"
    request(sims.ports[int(other[1])], "POST", "/api/generate",
            body={"model": "pair", "prompt": ""}, timeout=10)
    # the gateway sees two replicas (possibly only briefly: one is idle past replica_idle
    # already) and unloads one of them, keeping min 1

    def unloaded():
        return "event=replica_unload model=pair" in log_text(gw)

    assert wait_for("an idle extra replica unloaded", unloaded, timeout=15), (
        "the reconciler unloads an idle extra replica")
    assert wait_for("one replica left",
                    lambda: ("pair" in loaded(gw, "S0")) != ("pair" in loaded(gw, "S1")),
                    timeout=10), "one replica stays (min 1)"
    # never below min: let the reconciler run after that (the canary's load proves a pass
    # later than now), then the last replica is still there and nothing else was unloaded
    st, _ = admin(gw, "PATCH", "/admin/v1/nodes/S0/labels", body={"canary": "yes"})
    assert st == 200, "label S0 for the canary"
    wait_for("the reconciler placed the canary",
             lambda: "event=replica_load model=canary" in log_text(gw))
    assert ("pair" in loaded(gw, "S0")) or ("pair" in loaded(gw, "S1")), "never below min"
    assert log_text(gw).count("event=replica_unload model=pair") == 1, (
        "exactly one replica unloaded")
