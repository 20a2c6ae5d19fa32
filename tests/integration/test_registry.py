"""test_registry — joining, approval, the admin API and CLI, and the registry's durability,
driven against `drover serve` with a small fake agent written here (docs/node_api.md), so the
gateway side is tested on its own. The real `drover agent` is exercised in test_agent_join.py.

Everything runs on loopback; every wait is bounded; every process is ended by its pid. Each
test starts its own gateway on its own store (restarting it on the same store where the test
is about durability) and its own fake agents.
"""
import json
import sqlite3
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from fake_agent import MODEL, FakeAgent  # noqa: E402
from harness import DROVER, Proc, request, wait_until  # noqa: E402

JOIN = "join-token-1"
ADMIN = "admin-token-1"


def start_gw(db, extra=(), env=None):
    e = {"DROVER_STORE_PATH": db}
    if env:
        e.update(env)
    return Proc(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                 "--set", "join.token=" + JOIN, "--set", "admin_token=" + ADMIN,
                 "--set", "health.interval=100ms", "--set", "health.timeout=1s",
                 "--set", "health.rise=1", "--set", "store.flush_interval=50ms",
                 "--set", "join.poll_interval=1s"] + list(extra),
                "drover-serve ready", env=e)


def ports(gw):
    return int(gw.fields["listen"].rsplit(":", 1)[1]), int(gw.fields["admin"].rsplit(":", 1)[1])


def join(gw, body, token=JOIN, raw=None):
    api, _ = ports(gw)
    h = {"Authorization": "Bearer " + token} if token else {}
    st, _, data = request(api, "POST", "/drover/v1/nodes/join",
                          body=raw if raw is not None else body, headers=h)
    try:
        return st, json.loads(data)
    except ValueError:
        return st, {"raw": data}


def admin(gw, method, path, body=None, token=ADMIN):
    _, adm = ports(gw)
    h = {"Authorization": "Bearer " + token} if token else {}
    st, _, data = request(adm, method, path, body=body, headers=h)
    try:
        return st, json.loads(data)
    except ValueError:
        return st, {"raw": data}


def nodes(gw, all_=False):
    st, b = admin(gw, "GET", "/admin/v1/nodes" + ("?all=1" if all_ else ""))
    return {n["name"]: n for n in b.get("nodes", [])} if st == 200 else {}


def wait_for(what, fn, timeout=10.0):
    return wait_until(None, what, fn, timeout)


def chat(gw, model=MODEL):
    api, _ = ports(gw)
    return request(api, "POST", "/v1/chat/completions",
                   body={"model": model, "messages": [{"role": "user", "content": "hi"}]})


def cli(gw, *args, token=ADMIN):
    _, adm = ports(gw)
    p = subprocess.run([DROVER, "nodes", "--admin", "http://127.0.0.1:%d" % adm,
                        "--token", token] + list(args), capture_output=True, timeout=20)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


class Gateway:
    """The test's gateway on its own store, restartable (SIGTERM or kill -9) on that store,
    and the fake agents the test made; all stopped at teardown."""

    def __init__(self, tmp):
        self.db = os.path.join(tmp, "gw.db")
        self.gw = None
        self.agents = []

    def start(self, extra=()):
        if self.gw:
            self.gw.stop()
        self.gw = start_gw(self.db, extra=extra)
        return self.gw

    def restart(self, how="SIGTERM", extra=()):
        if how == "SIGTERM":
            assert self.gw.stop() == 0, "gateway exits 0 on SIGTERM"
        else:
            self.gw.kill9()
        self.gw = None
        return self.start(extra)

    def agent(self, name):
        a = FakeAgent(name)
        self.agents.append(a)
        return a

    def close(self):
        if self.gw:
            self.gw.stop()
        for a in self.agents:
            a.close()


@pytest.fixture
def gateway(tmp_path):
    g = Gateway(str(tmp_path))
    yield g
    g.close()


