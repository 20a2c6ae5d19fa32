"""test_ops — durable fleet operations (docs/ops.md) through `drover serve`, with fake agents
(fake_agent.py) so every answer an agent can give is under the test's control: an install
across three agents with one offline, re-issuing, dead letters after 10 failures under a
moved clock, retry of a dead letter, the generic-error check, kill -9 between accepting and
applying, the start-up prune, inventory and the upgrade check, and the CLI.

Loopback only; every wait bounded; every process ended by its pid. Each test starts its own
gateway (on its own store, restarted on that store where the test is about durability) and
its own fake agents. Where the old script slept to show that nothing is applied again, a test
now moves the clock and waits for a canary op to be retried: proof that an ops pass ran.
"""
import json
import os
import sqlite3
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from fake_agent import FakeAgent  # noqa: E402
from harness import DROVER, Proc, request, wait_until  # noqa: E402

JOIN = "jt"
MIN = 60 * 1000


def start_gw(db, extra=()):
    return Proc(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                 "--set", "join.token=" + JOIN, "--set", "join.auto_approve=true",
                 "--set", "testing.clock_control=true",
                 "--set", "ops.interval=" + os.environ.get("OPS_INTERVAL", "100ms"),
                 "--set", "ops.answer_wait=3s", "--set", "ops.timeout=2s",
                 "--set", "health.interval=100ms", "--set", "health.timeout=3s",
                 "--set", "health.rise=1", "--set", "health.fall=2",
                 "--set", "store.flush_interval=50ms",
                 "--node", "static1=http://127.0.0.1:9"] + list(extra),
                "drover-serve ready", env={"DROVER_STORE_PATH": db})


def ports(gw):
    return int(gw.fields["listen"].rsplit(":", 1)[1]), int(gw.fields["admin"].rsplit(":", 1)[1])


def admin(gw, method, path, body=None):
    st, _, data = request(ports(gw)[1], method, path, body=body, timeout=20)
    try:
        return st, json.loads(data)
    except ValueError:
        return st, {"raw": data}


def join(gw, agent):
    st, _, data = request(ports(gw)[0], "POST", "/drover/v1/nodes/join", body=agent.join_body(),
                          headers={"Authorization": "Bearer " + JOIN})
    b = json.loads(data)
    if b.get("secret"):
        agent.secret = b["secret"]
    return st, b


def node(gw, name):
    return admin(gw, "GET", "/admin/v1/nodes/" + name)[1]


def wait_for(what, fn, timeout=10.0):
    return wait_until(None, what, fn, timeout)


def issue(gw, op, target, nodes=None, params=None):
    body = {"op": op, "target": target}
    if nodes:
        body["nodes"] = nodes
    if params:
        body["params"] = params
    st, b = admin(gw, "POST", "/admin/v1/ops", body=body)
    return st, {r["node"]: r for r in b.get("results", [])}


def rows(gw, all_=True):
    st, b = admin(gw, "GET", "/admin/v1/ops" + ("?all=1" if all_ else ""))
    return b.get("ops", [])


def row(gw, node_name, target, op):
    for r in rows(gw):
        if r["node"] == node_name and r["target"] == target and r["op"] == op:
            return r
    return None


def advance(gw, ms):
    st, _ = admin(gw, "POST", "/admin/v1/testing/clock", body={"advance_ms": ms})
    return st


def cli(gw, *args):
    p = subprocess.run([DROVER, "ops", "--admin", "http://127.0.0.1:%d" % ports(gw)[1]] +
                       list(args), capture_output=True, timeout=30)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


OK = {"class": "ok", "message": "", "listed": True}


