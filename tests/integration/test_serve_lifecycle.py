"""`drover serve` as a process: bad config stops start-up with file:line, SIGHUP reloads
(and keeps the old config when the new one is invalid), SIGTERM lets an in-flight stream
finish and exits 0, a second SIGTERM exits at once."""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import DROVER, Check, Proc, request, start_sim  # noqa: E402

check = Check("serve_lifecycle")


def run_serve(*args, timeout=10):
    p = subprocess.run([DROVER, "serve"] + list(args), capture_output=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def admin_nodes(admin):
    _, _, body = request(admin, "GET", "/admin/v1/nodes")
    return {n["name"]: n for n in json.loads(body)["nodes"]}


def wait_for(pred, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return True
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    check.ok(False, "timed out waiting for " + what)
    return False


def test_bad_config(tmp):
    path = os.path.join(tmp, "bad.yaml")
    write(path, "listen: 127.0.0.1:0\nhealth:\n  interval: often\n")
    code, out, err = run_serve("--config", path)
    check.eq(code, 2, "bad config exit code")
    check.ok("%s:3:" % path in err and "health.interval" in err,
             "bad config names file:line and key: %r" % err)
    check.eq(len(err.strip().splitlines()), 1, "one line")
    code, _, err = run_serve("--config", os.path.join(tmp, "missing.yaml"))
    check.eq(code, 2, "missing config exit code")
    code, _, err = run_serve("--bogus")
    check.ok(code == 2 and "unknown option" in err, "unknown flag: %r" % err)
    code, out, _ = run_serve("--help")
    check.ok(code == 0 and "--config" in out, "help")
    env = dict(os.environ, DROVER_HEALTH_FALL="7")
    p = subprocess.run([DROVER, "serve", "--print-config", "--set", "health.rise=5"],
                       capture_output=True, env=env, timeout=10)
    out = p.stdout.decode()
    check.ok("health.fall = 7" in out and "health.rise = 5" in out,
             "env and --set apply: %r" % out[:200])


def test_reload_and_term(tmp):
    sim = start_sim("--model", "m1", "--tokens-per-second", "20", nodes=2)
    path = os.path.join(tmp, "gw.yaml")
    base = ("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n"
            "health: {interval: 100ms, jitter: 10ms, rise: 1}\n"
            "shutdown: {grace: 10s}\n"
            "nodes:\n  - name: n0\n    url: http://127.0.0.1:%d\n" % sim.ports[0])
    write(path, base)
    gw = Proc(["serve", "--config", path], "drover-serve ready")
    port = int(gw.fields["listen"].rsplit(":", 1)[1])
    admin = int(gw.fields["admin"].rsplit(":", 1)[1])
    try:
        wait_for(lambda: admin_nodes(admin)["n0"]["routable"], "n0 routable")
        # add a node by reload
        write(path, base + "  - name: n1\n    url: http://127.0.0.1:%d\n" % sim.ports[1])
        gw.signal(signal.SIGHUP)
        wait_for(lambda: admin_nodes(admin).get("n1", {}).get("routable"), "n1 added by SIGHUP")
        # an invalid file is refused and the old config kept
        write(path, "health:\n  rise: zero\n")
        gw.signal(signal.SIGHUP)
        wait_for(lambda: "config_reload_failed" in gw.read_log(), "reload refusal logged")
        check.ok(gw.alive(), "gateway survives a bad reload")
        nodes = admin_nodes(admin)
        check.ok("n0" in nodes and "n1" in nodes, "old config kept after a bad reload")
        # SIGTERM while a stream is in flight: the stream completes, exit 0
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        body = json.dumps({"model": "m1", "stream": True, "max_tokens": 20,
                           "messages": [{"role": "user", "content": "x"}]}).encode()
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        got = s.recv(4096)
        check.ok(got.startswith(b"HTTP/1.1 200"), "stream started before SIGTERM")
        gw.signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        s.close()
        check.ok(b"[DONE]" in got, "in-flight stream finished after SIGTERM")
        try:
            code = gw.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
        check.eq(code, 0, "exit 0 after draining")
    finally:
        gw.stop()
        sim.stop()

    # a second SIGTERM exits at once even with a stream in flight
    sim = start_sim("--model", "m1", "--tokens-per-second", "2")
    gw = Proc(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
               "--node", "n0=http://127.0.0.1:%d" % sim.port, "--set", "health.interval=100ms",
               "--set", "health.rise=1", "--set", "shutdown.grace=60s"], "drover-serve ready")
    port = int(gw.fields["listen"].rsplit(":", 1)[1])
    admin = int(gw.fields["admin"].rsplit(":", 1)[1])
    try:
        wait_for(lambda: admin_nodes(admin)["n0"]["routable"], "n0 routable (2)")
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        body = json.dumps({"model": "m1", "stream": True, "max_tokens": 100,
                           "messages": [{"role": "user", "content": "x"}]}).encode()
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        s.recv(4096)
        gw.signal(signal.SIGTERM)
        time.sleep(0.2)
        check.ok(gw.alive(), "first SIGTERM waits for the stream")
        gw.signal(signal.SIGTERM)
        try:
            code = gw.p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        check.eq(code, 0, "second SIGTERM exits at once")
        s.close()
    finally:
        gw.stop()
        sim.stop()


def main():
    with tempfile.TemporaryDirectory() as tmp:
        try:
            test_bad_config(tmp)
            test_reload_and_term(tmp)
        except Exception as e:
            import traceback
            traceback.print_exc()
            check.ok(False, "exception %r" % e)
    check.done()


if __name__ == "__main__":
    main()