def approved_agent(gw, a):
    """Joins a, approves it, joins again for the secret and waits until it is routable."""
    st, b = join(gw, a.join_body())
    assert st == 200 and b.get("state") == "pending", b
    st, b = admin(gw, "POST", "/admin/v1/nodes/%s/approve" % a.name)
    assert st == 200 and b.get("admin") == "approved", "approve: %r" % b
    st, b = join(gw, a.join_body())
    assert st == 200 and len(b.get("secret", "")) == 64, b
    a.secret = b["secret"]
    wait_for(a.name + " routable", lambda: nodes(gw).get(a.name, {}).get("routable"))
    return a


def labelled_fleet(g):
    """agent-a approved with labels gpu=a10 and tier=gold; agent-b pending."""
    gw = g.start()
    a = approved_agent(gw, g.agent("agent-a"))
    st, b = admin(gw, "PUT", "/admin/v1/nodes/agent-a/labels/gpu", body={"value": "a10"})
    assert st == 200
    st, b = admin(gw, "PATCH", "/admin/v1/nodes/agent-a/labels",
                  body={"tier": "gold", "zone": None})
    assert st == 200 and b.get("labels") == {"gpu": "a10", "tier": "gold"}, b
    b_agent = g.agent("agent-b")
    st, b = join(gw, b_agent.join_body())
    assert b.get("state") == "pending", "agent-b pending"
    return gw, a, b_agent


def test_bad_joins(gateway):
    gw = gateway.start()
    st, _ = join(gw, {"name": "n1", "url": "http://127.0.0.1:1", "engine": "openai"},
                 token="wrong")
    assert st == 401, "wrong join token"
    st, _ = join(gw, {"name": "n1", "url": "http://127.0.0.1:1", "engine": "openai"}, token=None)
    assert st == 401, "missing join token"
    cases = [
        ("malformed JSON", None, b'{"name": "x",', None),
        ("not an object", None, b'[1,2]', None),
        ("name missing", {"url": "http://127.0.0.1:1", "engine": "openai"}, None, "name"),
        ("bad name", {"name": "a b", "url": "http://127.0.0.1:1", "engine": "openai"}, None,
         "name"),
        ("url of the wrong type", {"name": "n1", "url": 5, "engine": "openai"}, None, "url"),
        ("url not http", {"name": "n1", "url": "ftp://x:1", "engine": "openai"}, None, "url"),
        ("unknown engine", {"name": "n1", "url": "http://127.0.0.1:1", "engine": "tgi"}, None,
         "engine"),
        ("labels of the wrong type", {"name": "n1", "url": "http://127.0.0.1:1",
                                      "engine": "openai", "labels": ["a"]}, None, "labels"),
        ("label value not a string", {"name": "n1", "url": "http://127.0.0.1:1",
                                      "engine": "openai", "labels": {"a": 1}}, None, "labels"),
        ("secret not hex", {"name": "n1", "url": "http://127.0.0.1:1", "engine": "openai",
                            "secret": "zz"}, None, "secret"),
        ("unknown field", {"name": "n1", "url": "http://127.0.0.1:1", "engine": "openai",
                           "gpu_count": "two"}, None, "gpu_count"),
        ("discovery of the wrong type", {"name": "n1", "url": "http://127.0.0.1:1",
                                         "engine": "openai", "discovery": "big"}, None,
         "discovery"),
    ]
    for what, body, raw, param in cases:
        st, b = join(gw, body, raw=raw)
        assert st == 400, "bad join: " + what
        if param:
            assert b.get("error", {}).get("param") == param, "bad join names the field: " + what
    api, _ = ports(gw)
    big = json.dumps({"name": "n1", "url": "http://127.0.0.1:1", "engine": "openai",
                      "discovery": {"blob": "x" * 70000}})
    st, _, _ = request(api, "POST", "/drover/v1/nodes/join", body=big,
                       headers={"Authorization": "Bearer " + JOIN})
    assert st == 400, "oversized discovery is refused"
    assert nodes(gw, all_=True) == {}, "no bad join stored anything"


