"""test_agent_ops — issue 6 with the real parts: `drover serve` and three `drover agent`s in
front of `drover sim` (Ollama API). An install across the three with one agent stopped: two
succeed at once, one is queued and applied when its agent returns (the sim behind it then has
the model). Backend operations through the agents' command templates: a success that the
backend list shows, a refusal (exit 77: unsafe), a command that outlives its timeout
(aborted). The inventory lists models with digests and backends with versions.

Loopback only; every wait bounded; every process ended by its pid. Each test starts its own
gateway, sims and agents (installs change the sims), with its files in its own directory.
"""
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from harness import Proc, request, start_sim, wait_until  # noqa: E402

JOIN = "jt-ops"


def wait_for(what, fn, timeout=20.0):
    return wait_until(None, what, fn, timeout)


def start_gw(TMP):
    return Proc(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                 "--set", "join.token=" + JOIN, "--set", "join.auto_approve=true",
                 "--set", "ops.interval=100ms", "--set", "ops.timeout=2s",
                 "--set", "ops.answer_wait=8s", "--set", "health.interval=100ms",
                 "--set", "health.rise=1", "--set", "health.fall=2",
                 "--set", "health.timeout=3s", "--set", "join.poll_interval=200ms"],
                "drover-serve ready", env={"DROVER_STORE_PATH": TMP + "/gw.db"})


def ports(gw):
    return int(gw.fields["listen"].rsplit(":", 1)[1]), int(gw.fields["admin"].rsplit(":", 1)[1])


def start_agent(TMP, gw, name, sim_port):
    cfg = os.path.join(TMP, name + ".yaml")
    marks = os.path.join(TMP, name + "-backends.txt")
    with open(cfg, "w") as f:
        f.write("ops_commands:\n"
                "  backend.install: 'printf \"%%s 1.0 sha256:b4ck\\n\" {name} >> %s'\n"
                "  backend.upgrade: 'echo refusing to upgrade a busy backend; exit 77'\n"
                "  backend.delete: 'sleep 30'\n"
                "  backend.list: 'cat %s 2>/dev/null || true'\n" % (marks, marks))
    return Proc(["agent", "--config", cfg, "--gateway", "http://127.0.0.1:%d" % ports(gw)[0],
                 "--join-token", JOIN, "--engine", "ollama",
                 "--engine-url", "http://127.0.0.1:%d" % sim_port, "--listen", "127.0.0.1:0",
                 "--state-file", os.path.join(TMP, name + ".state"), "--nvidia-smi", "off",
                 "--name", name], "drover-agent ready")


def admin(gw, method, path, body=None):
    st, _, data = request(ports(gw)[1], method, path, body=body, timeout=30)
    try:
        return st, json.loads(data)
    except ValueError:
        return st, {}


def node(gw, name):
    return admin(gw, "GET", "/admin/v1/nodes/" + name)[1]


def issue(gw, op, target, nodes=None):
    body = {"op": op, "target": target}
    if nodes:
        body["nodes"] = nodes
    st, b = admin(gw, "POST", "/admin/v1/ops", body=body)
    return {r["node"]: r for r in b.get("results", [])}


def row(gw, name, target, op):
    for r in admin(gw, "GET", "/admin/v1/ops?all=1")[1].get("ops", []):
        if r["node"] == name and r["target"] == target and r["op"] == op:
            return r
    return None


def sim_has(port, model):
    st, _, data = request(port, "GET", "/api/tags")
    return any(m.get("name", "").split(":")[0] == model for m in json.loads(data)["models"])


