"""test_seed — issue 18 (the placement side) on the simulator: device constraints, the defrag,
the fleet's upgrade view, and the sim's per-node hardware report that feeds the agents.

Each agent's discovery override is the sim's own answer (GET /sim/v1/hardware of its node),
so the devices, CUDA versions and context sizes the gateway places by are the simulator's.
Loopback only; every wait bounded; every process ended by its pid.
"""
import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from harness import DROVER, Proc, log_text, request, start_sim, wait_until  # noqa: E402

JOIN = "jt"

SIM = """
hardware:
  - gpus:
      - {name: NVIDIA A10, vram_mb: 4000, compute_capability: "8.6"}
      - {name: NVIDIA A10, vram_mb: 4000, compute_capability: "8.6"}
    cuda_version: "12.4"
    driver_version: "550.54.15"
    context_size: 8192
  - gpus:
      - {name: Tesla T4, vram_mb: 15360, compute_capability: "7.5"}
    cuda_version: "11.8"
    driver_version: "520.61.05"
    context_size: 4096
models:
  - {name: a, vram_mb: 1500}
  - {name: b, vram_mb: 1500}
  - {name: c, vram_mb: 3000}
  - {name: d, vram_mb: 500}
  - {name: new-only, vram_mb: 500}
"""

CATALOGUE = """
models:
  - {id: a, min_vram_mb: 1500, replicas: {min: 1}, selector: {name: gpu2}}
  - {id: b, min_vram_mb: 1500, replicas: {min: 1}, selector: {name: gpu2}}
  - {id: c, min_vram_mb: 3000, replicas: {min: 1}, selector: {name: gpu2}}
  - {id: d, min_vram_mb: 500, selector: {name: gpu2}}
  - id: new-only
    min_vram_mb: 500
    cuda_version: {min: "12.1"}
    min_compute_capability: "8.0"
"""


def start_gw(tmp, extra=()):
    cfg = os.path.join(tmp, "gw.yaml")
    with open(cfg, "w") as f:
        f.write(CATALOGUE)
    return Proc(["serve", "--config", cfg, "--listen", "127.0.0.1:0",
                 "--admin-listen", "127.0.0.1:0", "--set", "join.token=" + JOIN,
                 "--set", "join.auto_approve=true", "--set", "health.interval=100ms",
                 "--set", "health.rise=1", "--set", "health.fall=2",
                 "--set", "join.poll_interval=200ms",
                 "--set", "placement.reconcile_interval=200ms",
                 "--set", "placement.load_wait=5s", "--set", "placement.replica_idle=0"]
                + list(extra), "drover-serve ready",
                env={"DROVER_STORE_PATH": os.path.join(tmp, "gw.db")})


def ports(gw):
    return int(gw.fields["listen"].rsplit(":", 1)[1]), int(gw.fields["admin"].rsplit(":", 1)[1])


def hardware(sim_port):
    st, _, data = request(sim_port, "GET", "/sim/v1/hardware")
    assert st == 200
    return json.loads(data)


def start_agent(tmp, gw, name, sim_port, installed=None):
    disc = hardware(sim_port)
    disc.pop("context_size")
    disc.pop("vram_used_mb")
    if installed is not None:
        disc["installed"] = installed
    cfg = os.path.join(tmp, name + ".yaml")
    with open(cfg, "w") as f:
        f.write("discovery: %s\n" % json.dumps(disc))  # JSON is YAML
    return Proc(["agent", "--config", cfg, "--gateway", "http://127.0.0.1:%d" % ports(gw)[0],
                 "--join-token", JOIN, "--engine", "ollama",
                 "--engine-url", "http://127.0.0.1:%d" % sim_port, "--listen", "127.0.0.1:0",
                 "--state-file", os.path.join(tmp, name + ".state"), "--nvidia-smi", "off",
                 "--name", name, "--label", "name=" + name], "drover-agent ready")


def admin(gw, method, path, body=None):
    st, _, data = request(ports(gw)[1], method, path, body=body)
    return st, json.loads(data) if data else {}


def node_models(gw, name):
    for n in admin(gw, "GET", "/admin/v1/nodes")[1].get("nodes", []):
        if n["name"] == name:
            return {m["id"] for m in n.get("models", [])}
    return set()


def routable(gw, *names):
    got = {n["name"]: n.get("routable") for n in admin(gw, "GET", "/admin/v1/nodes")[1]["nodes"]}
    return all(got.get(n) for n in names)


@pytest.fixture
def fleet(tmp_path):
    tmp = str(tmp_path)
    procs = []
    sim = start_sim("--config", _write(tmp, "sim.yaml", SIM), nodes=2)
    procs.append(sim)

    class F:
        pass
    f = F()
    f.tmp, f.sim, f.procs = tmp, sim, procs
    yield f
    for p in reversed(procs):
        p.stop()


def _write(tmp, name, text):
    path = os.path.join(tmp, name)
    with open(path, "w") as fh:
        fh.write(text)
    return path


def test_sim_reports_hardware_per_node(fleet):
    h0, h1 = hardware(fleet.sim.ports[0]), hardware(fleet.sim.ports[1])
    assert [g["name"] for g in h0["gpus"]] == ["NVIDIA A10", "NVIDIA A10"]
    assert [g["vram_total_mb"] for g in h0["gpus"]] == [4000, 4000]
    assert h0["gpus"][0]["compute_capability"] == "8.6"
    assert h0["cuda_version"] == "12.4" and h0["driver_version"] == "550.54.15"
    assert h0["context_size"] == 8192
    assert h1["gpus"][0]["name"] == "Tesla T4" and h1["cuda_version"] == "11.8"
    assert h1["context_size"] == 4096