class Fleet:
    """The test's gateway on its own store and fake agents a1, a2, a3 joined (auto-approved)
    and healthy; all stopped at teardown."""

    def __init__(self, tmp):
        self.db = os.path.join(tmp, "ops.db")
        self.agents = {n: FakeAgent(n) for n in ("a1", "a2", "a3")}
        self.all_agents = list(self.agents.values())
        self.gw = start_gw(self.db)
        self.canaries = 0
        for a in self.agents.values():
            st, b = join(self.gw, a)
            assert st == 200 and a.secret, "%s joined and approved" % a.name
        for n in self.agents:
            self.wait_healthy(n)

    def wait_healthy(self, n):
        wait_for(n + " healthy", lambda: node(self.gw, n).get("liveness") == "healthy")

    def go_offline(self, name):
        """Closes an agent; returns a function that brings it back on the same port."""
        a = self.agents[name]
        a.close()
        wait_for(name + " unhealthy", lambda: node(self.gw, name).get("liveness") == "unhealthy")

        def back():
            b = FakeAgent(name, port=a.port)
            b.secret = a.secret
            self.agents[name] = b
            self.all_agents.append(b)
            return b
        return back

    def restart(self, how="kill -9"):
        if how == "SIGTERM":
            assert self.gw.stop() == 0, "clean stop"
        else:
            self.gw.kill9()
        self.gw = start_gw(self.db)
        return self.gw

    def advance_and_prove_tick(self, canary_node, ms, times=1):
        """Moves the clock `times` times by ms, then waits for an ops pass after the moves:
        a canary op that failed once (so it is due again ~30 s later) is retried and done."""
        self.canaries += 1
        target = "model:canary%d" % self.canaries
        a = self.agents[canary_node]
        a.op_answer = {"class": "exception", "message": "not yet", "listed": False}
        st, res = issue(self.gw, "install", target, nodes=[canary_node])
        assert res[canary_node]["result"] == "error", "canary failed once: %r" % res
        a.op_answer = dict(OK)
        for _ in range(times):
            advance(self.gw, ms)
        wait_for("an ops pass after the clock moved (canary retried)",
                 lambda: (row(self.gw, canary_node, target, "install") or {}).get("state")
                 == "done")

    def close(self):
        if self.gw:
            self.gw.stop()
        for a in self.all_agents:
            try:
                a.close()
            except Exception:
                pass


@pytest.fixture
def fleet(tmp_path):
    f = Fleet(str(tmp_path))
    yield f
    f.close()


def test_bad_requests(fleet):
    gw = fleet.gw
    st, _ = admin(gw, "POST", "/admin/v1/ops", body={"op": "reinstall", "target": "model:x"})
    assert st == 400, "unknown op"
    st, b = admin(gw, "POST", "/admin/v1/ops", body={"op": "install", "target": "x"})
    assert st == 400 and b["error"]["param"] == "target", "malformed target names param"
    st, _ = admin(gw, "POST", "/admin/v1/ops", body={"op": "load", "target": "backend:b"})
    assert st == 400, "a backend cannot be loaded"
    st, _ = admin(gw, "POST", "/admin/v1/ops", body={"op": "install", "target": "model:x",
                                                       "nodes": "a1"})
    assert st == 400, "nodes must be an array"
    assert rows(gw) == [], "bad requests stored nothing"


def test_offline_agent_queued_then_applied_once(fleet):
    gw, agents = fleet.gw, fleet.agents
    back = fleet.go_offline("a3")
    st, res = issue(gw, "install", "model:m1")
    assert st == 200, "install answered"
    assert res.get("a1", {}).get("result") == "success", "a1 installed at once"
    assert res.get("a2", {}).get("result") == "success", "a2 installed at once"
    assert res.get("a3", {}).get("result") == "queued", "offline a3 is queued"
    assert (res.get("static1", {}).get("result") == "skipped" and
             "agent" in res["static1"]["reason"]), "a static node is skipped with the reason"
    assert row(gw, "a3", "model:m1", "install")["state"] == "pending", "a3 row pending"
    agents["a3"] = back()
    r3 = wait_for("a3's queued install applied",
                  lambda: (row(gw, "a3", "model:m1", "install") or {}).get("state") == "done"
                  and row(gw, "a3", "model:m1", "install"))
    assert r3 and len(agents["a3"].ops_for(r3["id"])) == 1, (
        "the returning node got its op exactly once")

    # issuing again updates the row instead of adding one
    before = row(gw, "a1", "model:m1", "install")
    issue(gw, "install", "model:m1", nodes=["a1"])
    same = [r for r in rows(gw) if r["node"] == "a1" and r["target"] == "model:m1"]
    assert len(same) == 1 and same[0]["id"] == before["id"], "re-issue updates the row"