class Fleet:
    """A gateway, one sim node per agent, and the agents, in the test's own directory."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.sims = start_sim("--model", "m0", "--load-ms", "200", nodes=3)
        self.gw = start_gw(tmp)
        self.agents = {}

    def agent(self, name):
        i = int(name[1]) - 1
        self.agents[name] = start_agent(self.tmp, self.gw, name, self.sims.ports[i])
        return self.agents[name]

    def up(self, *names):
        for n in names:
            self.agent(n)
        for n in names:
            wait_for(n + " healthy", lambda n=n: node(self.gw, n).get("liveness") == "healthy")

    def close(self):
        for a in self.agents.values():
            a.stop()
        self.gw.stop()
        self.sims.stop()


@pytest.fixture
def fleet(tmp_path):
    f = Fleet(str(tmp_path))
    yield f
    f.close()


def test_install_queued_for_offline_agent(fleet):
    gw, sims = fleet.gw, fleet.sims
    fleet.up("A1", "A2", "A3")
    assert "model.install" in node(gw, "A1").get("discovery", {}).get("ops", []), (
        "the agent says which ops it takes")

    fleet.agents["A3"].stop()
    wait_for("A3 unhealthy", lambda: node(gw, "A3").get("liveness") == "unhealthy")
    res = issue(gw, "install", "model:newm")
    assert {n: r["result"] for n, r in res.items()} == {
        "A1": "success", "A2": "success", "A3": "queued"}, (
        "install: two at once, the offline one queued")
    assert (sim_has(sims.ports[0], "newm") and sim_has(sims.ports[1], "newm") and
            not sim_has(sims.ports[2], "newm")), "the engines behind A1 and A2 have it"
    fleet.agent("A3")
    wait_for("A3's queued install applied",
             lambda: (row(gw, "A3", "model:newm", "install") or {}).get("state") == "done")
    assert sim_has(sims.ports[2], "newm"), "the returning node's engine got it"


def test_backend_ops_through_templates(fleet):
    gw = fleet.gw
    fleet.up("A1", "A2")
    res = issue(gw, "install", "backend:cuda12", nodes=["A1"])
    assert res["A1"]["result"] == "success", "backend install through a template"
    with open(os.path.join(fleet.tmp, "A1-backends.txt")) as f:
        assert f.read() == "cuda12 1.0 sha256:b4ck\n", "the template ran with the name"
    res = issue(gw, "upgrade", "backend:cuda12", nodes=["A1"])
    r = row(gw, "A1", "backend:cuda12", "upgrade")
    assert (res["A1"]["result"] == "error" and r and r["last_class"] == "unsafe" and
            "refusing" in (r["last_error"] or "")), (
        "exit 77 is unsafe, with the command's last line: %r" % r)
    res = issue(gw, "delete", "backend:cuda12", nodes=["A1"])
    r = row(gw, "A1", "backend:cuda12", "delete")
    assert res["A1"]["result"] == "error" and r and r["last_class"] == "aborted", (
        "a command past its timeout is aborted: %r" % r)
    res = issue(gw, "install", "backend:rocm", nodes=["A2"])
    assert res["A2"]["result"] == "success", "A2 installs its own backend"


def test_inventory_and_upgrade_check(fleet):
    gw = fleet.gw
    fleet.up("A1")
    res = issue(gw, "install", "model:newm", nodes=["A1"])
    assert res["A1"]["result"] == "success", "model install on A1"
    res = issue(gw, "install", "backend:cuda12", nodes=["A1"])
    assert res["A1"]["result"] == "success", "backend install on A1"
    st, inv = admin(gw, "GET", "/admin/v1/inventory")
    nodes = {n["name"]: n for n in inv.get("nodes", [])}
    a1 = nodes.get("A1", {})
    assert any(m["name"].split(":")[0] == "newm" and m.get("digest")
               for m in a1.get("models", [])), "inventory: models with digests"
    assert a1.get("backends") == [{"name": "cuda12", "version": "1.0",
                                   "digest": "sha256:b4ck"}], (
        "inventory: backends with version and digest")
    st, up = admin(gw, "GET", "/admin/v1/inventory/upgrades?target=backend:cuda12")
    assert st == 200 and up.get("nodes") and up["nodes"][0]["digest"] == "sha256:b4ck", (
        "upgrade check over the agents' inventory: %r" % up)
