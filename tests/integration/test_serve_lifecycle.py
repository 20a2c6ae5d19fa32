"""`drover serve` as a process: bad config stops start-up with file:line, SIGHUP reloads
(and keeps the old config when the new one is invalid), SIGTERM lets an in-flight stream
finish and exits 0, a second SIGTERM exits at once.

Each test starts its own gateway (fixtures below) and stops it by pid; the sims are shared
by the module since no test changes them."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from harness import DROVER, Proc, log_text, request, start_sim, wait_for  # noqa: E402


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


def test_bad_config(tmp_path):
    tmp = str(tmp_path)
    path = os.path.join(tmp, "bad.yaml")
    write(path, "listen: 127.0.0.1:0\nhealth:\n  interval: often\n")
    code, out, err = run_serve("--config", path)
    assert code == 2, "bad config exit code"
    assert "%s:3:" % path in err and "health.interval" in err, (
        "bad config names file:line and key: %r" % err)
    assert len(err.strip().splitlines()) == 1, "one line"
    code, _, err = run_serve("--config", os.path.join(tmp, "missing.yaml"))
    assert code == 2, "missing config exit code"
    code, _, err = run_serve("--bogus")
    assert code == 2 and "unknown option" in err, "unknown flag: %r" % err
    code, out, _ = run_serve("--help")
    assert code == 0 and "--config" in out, "help"
    env = dict(os.environ, DROVER_HEALTH_FALL="7")
    p = subprocess.run([DROVER, "serve", "--print-config", "--set", "health.rise=5"],
                       capture_output=True, env=env, timeout=10)
    out = p.stdout.decode()
    assert "health.fall = 7" in out and "health.rise = 5" in out, (
        "env and --set apply: %r" % out[:200])


@pytest.fixture(scope="module")
def sim2():
    s = start_sim("--model", "m1", "--tokens-per-second", "20", nodes=2)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def slow_sim():
    s = start_sim("--model", "m1", "--tokens-per-second", "2")
    yield s
    s.stop()


def ports(gw):
    return int(gw.fields["listen"].rsplit(":", 1)[1]), int(gw.fields["admin"].rsplit(":", 1)[1])


def base_config(sim_port):
    return ("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n"
            "health: {interval: 100ms, jitter: 10ms, rise: 1}\n"
            "shutdown: {grace: 10s}\n"
            "nodes:\n  - name: n0\n    url: http://127.0.0.1:%d\n" % sim_port)


@pytest.fixture
def file_gw(sim2, tmp_path):
    """A gateway run from a config file with n0 routable; .config_path, .base."""
    path = str(tmp_path / "gw.yaml")
    base = base_config(sim2.ports[0])
    write(path, base)
    gw = Proc(["serve", "--config", path], "drover-serve ready")
    gw.config_path, gw.base = path, base
    wait_for("n0 routable", lambda: admin_nodes(ports(gw)[1])["n0"]["routable"], 10)
    yield gw
    gw.stop()


def start_stream(port, max_tokens, close=False):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    body = json.dumps({"model": "m1", "stream": True, "max_tokens": max_tokens,
                       "messages": [{"role": "user", "content": "x"}]}).encode()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" +
              (b"Connection: close\r\n" if close else b"") +
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    return s


def test_reload_adds_node_and_keeps_old_config_on_bad_file(file_gw, sim2):
    gw = file_gw
    admin = ports(gw)[1]
    # add a node by reload
    write(gw.config_path, gw.base + "  - name: n1\n    url: http://127.0.0.1:%d\n" % sim2.ports[1])
    gw.signal(signal.SIGHUP)
    wait_for("n1 added by SIGHUP", lambda: admin_nodes(admin).get("n1", {}).get("routable"), 10)
    # an invalid file is refused and the old config kept
    write(gw.config_path, "health:\n  rise: zero\n")
    gw.signal(signal.SIGHUP)
    wait_for("reload refusal logged", lambda: "config_reload_failed" in log_text(gw), 10)
    assert gw.alive(), "gateway survives a bad reload"
    nodes = admin_nodes(admin)
    assert "n0" in nodes and "n1" in nodes, "old config kept after a bad reload"


def test_sigterm_lets_stream_finish(file_gw):
    gw = file_gw
    # SIGTERM while a stream is in flight: the stream completes, exit 0
    s = start_stream(ports(gw)[0], 20, close=True)
    got = s.recv(4096)
    assert got.startswith(b"HTTP/1.1 200"), "stream started before SIGTERM"
    gw.signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    s.close()
    assert b"[DONE]" in got, "in-flight stream finished after SIGTERM"
    try:
        code = gw.p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        code = None
    assert code == 0, "exit 0 after draining"


def test_second_sigterm_exits_at_once(slow_sim):
    # a second SIGTERM exits at once even with a stream in flight
    gw = Proc(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
               "--node", "n0=http://127.0.0.1:%d" % slow_sim.port, "--set", "health.interval=100ms",
               "--set", "health.rise=1", "--set", "shutdown.grace=60s"], "drover-serve ready")
    try:
        port, admin = ports(gw)
        wait_for("n0 routable (2)", lambda: admin_nodes(admin)["n0"]["routable"], 10)
        s = start_stream(port, 100)
        s.recv(4096)
        gw.signal(signal.SIGTERM)
        # the gateway saw the signal with the stream in flight and keeps running for it
        line = wait_for("shutdown on the first signal logged",
                        lambda: [l for l in log_text(gw).splitlines()
                                 if "event=shutdown" in l and "reason=signal" in l], 10)[0]
        assert "in_flight=1" in line, line
        assert gw.alive(), "first SIGTERM waits for the stream"
        assert "reason=drained" not in log_text(gw), "not drained while the stream runs"
        gw.signal(signal.SIGTERM)
        try:
            code = gw.p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        assert code == 0, "second SIGTERM exits at once"
        assert "reason=second_signal" in log_text(gw)
        s.close()
    finally:
        gw.stop()