def test_inventory_and_upgrade_check(fleet):
    gw, agents = fleet.gw, fleet.agents
    st, res = issue(gw, "install", "model:m1")
    assert {n: res[n]["result"] for n in agents} == {
        "a1": "success", "a2": "success", "a3": "success"}, res
    agents["a3"].installed["m1"] = "sha256:22222222"
    st, inv = admin(gw, "GET", "/admin/v1/inventory")
    names = {n["name"]: n for n in inv.get("nodes", [])}
    assert st == 200 and names.get("a1", {}).get("models", [{}])[0].get("name") == "m1", (
        "inventory lists a1's model: %r" % inv)
    st, up = admin(gw, "GET", "/admin/v1/inventory/upgrades?target=model:m1")
    out = {n["node"]: n["outdated"] for n in up.get("nodes", [])}
    assert out == {"a1": False, "a2": False, "a3": True}, "upgrade check by digest"


def test_inventory_malformed_and_latest_digest(fleet):
    """The gateway reads each agent's inventory with proto's parser: a malformed one is that
    node's error (naming the field), never the others'; an agent's latest_digest is the basis
    of its upgrade check."""
    gw, agents = fleet.gw, fleet.agents
    agents["a1"].inventory = {"models": [{"name": "m1", "digest": "sha256:old",
                                          "latest_digest": "sha256:new"}],
                              "backends": [{"name": "cuda12", "version": "12.4"}]}
    agents["a2"].inventory = {"models": [{"name": "m1", "digest": "sha256:old"}],
                              "backends": []}
    agents["a3"].inventory = {"models": [{"name": "m1", "digest": 7}], "backends": []}
    st, inv = admin(gw, "GET", "/admin/v1/inventory")
    names = {n["name"]: n for n in inv.get("nodes", [])}
    assert st == 200 and names["a1"]["error"] is None and names["a1"]["models"] == [
        {"name": "m1", "digest": "sha256:old", "latest_digest": "sha256:new"}] and names[
        "a1"]["backends"] == [{"name": "cuda12", "version": "12.4"}], (
        "a1's items as the agent sent them: %r" % inv)
    a3 = names.get("a3", {})
    assert a3.get("models") == [] and "models[0].digest" in (a3.get("error") or ""), (
        "a malformed inventory is a3's error, naming the field: %r" % a3)
    st, up = admin(gw, "GET", "/admin/v1/inventory/upgrades?target=model:m1")
    by = {n["node"]: n for n in up.get("nodes", [])}
    assert st == 200 and by["a1"]["outdated"] and by["a1"]["basis"].startswith(
        "compared with the latest"), "a1 is behind its own latest digest: %r" % up
    assert not by["a2"]["outdated"] and up["fleet_digest"] == "sha256:old", (
        "a2 agrees with the fleet: %r" % up)
    assert "malformed" in by["a3"]["basis"] and by["a3"]["digest"] is None, (
        "a3 is listed with its error: %r" % up)


def make_dead_letter(gw, agents, target):
    """An install on a1 that fails 10 times (the test clock moved past each backoff): its row
    becomes a dead letter; returns its id."""
    agents["a1"].op_answer = {"class": "exception", "message": "boom", "listed": False}
    st, res = issue(gw, "install", target, nodes=["a1"])
    assert res.get("a1", {}).get("result") == "error", "explicit failure is an error"
    op_id = row(gw, "a1", target, "install")["id"]
    for k in range(2, 11):
        advance(gw, 20 * MIN)
        wait_for("attempt %d recorded" % k,
                 lambda k=k: (row(gw, "a1", target, "install") or
                              {"attempts": 10, "state": "pending"})["attempts"] >= k)
    wait_for("dead letter", lambda: any(
        d["id"] == op_id for d in admin(gw, "GET", "/admin/v1/ops/dead")[1].get("dead", [])))
    return op_id


def test_dead_letter_cancel(fleet):
    gw, agents = fleet.gw, fleet.agents
    op_id = make_dead_letter(gw, agents, "model:hopeless")
    code, out, err = cli(gw, "cancel", str(op_id))
    assert code == 0, "drover ops cancel: %r" % err
    assert admin(gw, "GET", "/admin/v1/ops/dead")[1]["dead"] == [], "the dead letter is gone"
    assert row(gw, "a1", "model:hopeless", "install") is None, "and not queued again"
    st, b = admin(gw, "DELETE", "/admin/v1/ops/dead/%d" % op_id)
    assert st == 404, "a cancelled dead letter cannot be cancelled twice"
    st, b = admin(gw, "POST", "/admin/v1/ops/dead/%d/retry" % op_id)
    assert st == 404, "nor retried"


