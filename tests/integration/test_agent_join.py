"""test_agent_join — issue 4's proof with the real parts: `drover agent` in front of
`drover sim` joins `drover serve` as pending and gets no traffic, is approved and serves;
drain lets an in-flight stream finish and takes no new requests; the gateway restarted (and
killed with -9) keeps every node, approval and label; a pending node that goes quiet and comes
back is still pending; remove stops the node; the CLI drives it all.

Loopback only; every wait bounded; every process ended by its pid. Each test starts its own
gateway (with its own store) and agents; the two-node sim is shared by the module.
"""
import json
import os
import subprocess
import sys
import threading

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from harness import DROVER, Proc, log_text, request, sse_events, start_sim, wait_until  # noqa: E402

JOIN = "join-secret-token"
ADMIN = "admin-secret-token"
MODEL = "llama3.2:1b"


def start_gw(db):
    return Proc(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                 "--set", "join.token=" + JOIN, "--set", "admin_token=" + ADMIN,
                 "--set", "health.interval=100ms", "--set", "health.rise=1",
                 "--set", "health.timeout=3s", "--set", "join.poll_interval=200ms",
                 "--set", "store.flush_interval=50ms"],
                "drover-serve ready", env={"DROVER_STORE_PATH": db})


def api_port(gw):
    return int(gw.fields["listen"].rsplit(":", 1)[1])


def admin_port(gw):
    return int(gw.fields["admin"].rsplit(":", 1)[1])


def start_agent(gw_port, sim_port, name, state, *extra):
    return Proc(["agent", "--gateway", "http://127.0.0.1:%d" % gw_port, "--join-token", JOIN,
                 "--engine", "openai", "--engine-url", "http://127.0.0.1:%d" % sim_port,
                 "--listen", "127.0.0.1:0", "--state-file", state, "--nvidia-smi", "off",
                 "--name", name, "--label", "zone=a"] + list(extra), "drover-agent ready")


def admin(gw, method, path, body=None):
    st, _, data = request(admin_port(gw), method, path, body=body,
                          headers={"Authorization": "Bearer " + ADMIN})
    try:
        return st, json.loads(data)
    except ValueError:
        return st, {}


def node(gw, name):
    st, b = admin(gw, "GET", "/admin/v1/nodes/" + name)
    return b if st == 200 else {}


def wait_for(what, fn, timeout=15.0):
    return wait_until(None, what, fn, timeout)


def chat(gw, stream=False, max_tokens=8):
    return request(api_port(gw), "POST", "/v1/chat/completions",
                   body={"model": MODEL, "stream": stream, "max_tokens": max_tokens,
                         "messages": [{"role": "user", "content": "hi"}]}, timeout=30)


def cli(gw, *args):
    p = subprocess.run([DROVER, "nodes", "--admin", "http://127.0.0.1:%d" % admin_port(gw),
                        "--token", ADMIN] + list(args), capture_output=True, timeout=20)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def joined_as(agent, state):
    """The agent logged the gateway's answer to its join (it logs each change of state)."""
    return any("event=join " in l and "state=" + state in l for l in log_text(agent).splitlines())


@pytest.fixture(scope="module")
def sim():
    s = start_sim("--model", MODEL, "--tokens-per-second", "20", nodes=2)
    yield s
    s.stop()


class Fleet:
    """The test's gateway (restartable on the same store) and agents, all stopped by pid at
    teardown."""

    def __init__(self, tmp, sim):
        self.tmp, self.sim, self.db = tmp, sim, os.path.join(tmp, "gw.db")
        self.gw = start_gw(self.db)
        self.agents = {}

    def restart_gw(self, how):
        if how == "SIGTERM":
            assert self.gw.stop() == 0, "gateway exits 0"
        else:
            self.gw.kill9()
        self.gw = start_gw(self.db)
        return self.gw

    def state(self, name):
        return os.path.join(self.tmp, name + ".state")

    def agent(self, name, sim_index):
        old = self.agents.get(name)
        if old:
            old.stop()
        a = start_agent(api_port(self.gw), self.sim.ports[sim_index], name, self.state(name))
        self.agents[name] = a
        return a

    def approve(self, name):
        code, out, err = cli(self.gw, "approve", name)
        assert code == 0, "drover nodes approve: %r" % err
        wait_for(name + " routable", lambda: node(self.gw, name).get("routable"))

    def close(self):
        for a in self.agents.values():
            a.stop()
        self.gw.stop()


@pytest.fixture
def fleet(tmp_path, sim):
    f = Fleet(str(tmp_path), sim)
    yield f
    f.close()


def test_pending_node_gets_nothing_until_approved(fleet):
    gw = fleet.gw
    a1 = fleet.agent("gpu-1", 0)
    n = wait_for("gpu-1 joined", lambda: node(gw, "gpu-1"))
    assert n.get("admin") == "pending", "an agent joins as pending"
    assert n.get("source") == "agent", "it is a joined node"
    assert n.get("labels") == {"zone": "a"}, "the agent's labels seed the node"
    wait_for("the agent told it is pending", lambda: joined_as(a1, "pending"))
    st, _, body = chat(gw)
    assert st in (404, 503) and json.loads(body)["error"]["code"] in (
        "model_not_found", "no_healthy_nodes"), (
        "a pending node's model is not served: %d %r" % (st, body[:120]))
    assert node(gw, "gpu-1").get("requests_total") == 0, "a pending node gets no traffic"
    assert not os.path.exists(fleet.state("gpu-1")), "no secret before approval"

    fleet.approve("gpu-1")
    assert (os.path.exists(fleet.state("gpu-1")) and
            (os.stat(fleet.state("gpu-1")).st_mode & 0o777) == 0o600), (
        "the agent keeps its secret in a 0600 state file")
    st, h, body = chat(gw)
    assert (st == 200 and h.get("x-drover-node") == "gpu-1" and
            json.loads(body)["choices"][0]["message"]["content"]), (
        "an approved node serves through its agent")
    st, h, body = chat(gw, stream=True)
    ev = sse_events(body)
    assert st == 200 and ev and ev[-1] == "[DONE]", "streaming through the agent"


