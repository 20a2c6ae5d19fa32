"""test_agent_join — issue 4's proof with the real parts: `drover agent` in front of
`drover sim` joins `drover serve` as pending and gets no traffic, is approved and serves;
drain lets an in-flight stream finish and takes no new requests; the gateway restarted (and
killed with -9) keeps every node, approval and label; a pending node that goes quiet and comes
back is still pending; remove stops the node; the CLI drives it all.

Loopback only; every wait bounded; every process ended by its pid.
"""
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import DROVER, Check, Proc, request, sse_events, start_sim, wait_until  # noqa: E402

check = Check("agent_join")
JOIN = "join-secret-token"
ADMIN = "admin-secret-token"
MODEL = "llama3.2:1b"
TMP = "/tmp/drover-agent-join-%d" % os.getpid()


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
    return wait_until(check, what, fn, timeout)


def chat(gw, stream=False, max_tokens=8):
    return request(api_port(gw), "POST", "/v1/chat/completions",
                   body={"model": MODEL, "stream": stream, "max_tokens": max_tokens,
                         "messages": [{"role": "user", "content": "hi"}]}, timeout=30)


def cli(gw, *args):
    p = subprocess.run([DROVER, "nodes", "--admin", "http://127.0.0.1:%d" % admin_port(gw),
                        "--token", ADMIN] + list(args), capture_output=True, timeout=20)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def main():
    os.makedirs(TMP, exist_ok=True)
    db = TMP + "/gw.db"
    sim = start_sim("--model", MODEL, "--tokens-per-second", "20", nodes=2)
    gw = start_gw(db)
    a1 = start_agent(api_port(gw), sim.ports[0], "gpu-1", TMP + "/a1.state")
    try:
        n = wait_for("gpu-1 joined", lambda: node(gw, "gpu-1"))
        check.eq(n.get("admin"), "pending", "an agent joins as pending")
        check.eq(n.get("source"), "agent", "it is a joined node")
        check.eq(n.get("labels"), {"zone": "a"}, "the agent's labels seed the node")
        st, _, body = chat(gw)
        check.ok(st in (404, 503) and json.loads(body)["error"]["code"] in
                 ("model_not_found", "no_healthy_nodes"),
                 "a pending node's model is not served: %d %r" % (st, body[:120]))
        time.sleep(0.5)
        check.eq(node(gw, "gpu-1").get("requests_total"), 0, "a pending node gets no traffic")
        check.ok(not os.path.exists(TMP + "/a1.state"), "no secret before approval")

        code, out, err = cli(gw, "approve", "gpu-1")
        check.eq(code, 0, "drover nodes approve: %r" % err)
        wait_for("gpu-1 routable", lambda: node(gw, "gpu-1").get("routable"))
        check.ok(os.path.exists(TMP + "/a1.state") and
                 (os.stat(TMP + "/a1.state").st_mode & 0o777) == 0o600,
                 "the agent keeps its secret in a 0600 state file")
        st, h, body = chat(gw)
        check.ok(st == 200 and h.get("x-drover-node") == "gpu-1" and
                 json.loads(body)["choices"][0]["message"]["content"],
                 "an approved node serves through its agent")
        st, h, body = chat(gw, stream=True)
        ev = sse_events(body)
        check.ok(st == 200 and ev and ev[-1] == "[DONE]", "streaming through the agent")

        code, out, err = cli(gw, "label", "gpu-1", "tier=gold")
        check.eq(code, 0, "label set through the CLI")

        # drain: the in-flight stream finishes, no new requests
        result = {}

        def long_stream():
            result["r"] = chat(gw, stream=True, max_tokens=40)  # 2 s at 20 tokens/s

        t = threading.Thread(target=long_stream)
        t.start()
        wait_for("stream in flight", lambda: node(gw, "gpu-1").get("in_flight", 0) > 0)
        code, out, err = cli(gw, "drain", "gpu-1")
        check.eq(code, 0, "drover nodes drain")
        n = node(gw, "gpu-1")
        check.ok(n.get("admin") == "draining" and n.get("drained") is False,
                 "draining, not drained while the stream runs")
        st, _, _ = chat(gw)
        check.ok(st in (404, 503), "a draining node takes no new requests (%d)" % st)
        t.join(timeout=20)
        st, h, body = result.get("r", (0, {}, b""))
        ev = sse_events(body)
        check.ok(st == 200 and ev and ev[-1] == "[DONE]" and len(ev) > 30,
                 "the in-flight stream finished on the draining node")
        check.ok(wait_for("drained", lambda: node(gw, "gpu-1").get("drained")),
                 "the node reports drained")
        cli(gw, "resume", "gpu-1")
        wait_for("routable again", lambda: node(gw, "gpu-1").get("routable"))

        # a second agent that stays pending and goes quiet
        a2 = start_agent(api_port(gw), sim.ports[1], "gpu-2", TMP + "/a2.state")
        wait_for("gpu-2 pending", lambda: node(gw, "gpu-2").get("admin") == "pending")
        a2.stop()

        # restart the gateway (SIGTERM), then kill -9 it: everything stays
        for how in ("SIGTERM", "kill -9"):
            if how == "SIGTERM":
                check.eq(gw.stop(), 0, "gateway exits 0")
            else:
                gw.kill9()
            gw = start_gw(db)
            n1, n2 = node(gw, "gpu-1"), node(gw, "gpu-2")
            check.eq(n1.get("admin"), "approved", "approval survives " + how)
            check.eq(n1.get("labels"), {"zone": "a", "tier": "gold"}, "labels survive " + how)
            check.eq(n2.get("admin"), "pending", "a pending node stays pending after " + how)
            # the agent still points at the old port: restart it against the new one with
            # the same state file (it keeps its secret; the gateway keeps its hash)
            a1.stop()
            a1 = start_agent(api_port(gw), sim.ports[0], "gpu-1", TMP + "/a1.state")
            # routable at the new agent's address (until its join, the gateway still knows the
            # old one, whose last probes were good)
            url = "http://" + a1.fields["listen"]
            check.ok(wait_for("gpu-1 routable after " + how,
                              lambda: node(gw, "gpu-1").get("url") == url and
                              node(gw, "gpu-1").get("routable")),
                     "the node serves again after " + how)
            st, h, body = chat(gw)
            check.ok(st == 200 and h.get("x-drover-node") == "gpu-1",
                     "chat after the gateway's %s: %d %r %r" % (how, st, h.get("x-drover-node"),
                                                                 body[:200]))

        a2 = start_agent(api_port(gw), sim.ports[1], "gpu-2", TMP + "/a2.state")
        time.sleep(1.0)  # several joins at 200 ms
        check.eq(node(gw, "gpu-2").get("admin"), "pending",
                 "a pending node that went quiet and came back is still pending")
        code, out, err = cli(gw, "ls")
        check.ok(code == 0 and "gpu-1" in out and "gpu-2" in out and "pending" in out,
                 "drover nodes ls: %r" % out)

        # remove stops it (the machine is retired first: a removed node that joins again
        # starts over as pending)
        a1.stop()
        code, out, err = cli(gw, "rm", "gpu-1")
        check.eq(code, 0, "drover nodes rm")
        st, _, _ = chat(gw)
        check.ok(st in (404, 503), "a removed node gets no traffic (%d)" % st)
        code, out, err = cli(gw, "approve", "gpu-1")
        check.ok(code == 1 and "409" in err, "approving a removed node: %r" % err)
        a2.stop()
    finally:
        gw.stop()
        sim.stop()
        subprocess.run(["rm", "-rf", TMP])
    check.done()


if __name__ == "__main__":
    main()