def test_join_approve_and_serve(gateway):
    a = gateway.agent("agent-a")
    gw = gateway.start()
    db = gateway.db

    st, b = join(gw, a.join_body())
    assert st == 200 and b.get("state") == "pending" and "secret" not in b, (
        "first join is pending, no secret: %r" % b)
    assert b.get("poll_ms") == 1000, "join answer carries poll_ms"
    n = nodes(gw).get("agent-a", {})
    assert n.get("admin") == "pending" and not n.get("routable"), "pending node listed"
    assert n.get("labels") == {"zone": "a"}, "agent labels seed a new node"
    assert n.get("discovery", {}).get("cpus") == 2, "discovery kept"
    st, _, _ = chat(gw)
    assert a.chats == 0, "a pending node gets no traffic"
    assert not any(x for x in a.auth_seen), "a pending node is not even probed"
    st, b = join(gw, a.join_body())
    assert b.get("state") == "pending", "a pending node stays pending when it rejoins"

    st, _ = admin(gw, "POST", "/admin/v1/nodes/agent-a/approve", token="nope")
    assert st == 401, "admin call with a wrong token"
    st, _ = admin(gw, "POST", "/admin/v1/nodes/agent-a/approve", token=None)
    assert st == 401, "admin call without a token"
    st, _ = admin(gw, "POST", "/admin/v1/nodes/ghost/approve")
    assert st == 404, "approve an unknown node"
    st, _ = admin(gw, "POST", "/admin/v1/nodes/agent-a/drain")
    assert st == 409, "drain a pending node is illegal"
    st, b = admin(gw, "POST", "/admin/v1/nodes/agent-a/approve")
    assert st == 200 and b.get("admin") == "approved", "approve: %r" % b

    st, b = join(gw, a.join_body())
    assert st == 200 and b.get("state") == "approved" and len(b.get("secret", "")) == 64, (
        "join after approval issues a secret")
    a.secret = b.get("secret")
    assert wait_for("agent-a routable", lambda: nodes(gw).get("agent-a", {}).get("routable")), (
        "approved agent becomes routable")

    # the flush timer (a periodic job of drover serve) writes live state: only it writes the
    # inventory the first probe learned, since no admin change happened after it
    def stored_inventory():
        con = sqlite3.connect(db)
        try:
            row = con.execute("SELECT inventory_json FROM nodes WHERE name='agent-a'").fetchone()
        finally:
            con.close()
        return row and row[0] and MODEL in row[0]

    assert wait_for("inventory flushed", stored_inventory), (
        "the flush timer stores the probed inventory")
    st, h, body = chat(gw)
    assert st == 200 and h.get("x-drover-node") == "agent-a", "chat served by the agent"
    assert a.chats >= 1, "the agent saw the chat"
    assert ("Bearer " + a.key()) in a.auth_seen, "the gateway calls the agent with H"
    assert not any(a.secret in x for x in a.auth_seen), "the secret itself never travels back"
    st, b = join(gw, a.join_body())
    assert st == 200 and "secret" not in b, "rejoin with the right secret keeps it"


def test_labels(gateway):
    gw = gateway.start()
    a = approved_agent(gw, gateway.agent("agent-a"))
    # labels
    st, b = admin(gw, "PUT", "/admin/v1/nodes/agent-a/labels/gpu", body={"value": "a10"})
    assert st == 200 and b.get("labels", {}).get("gpu") == "a10", "label set"
    st, b = admin(gw, "PATCH", "/admin/v1/nodes/agent-a/labels",
                  body={"rack": "r1", "zone": None})
    assert b.get("labels") == {"gpu": "a10", "rack": "r1"}, "labels patched (set and delete)"
    st, _ = admin(gw, "PATCH", "/admin/v1/nodes/agent-a/labels", body={"ok": "1", "b a d": "x"})
    assert st == 400, "a bad label key is refused"
    assert nodes(gw)["agent-a"]["labels"] == {"gpu": "a10", "rack": "r1"}, (
        "a refused patch changes nothing")
    st, _ = admin(gw, "DELETE", "/admin/v1/nodes/agent-a/labels/rack")
    st, b = admin(gw, "GET", "/admin/v1/nodes/agent-a/labels")
    assert b.get("labels") == {"gpu": "a10"}, "label deleted"
    join(gw, a.join_body(labels={"zone": "b"}))
    assert nodes(gw)["agent-a"]["labels"] == {"gpu": "a10"}, (
        "after the first join the operator owns the labels")