def test_constraints_decide_and_404_names_them(fleet):
    gw = start_gw(fleet.tmp)
    fleet.procs.append(gw)
    fleet.procs.append(start_agent(fleet.tmp, gw, "gpu2", fleet.sim.ports[0]))
    fleet.procs.append(start_agent(fleet.tmp, gw, "t4", fleet.sim.ports[1]))
    wait_until(None, "both nodes routable", lambda: routable(gw, "gpu2", "t4"))
    # new-only needs CUDA >= 12.1 and compute capability 8.0: only gpu2 can hold it
    st, m = admin(gw, "GET", "/admin/v1/models/new-only")
    assert st == 200
    assert m["placement"]["t4"] == \
        "needs compute capability 8.0 on 1 device, its devices have 7.5"
    assert m["cuda_version"] == {"min": "12.1"}
    body = {"model": "new-only", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}
    st, _, data = request(ports(gw)[0], "POST", "/v1/chat/completions", body=body, timeout=30)
    assert st == 200, data
    assert "new-only" in node_models(gw, "gpu2") and "new-only" not in node_models(gw, "t4")
    # with gpu2 gone from the entry's reach, the 404 names t4's failed constraint
    admin(gw, "PUT", "/admin/v1/models/x-new", {"id": "x-new", "cuda_version": {"min": "12.1"},
                                                "selector": {"name": "t4"}})
    st, _, data = request(ports(gw)[0], "POST", "/v1/chat/completions",
                          body=dict(body, model="x-new"), timeout=30)
    assert st == 404, data
    err = json.loads(data)["error"]
    assert err["code"] == "no_feasible_node"
    assert "t4: needs CUDA 12.1+, has 11.8" in err["message"]


def test_defrag_makes_room_for_a_model_that_did_not_fit(fleet):
    gw = start_gw(fleet.tmp, ["--set", "placement.defrag_after_cycles=3"])
    fleet.procs.append(gw)
    fleet.procs.append(start_agent(fleet.tmp, gw, "gpu2", fleet.sim.ports[0]))
    # a and b (replicas.min 1, so never evicted) land on different devices: 2500 MiB free on
    # each, 5000 in all, and c (3000 on one device) fits nowhere
    wait_until(None, "a and b loaded", lambda: {"a", "b"} <= node_models(gw, "gpu2"))
    wait_until(None, "c blocked as full",
               lambda: "full of busy or protected models" in
               admin(gw, "GET", "/admin/v1/models/c")[1]["placement"]["gpu2"])
    assert "c" not in node_models(gw, "gpu2")
    assert "defrag_start" not in log_text(gw)
    # a third cycle (a request loads d); once the node is quiet the defrag packs a, b and d on
    # one device and c loads on the other
    body = {"model": "d", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}
    st, _, data = request(ports(gw)[0], "POST", "/v1/chat/completions", body=body, timeout=30)
    assert st == 200, data
    wait_until(None, "c loaded after the defrag", lambda: "c" in node_models(gw, "gpu2"),
               timeout=20)
    log = log_text(gw)
    assert "defrag_start node=gpu2" in log and "defrag_done node=gpu2" in log
    assert log.index("defrag_done") < log.index("model_loaded node=gpu2 model=c ")
    assert {"a", "b", "c"} <= node_models(gw, "gpu2")


def test_upgrades_view_shows_behind_and_disagreeing_nodes(fleet):
    gw = start_gw(fleet.tmp)
    fleet.procs.append(gw)
    fleet.procs.append(start_agent(fleet.tmp, gw, "gpu2", fleet.sim.ports[0], installed=[
        {"kind": "model", "name": "a", "digest": "sha256:old", "latest_digest": "sha256:new",
         "checked_ms": 1},
        {"kind": "backend", "name": "cuda12", "digest": "v1"}]))
    fleet.procs.append(start_agent(fleet.tmp, gw, "t4", fleet.sim.ports[1], installed=[
        {"kind": "model", "name": "a", "digest": "sha256:new", "latest_digest": "sha256:new",
         "checked_ms": 1},
        {"kind": "backend", "name": "cuda12", "digest": "v2"}]))
    wait_until(None, "both nodes routable", lambda: routable(gw, "gpu2", "t4"))
    admin_url = "http://127.0.0.1:%d" % ports(gw)[1]
    out = subprocess.run([DROVER, "ops", "--admin", admin_url, "--json", "upgrades"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    items = {(i["node"], i["target"]): i for i in json.loads(out.stdout)["items"]}
    assert items[("gpu2", "model:a")]["state"] == "behind"
    assert items[("t4", "model:a")]["state"] == "current"
    # nobody checked cuda12's source: the nodes disagree, neither is known to be right
    states = {items[("gpu2", "backend:cuda12")]["state"], items[("t4", "backend:cuda12")]["state"]}
    assert states == {"disagrees", "majority"}
    table = subprocess.run([DROVER, "ops", "--admin", admin_url, "upgrades"],
                           capture_output=True, text=True, timeout=30).stdout
    assert "behind" in table and "gpu2" in table
    # --apply queues an upgrade of model:a on gpu2 only (through the durable queue)
    out = subprocess.run([DROVER, "ops", "--admin", admin_url, "--json", "upgrades", "--apply"],
                         capture_output=True, text=True, timeout=60)
    st, rows = admin(gw, "GET", "/admin/v1/ops?all=1")
    ups = [(r["node"], r["target"]) for r in rows["ops"] if r["op"] == "upgrade"]
    assert ("gpu2", "model:a") in ups and ("t4", "model:a") not in ups