def test_dead_letters_and_retry(fleet):
    gw, agents = fleet.gw, fleet.agents
    agents["a1"].op_answer = {"class": "exception", "message": "boom", "listed": False}
    st, res = issue(gw, "install", "model:bad", nodes=["a1"])
    assert res.get("a1", {}).get("result") == "error", "explicit failure is an error"
    r = row(gw, "a1", "model:bad", "install")
    assert r and r["attempts"] == 1 and 24000 <= r["next_try_in_ms"] <= 36000, (
        "first retry in 30 s +- jitter: %r" % r)
    op_id = r["id"]
    for k in range(2, 11):
        advance(gw, 20 * MIN)  # past the 15 min cap with +20% jitter
        # the gateway's record, not the agent's: the agent sees the call before it answers
        wait_for("attempt %d recorded" % k,
                 lambda k=k: (row(gw, "a1", "model:bad", "install") or
                              {"attempts": 10, "state": "pending"})["attempts"] >= k and
                 (row(gw, "a1", "model:bad", "install") or {"state": "pending"})["state"]
                 == "pending")
    wait_for("dead letter", lambda: admin(gw, "GET", "/admin/v1/ops/dead")[1].get("dead"))
    dead = admin(gw, "GET", "/admin/v1/ops/dead")[1]["dead"]
    assert (len(dead) == 1 and dead[0]["id"] == op_id and dead[0]["attempts"] == 10 and
             dead[0]["last_class"] == "exception"), "dead after 10 attempts: %r" % dead
    assert row(gw, "a1", "model:bad", "install") is None, "gone from the queue"
    fleet.advance_and_prove_tick("a2", 60 * MIN, times=3)
    assert len(agents["a1"].ops_for(op_id)) == 10, "10 attempts, then a dead op is not retried"
    code, out, err = cli(gw, "dead")
    assert code == 0 and "model:bad" in out, "drover ops dead: %r" % out
    # retry: back in the queue, applied on the next tick
    agents["a1"].op_answer = {"class": "ok", "message": "", "listed": True}
    code, out, err = cli(gw, "retry", str(op_id))
    assert code == 0, "drover ops retry: %r" % err
    wait_for("retried op done",
             lambda: (row(gw, "a1", "model:bad", "install") or {}).get("state") == "done")
    assert admin(gw, "GET", "/admin/v1/ops/dead")[1]["dead"] == [], "dead letters empty"
    st, b = admin(gw, "POST", "/admin/v1/ops/dead/999/retry")
    assert st == 404, "retry of an unknown dead letter"


def test_generic_error_is_checked(fleet):
    gw, agents = fleet.gw, fleet.agents
    agents["a2"].op_answer = {"class": "error", "message": "exit 1", "listed": True}
    st, res = issue(gw, "install", "backend:cuda", nodes=["a2"])
    assert res["a2"]["result"] == "success", "generic error but listed: success"
    agents["a2"].op_answer = {"class": "error", "message": "exit 1", "listed": False}
    st, res = issue(gw, "upgrade", "backend:cuda", nodes=["a2"])
    assert res["a2"]["result"] == "error", "generic error, not listed: error"
    st, res = issue(gw, "delete", "backend:cuda", nodes=["a2"])
    assert res["a2"]["result"] == "skipped", "an op the agent does not take is skipped"
    agents["a2"].op_answer = {"class": "ok", "message": "", "listed": True}