def test_cli(gateway):
    gw = gateway.start()
    approved_agent(gw, gateway.agent("agent-a"))
    st, _ = admin(gw, "PUT", "/admin/v1/nodes/agent-a/labels/gpu", body={"value": "a10"})
    assert st == 200
    # a second node stays pending across a restart
    b_agent = gateway.agent("agent-b")
    st, b = join(gw, b_agent.join_body())
    assert b.get("state") == "pending", "agent-b pending"

    # CLI
    code, out, err = cli(gw, "ls")
    assert code == 0 and "agent-a" in out and "agent-b" in out and "NAME" in out, (
        "drover nodes ls: %r %r" % (out, err))
    code, out, err = cli(gw, "--json", "ls")
    assert (code == 0 and {n["name"] for n in json.loads(out)["nodes"]} >= {"agent-a",
                                                                             "agent-b"}), (
        "drover nodes --json ls")
    code, out, err = cli(gw, "approve", "ghost")
    assert code == 1 and "404" in err and "node_not_found" in err, (
        "CLI error carries the server's reason: %r" % err)
    code, out, err = cli(gw, "ls", token="bad")
    assert code == 1 and "401" in err, "CLI with a wrong token"
    code, out, err = cli(gw, "label", "agent-a", "tier=gold")
    assert code == 0, "CLI label set"
    code, out, err = cli(gw, "label", "agent-a")
    assert code == 0 and "tier=gold" in out and "gpu=a10" in out, "CLI label list: %r" % out
    code, out, err = cli(gw, "frobnicate", "agent-a")
    assert code == 2, "CLI unknown command"


def test_graceful_restart_keeps_everything(gateway):
    gw, a, b_agent = labelled_fleet(gateway)
    # graceful restart keeps everything
    gw = gateway.restart("SIGTERM")
    ns = nodes(gw)
    assert ns.get("agent-a", {}).get("admin") == "approved", "approval survives a restart"
    assert ns.get("agent-a", {}).get("labels") == {"gpu": "a10", "tier": "gold"}, (
        "labels survive a restart")
    assert ns.get("agent-b", {}).get("admin") == "pending", "pending survives a restart"
    st, b = join(gw, a.join_body())
    assert st == 200 and "secret" not in b, "the secret hash survives a restart"
    assert wait_for("agent-a routable after restart",
                    lambda: nodes(gw).get("agent-a", {}).get("routable")), (
        "routable again after restart")
    st, b = join(gw, b_agent.join_body())
    assert b.get("state") == "pending", "a pending node that went quiet is still pending"


def test_kill9_after_acknowledged_change(gateway):
    gw, a, b_agent = labelled_fleet(gateway)
    # kill -9 right after an acknowledged change
    st, _ = admin(gw, "PUT", "/admin/v1/nodes/agent-a/labels/acked", body={"value": "yes"})
    assert st == 200, "label acknowledged"
    st, _ = admin(gw, "POST", "/admin/v1/nodes/agent-b/reject")
    assert st == 200, "reject a pending node"
    gw = gateway.restart("kill -9")
    ns = nodes(gw, all_=True)
    assert ns.get("agent-a", {}).get("labels", {}).get("acked") == "yes", (
        "an acknowledged label survives kill -9")
    assert ns.get("agent-b", {}).get("admin") == "removed", "a rejection survives kill -9"


