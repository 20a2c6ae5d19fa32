"""test_ops — durable fleet operations (docs/ops.md) through `drover serve`, with fake agents
(fake_agent.py) so every answer an agent can give is under the test's control: an install
across three agents with one offline, re-issuing, dead letters after 10 failures under a
moved clock, retry of a dead letter, the generic-error check, kill -9 between accepting and
applying, the start-up prune, inventory and the upgrade check, and the CLI.

Loopback only; every wait bounded; every process ended by its pid.
"""
import json
import os
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from fake_agent import FakeAgent  # noqa: E402
from harness import DROVER, Check, Proc, request, wait_until  # noqa: E402

check = Check("ops")
JOIN = "jt"
MIN = 60 * 1000


def start_gw(db, extra=()):
    return Proc(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                 "--set", "join.token=" + JOIN, "--set", "join.auto_approve=true",
                 "--set", "testing.clock_control=true", "--set", "ops.interval=" + os.environ.get("OPS_INTERVAL", "100ms"),
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
    return wait_until(check, what, fn, timeout)


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


def main():
    tmp = "/tmp/drover-ops-%d" % os.getpid()
    os.makedirs(tmp, exist_ok=True)
    db = tmp + "/ops.db"
    agents = {n: FakeAgent(n) for n in ("a1", "a2", "a3")}
    gw = start_gw(db)
    try:
        for a in agents.values():
            st, b = join(gw, a)
            check.ok(st == 200 and a.secret, "%s joined and approved" % a.name)
        for n in agents:
            wait_for(n + " healthy", lambda n=n: node(gw, n).get("liveness") == "healthy")

        # bad requests
        st, _ = admin(gw, "POST", "/admin/v1/ops", body={"op": "reinstall", "target": "model:x"})
        check.eq(st, 400, "unknown op")
        st, b = admin(gw, "POST", "/admin/v1/ops", body={"op": "install", "target": "x"})
        check.ok(st == 400 and b["error"]["param"] == "target", "malformed target names param")
        st, _ = admin(gw, "POST", "/admin/v1/ops", body={"op": "load", "target": "backend:b"})
        check.eq(st, 400, "a backend cannot be loaded")
        st, _ = admin(gw, "POST", "/admin/v1/ops", body={"op": "install", "target": "model:x",
                                                           "nodes": "a1"})
        check.eq(st, 400, "nodes must be an array")
        check.eq(rows(gw), [], "bad requests stored nothing")

        # one agent offline: two succeed at once, one is queued and applied when it returns
        a3_port = agents["a3"].port
        agents["a3"].close()
        wait_for("a3 unhealthy", lambda: node(gw, "a3").get("liveness") == "unhealthy")
        st, res = issue(gw, "install", "model:m1")
        check.eq(st, 200, "install answered")
        check.eq(res.get("a1", {}).get("result"), "success", "a1 installed at once")
        check.eq(res.get("a2", {}).get("result"), "success", "a2 installed at once")
        check.eq(res.get("a3", {}).get("result"), "queued", "offline a3 is queued")
        check.ok(res.get("static1", {}).get("result") == "skipped" and
                 "agent" in res["static1"]["reason"], "a static node is skipped with the reason")
        check.eq(row(gw, "a3", "model:m1", "install")["state"], "pending", "a3 row pending")
        secret = agents["a3"].secret
        agents["a3"] = FakeAgent("a3", port=a3_port)
        agents["a3"].secret = secret
        r3 = wait_for("a3's queued install applied",
                      lambda: (row(gw, "a3", "model:m1", "install") or {}).get("state") == "done"
                      and row(gw, "a3", "model:m1", "install"))
        check.ok(r3 and len(agents["a3"].ops_for(r3["id"])) == 1,
                 "the returning node got its op exactly once")

        # issuing again updates the row instead of adding one
        before = row(gw, "a1", "model:m1", "install")
        issue(gw, "install", "model:m1", nodes=["a1"])
        same = [r for r in rows(gw) if r["node"] == "a1" and r["target"] == "model:m1"]
        check.ok(len(same) == 1 and same[0]["id"] == before["id"], "re-issue updates the row")

        # inventory and the upgrade check
        agents["a3"].installed["m1"] = "sha256:22222222"
        st, inv = admin(gw, "GET", "/admin/v1/inventory")
        names = {n["name"]: n for n in inv.get("nodes", [])}
        check.ok(st == 200 and names.get("a1", {}).get("models", [{}])[0].get("name") == "m1",
                 "inventory lists a1's model: %r" % inv)
        st, up = admin(gw, "GET", "/admin/v1/inventory/upgrades?target=model:m1")
        out = {n["node"]: n["outdated"] for n in up.get("nodes", [])}
        check.eq(out, {"a1": False, "a2": False, "a3": True}, "upgrade check by digest")

        # an op that always fails goes to the dead letters after 10 attempts, then stops
        agents["a1"].op_answer = {"class": "exception", "message": "boom", "listed": False}
        st, res = issue(gw, "install", "model:bad", nodes=["a1"])
        check.eq(res.get("a1", {}).get("result"), "error", "explicit failure is an error")
        r = row(gw, "a1", "model:bad", "install")
        check.ok(r and r["attempts"] == 1 and 24000 <= r["next_try_in_ms"] <= 36000,
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
        check.ok(len(dead) == 1 and dead[0]["id"] == op_id and dead[0]["attempts"] == 10 and
                 dead[0]["last_class"] == "exception", "dead after 10 attempts: %r" % dead)
        check.ok(row(gw, "a1", "model:bad", "install") is None, "gone from the queue")
        for _ in range(3):
            advance(gw, 60 * MIN)
        time.sleep(0.5)
        check.eq(len(agents["a1"].ops_for(op_id)), 10, "10 attempts, then a dead op is not retried")
        code, out, err = cli(gw, "dead")
        check.ok(code == 0 and "model:bad" in out, "drover ops dead: %r" % out)
        # retry: back in the queue, applied on the next tick
        agents["a1"].op_answer = {"class": "ok", "message": "", "listed": True}
        code, out, err = cli(gw, "retry", str(op_id))
        check.eq(code, 0, "drover ops retry: %r" % err)
        wait_for("retried op done",
                 lambda: (row(gw, "a1", "model:bad", "install") or {}).get("state") == "done")
        check.eq(admin(gw, "GET", "/admin/v1/ops/dead")[1]["dead"], [], "dead letters empty")
        st, b = admin(gw, "POST", "/admin/v1/ops/dead/999/retry")
        check.eq(st, 404, "retry of an unknown dead letter")

        # a generic error is checked: done when the target is listed, failed when not
        agents["a2"].op_answer = {"class": "error", "message": "exit 1", "listed": True}
        st, res = issue(gw, "install", "backend:cuda", nodes=["a2"])
        check.eq(res["a2"]["result"], "success", "generic error but listed: success")
        agents["a2"].op_answer = {"class": "error", "message": "exit 1", "listed": False}
        st, res = issue(gw, "upgrade", "backend:cuda", nodes=["a2"])
        check.eq(res["a2"]["result"], "error", "generic error, not listed: error")
        st, res = issue(gw, "delete", "backend:cuda", nodes=["a2"])
        check.ok(res["a2"]["result"] == "skipped", "an op the agent does not take is skipped")
        agents["a2"].op_answer = {"class": "ok", "message": "", "listed": True}

        # an agent that does not answer at all: the node is marked unhealthy, then the failure
        # is recorded (and the op stays queued for when it is back)
        agents["a1"].op_answer = {"drop": True}
        st, res = issue(gw, "install", "model:silent", nodes=["a1"])
        check.ok(res["a1"]["result"] == "queued" and "did not answer" in res["a1"]["reason"],
                 "no answer: queued, with the reason: %r" % res["a1"])
        r = row(gw, "a1", "model:silent", "install")
        check.ok(r and r["attempts"] == 1 and r["last_class"] == "unreachable",
                 "the failure is recorded as unreachable: %r" % r)
        with open(gw.log_path, errors="replace") as f:
            log = f.read()
        i_unhealthy = log.find('node_unhealthy node=a1 reason="no answer to an operation"')
        i_failed = log.find("event=op_failed op=%d" % r["id"]) if r else -1
        check.ok(0 <= i_unhealthy < i_failed, "marked unhealthy before the failure is recorded")
        agents["a1"].op_answer = {"class": "ok", "message": "", "listed": True}

        # kill -9 between accepting and applying: nothing lost, nothing applied twice
        a2_port, a2_secret = agents["a2"].port, agents["a2"].secret
        agents["a2"].close()
        wait_for("a2 unhealthy", lambda: node(gw, "a2").get("liveness") == "unhealthy")
        st, res = issue(gw, "install", "model:k", nodes=["a2"])
        check.eq(res["a2"]["result"], "queued", "accepted and queued")
        k_id = res["a2"]["op_id"]
        gw.kill9()
        gw = start_gw(db)
        check.eq((row(gw, "a2", "model:k", "install") or {}).get("state"), "pending",
                 "the queued op survived kill -9")
        agents["a2"] = FakeAgent("a2", port=a2_port)
        agents["a2"].secret = a2_secret
        # the earlier clock moves are not persisted: due times issued under them lie ahead
        wait_for("a2 healthy", lambda: node(gw, "a2").get("liveness") == "healthy")
        advance(gw, 24 * 60 * MIN)
        wait_for("op applied after restart",
                 lambda: (row(gw, "a2", "model:k", "install") or {}).get("state") == "done")
        check.eq(len(agents["a2"].ops_for(k_id)), 1, "applied once")
        gw.kill9()
        gw = start_gw(db)
        wait_for("a2 healthy", lambda: node(gw, "a2").get("liveness") == "healthy")
        advance(gw, 60 * MIN)
        time.sleep(0.5)
        check.eq(len(agents["a2"].ops_for(k_id)), 1, "a done op is not applied again")

        # start-up prune: exactly the malformed rows go
        st, _ = admin(gw, "DELETE", "/admin/v1/nodes/a3")
        check.eq(gw.stop(), 0, "clean stop")
        con = sqlite3.connect(db)
        now = int(time.time() * 1000)
        for i, (n, t) in enumerate([("ghost", "model:x"), ("a1", ""), ("a1", "weird"),
                                    ("a3", "model:y"), ("a1", "model:keep")]):
            con.execute("INSERT INTO ops(id,node,target,op,state,attempts,next_try_ms,"
                        "created_ms,updated_ms) VALUES(?,?,?,?,?,?,?,?,?)",
                        (9000 + i, n, t, "install", "pending", 0, now + 3600 * 1000, now, now))
        con.commit()
        con.close()
        gw = start_gw(db)
        ids = {r["id"] for r in rows(gw)}
        check.ok(9004 in ids and not ids & {9000, 9001, 9002, 9003},
                 "prune removed exactly the malformed rows: %r" % sorted(ids))
        check.eq(gw.stop(), 0, "clean stop after prune")
        con = sqlite3.connect(db)
        left = {r[0] for r in con.execute("SELECT id FROM ops WHERE id >= 9000")}
        con.close()
        check.eq(left, {9004}, "and from the database")

        # CLI
        gw = start_gw(db)
        wait_for("a1 healthy", lambda: node(gw, "a1").get("liveness") == "healthy")
        code, out, err = cli(gw, "install", "model:cli", "--nodes", "a1")
        check.ok(code == 0 and "a1" in out and "success" in out, "drover ops install: %r" % out)
        code, out, err = cli(gw, "ls", "--all")
        check.ok(code == 0 and "model:cli" in out, "drover ops ls --all")
        code, out, err = cli(gw, "inventory")
        check.ok(code == 0 and "a1" in out, "drover ops inventory")
        code, out, err = cli(gw, "install")
        check.eq(code, 2, "drover ops install without a target")
        gw.stop()
    finally:
        for a in agents.values():
            try:
                a.close()
            except Exception:
                pass
        subprocess.run(["rm", "-rf", tmp])
    check.done()


if __name__ == "__main__":
    main()