def test_drain_lets_stream_finish(fleet):
    gw = fleet.gw
    fleet.agent("gpu-1", 0)
    wait_for("gpu-1 joined", lambda: node(gw, "gpu-1"))
    fleet.approve("gpu-1")
    # drain: the in-flight stream finishes, no new requests
    result = {}

    def long_stream():
        result["r"] = chat(gw, stream=True, max_tokens=40)  # 2 s at 20 tokens/s

    t = threading.Thread(target=long_stream)
    t.start()
    wait_for("stream in flight", lambda: node(gw, "gpu-1").get("in_flight", 0) > 0)
    code, out, err = cli(gw, "drain", "gpu-1")
    assert code == 0, "drover nodes drain"
    n = node(gw, "gpu-1")
    assert n.get("admin") == "draining" and n.get("drained") is False, (
        "draining, not drained while the stream runs")
    st, _, _ = chat(gw)
    assert st in (404, 503), "a draining node takes no new requests (%d)" % st
    t.join(timeout=20)
    st, h, body = result.get("r", (0, {}, b""))
    ev = sse_events(body)
    assert st == 200 and ev and ev[-1] == "[DONE]" and len(ev) > 30, (
        "the in-flight stream finished on the draining node")
    assert wait_for("drained", lambda: node(gw, "gpu-1").get("drained")), (
        "the node reports drained")
    code, out, err = cli(gw, "resume", "gpu-1")
    assert code == 0, "drover nodes resume"
    wait_for("routable again", lambda: node(gw, "gpu-1").get("routable"))


def approved_and_pending(fleet):
    """gpu-1 approved and labelled tier=gold; gpu-2 joined, pending, and gone quiet."""
    gw = fleet.gw
    fleet.agent("gpu-1", 0)
    wait_for("gpu-1 joined", lambda: node(gw, "gpu-1"))
    fleet.approve("gpu-1")
    code, out, err = cli(gw, "label", "gpu-1", "tier=gold")
    assert code == 0, "label set through the CLI"
    a2 = fleet.agent("gpu-2", 1)
    wait_for("gpu-2 pending", lambda: node(gw, "gpu-2").get("admin") == "pending")
    a2.stop()


@pytest.mark.parametrize("how", ["SIGTERM", "kill -9"])
def test_gateway_restart_keeps_nodes(fleet, how):
    approved_and_pending(fleet)
    gw = fleet.restart_gw(how)
    n1, n2 = node(gw, "gpu-1"), node(gw, "gpu-2")
    assert n1.get("admin") == "approved", "approval survives " + how
    assert n1.get("labels") == {"zone": "a", "tier": "gold"}, "labels survive " + how
    assert n2.get("admin") == "pending", "a pending node stays pending after " + how
    # the agent still points at the old port: restart it against the new one with the same
    # state file (it keeps its secret; the gateway keeps its hash)
    a1 = fleet.agent("gpu-1", 0)
    # routable at the new agent's address (until its join, the gateway still knows the old
    # one, whose last probes were good)
    url = "http://" + a1.fields["listen"]
    assert wait_for("gpu-1 routable after " + how,
                    lambda: node(gw, "gpu-1").get("url") == url and
                    node(gw, "gpu-1").get("routable")), "the node serves again after " + how
    st, h, body = chat(gw)
    assert st == 200 and h.get("x-drover-node") == "gpu-1", (
        "chat after the gateway's %s: %d %r %r" % (how, st, h.get("x-drover-node"), body[:200]))


def test_quiet_pending_node_comes_back_pending_and_rm(fleet):
    approved_and_pending(fleet)
    gw = fleet.restart_gw("kill -9")
    fleet.agent("gpu-1", 0)
    a2 = fleet.agent("gpu-2", 1)
    # the gateway took the returning agent's join (its new address) and answered pending
    url = "http://" + a2.fields["listen"]
    wait_for("gpu-2 rejoined", lambda: node(gw, "gpu-2").get("url") == url)
    wait_for("gpu-2 told it is pending", lambda: joined_as(a2, "pending"))
    assert node(gw, "gpu-2").get("admin") == "pending", (
        "a pending node that went quiet and came back is still pending")
    assert not joined_as(a2, "approved"), "and was never told otherwise"
    code, out, err = cli(gw, "ls")
    assert code == 0 and "gpu-1" in out and "gpu-2" in out and "pending" in out, (
        "drover nodes ls: %r" % out)

    # remove stops it (the machine is retired first: a removed node that joins again starts
    # over as pending)
    wait_for("gpu-1 routable", lambda: node(gw, "gpu-1").get("routable"))
    fleet.agents["gpu-1"].stop()
    code, out, err = cli(gw, "rm", "gpu-1")
    assert code == 0, "drover nodes rm"
    st, _, _ = chat(gw)
    assert st in (404, 503), "a removed node gets no traffic (%d)" % st
    code, out, err = cli(gw, "approve", "gpu-1")
    assert code == 1 and "409" in err, "approving a removed node: %r" % err