def test_drain_resume_remove(gateway):
    gw = gateway.start()
    a = approved_agent(gw, gateway.agent("agent-a"))
    # drain, resume, remove
    assert wait_for("agent-a routable", lambda: nodes(gw).get("agent-a", {}).get("routable")), (
        "routable after kill -9 restart")
    st, b = admin(gw, "POST", "/admin/v1/nodes/agent-a/drain")
    assert st == 200 and b["admin"] == "draining" and not b["routable"], "drain"
    assert b.get("drained") is True, "an idle draining node reports drained"
    before = a.chats
    st, _, _ = chat(gw)
    assert st != 200 and a.chats == before, "a draining node takes no new requests"
    st, b = admin(gw, "POST", "/admin/v1/nodes/agent-a/resume")
    assert b.get("admin") == "approved", "resume"
    st, _ = admin(gw, "DELETE", "/admin/v1/nodes/agent-a")
    assert st == 200, "remove"
    assert "agent-a" not in nodes(gw), "a removed node leaves the list"
    st, b = admin(gw, "GET", "/admin/v1/nodes/agent-a")
    assert b.get("admin") == "removed" and b.get("has_secret") is False, (
        "a removed node keeps no secret")
    st, b = admin(gw, "POST", "/admin/v1/nodes/agent-a/approve")
    assert st == 409 and "removed" in b.get("error", {}).get("message", ""), (
        "approving a removed node is a 409 with the reason")
    before = a.chats
    chat(gw)
    assert a.chats == before, "a removed node gets no traffic"
    st, b = join(gw, a.join_body())
    assert st == 200 and b.get("state") == "pending" and "secret" not in b, (
        "a removed node that joins again starts over as pending")


def test_auto_approve_and_static(gateway):
    gw = gateway.start(extra=["--set", "join.auto_approve=true", "--node",
                              "static1=http://127.0.0.1:9"])
    a = gateway.agent("agent-c")
    st, b = join(gw, a.join_body())
    assert st == 200 and b.get("state") == "approved" and len(b.get("secret", "")) == 64, (
        "auto-approve: approved with a secret at once")
    st, b = join(gw, {"name": "static1", "url": a.url, "engine": "openai"})
    assert st == 409, "a join cannot take a static node's name"
    st, b = admin(gw, "DELETE", "/admin/v1/nodes/static1")
    assert st == 409, "a static node is removed in the file, not the API"
    st, b = admin(gw, "PUT", "/admin/v1/nodes/static1/labels/x", body={"value": "y"})
    assert st == 409, "a static node's labels belong to the file"
    st, b = admin(gw, "POST", "/admin/v1/nodes/static1/drain")
    assert st == 200, "a static node can be drained"
    gw = gateway.restart()  # static1 no longer in the flags: forgotten
    ns = nodes(gw, all_=True)
    assert "static1" not in ns, "a static node that left the config is forgotten"
    assert ns.get("agent-c", {}).get("admin") == "approved", "auto-approved node persisted"
    gw = gateway.restart(extra=["--node", "static1=http://127.0.0.1:9"])
    assert nodes(gw).get("static1", {}).get("admin") == "approved", (
        "a static node that comes back starts approved")


def test_bad_store(tmp_path):
    tmp = str(tmp_path)
    p = subprocess.run([DROVER, "serve", "--listen", "127.0.0.1:0", "--admin-listen",
                        "127.0.0.1:0"], env=dict(os.environ,
                                                 DROVER_STORE_PATH=tmp + "/no/such/dir/x.db"),
                       capture_output=True, timeout=20)
    err = p.stderr.decode()
    assert p.returncode != 0 and "store" in err, "an unusable store stops start-up: %r" % err
    junk = tmp + "/junk.db"
    with open(junk, "wb") as f:
        f.write(b"this is not a database" * 100)
    p = subprocess.run([DROVER, "serve", "--listen", "127.0.0.1:0", "--admin-listen",
                        "127.0.0.1:0"], env=dict(os.environ, DROVER_STORE_PATH=junk),
                       capture_output=True, timeout=20)
    assert p.returncode != 0, "a file that is not a database stops start-up"
    with open(junk, "rb") as f:
        assert f.read() == b"this is not a database" * 100, "and is left untouched"