def test_silent_agent_marked_unhealthy_then_failure_recorded(fleet):
    gw, agents = fleet.gw, fleet.agents
    agents["a1"].op_answer = {"drop": True}
    st, res = issue(gw, "install", "model:silent", nodes=["a1"])
    assert res["a1"]["result"] == "queued" and "did not answer" in res["a1"]["reason"], (
        "no answer: queued, with the reason: %r" % res["a1"])
    r = row(gw, "a1", "model:silent", "install")
    assert r and r["attempts"] == 1 and r["last_class"] == "unreachable", (
        "the failure is recorded as unreachable: %r" % r)
    with open(gw.log_path, errors="replace") as f:
        log = f.read()
    i_unhealthy = log.find('node_unhealthy node=a1 reason="no answer to an operation"')
    i_failed = log.find("event=op_failed op=%d" % r["id"]) if r else -1
    assert 0 <= i_unhealthy < i_failed, "marked unhealthy before the failure is recorded"
    agents["a1"].op_answer = {"class": "ok", "message": "", "listed": True}


def test_kill9_between_accepting_and_applying(fleet):
    gw, agents = fleet.gw, fleet.agents
    back = fleet.go_offline("a2")
    st, res = issue(gw, "install", "model:k", nodes=["a2"])
    assert res["a2"]["result"] == "queued", "accepted and queued"
    k_id = res["a2"]["op_id"]
    gw = fleet.restart("kill -9")
    assert (row(gw, "a2", "model:k", "install") or {}).get("state") == "pending", (
        "the queued op survived kill -9")
    agents["a2"] = back()
    # the earlier clock moves are not persisted: due times issued under them lie ahead
    wait_for("a2 healthy", lambda: node(gw, "a2").get("liveness") == "healthy")
    advance(gw, 24 * 60 * MIN)
    wait_for("op applied after restart",
             lambda: (row(gw, "a2", "model:k", "install") or {}).get("state") == "done")
    assert len(agents["a2"].ops_for(k_id)) == 1, "applied once"

    # "done" as DESIGN §7 means it: committed to the store (the admin API shows the row's state
    # in memory, which runs ahead of the store write by one store-thread round trip)
    def stored_done():
        con = sqlite3.connect(fleet.db)
        try:
            r = con.execute("SELECT state FROM ops WHERE id=?", (k_id,)).fetchone()
        finally:
            con.close()
        return r is not None and r[0] == "done"
    wait_for("the done state committed", stored_done)
    gw = fleet.restart("kill -9")
    wait_for("a2 healthy", lambda: node(gw, "a2").get("liveness") == "healthy")
    fleet.wait_healthy("a1")
    fleet.advance_and_prove_tick("a1", 60 * MIN)
    assert len(agents["a2"].ops_for(k_id)) == 1, "a done op is not applied again"


def test_startup_prune(fleet):
    gw, db = fleet.gw, fleet.db
    st, _ = admin(gw, "DELETE", "/admin/v1/nodes/a3")
    assert gw.stop() == 0, "clean stop"
    con = sqlite3.connect(db)
    now = int(time.time() * 1000)
    for i, (n, t) in enumerate([("ghost", "model:x"), ("a1", ""), ("a1", "weird"),
                                ("a3", "model:y"), ("a1", "model:keep")]):
        con.execute("INSERT INTO ops(id,node,target,op,state,attempts,next_try_ms,"
                    "created_ms,updated_ms) VALUES(?,?,?,?,?,?,?,?,?)",
                    (9000 + i, n, t, "install", "pending", 0, now + 3600 * 1000, now, now))
    con.commit()
    con.close()
    gw = fleet.gw = start_gw(db)
    ids = {r["id"] for r in rows(gw)}
    assert 9004 in ids and not ids & {9000, 9001, 9002, 9003}, (
        "prune removed exactly the malformed rows: %r" % sorted(ids))
    assert gw.stop() == 0, "clean stop after prune"
    con = sqlite3.connect(db)
    left = {r[0] for r in con.execute("SELECT id FROM ops WHERE id >= 9000")}
    con.close()
    assert left == {9004}, "and from the database"


def test_cli(fleet):
    gw = fleet.gw
    code, out, err = cli(gw, "install", "model:cli", "--nodes", "a1")
    assert code == 0 and "a1" in out and "success" in out, "drover ops install: %r" % out
    code, out, err = cli(gw, "ls", "--all")
    assert code == 0 and "model:cli" in out, "drover ops ls --all"
    code, out, err = cli(gw, "inventory")
    assert code == 0 and "a1" in out, "drover ops inventory"
    code, out, err = cli(gw, "install")
    assert code == 2, "drover ops install without a target"
