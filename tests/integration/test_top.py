"""drover top under tmux, and the Grafana example's metric names against a live gateway.

`drover top` runs in a detached tmux session (a real terminal: raw keys, the alternate
screen, redraws in place); the test reads the screen with capture-pane until the nodes and
the traffic show, kills a node and waits for the screen to say so, then presses q and checks
that the program ended and gave the terminal back. The Grafana dashboard
(examples/grafana-dashboard.json) must only query metrics a running gateway exports.
"""
import json
import os
import re
import shutil
import subprocess
import time

import pytest

import harness
from harness import Proc, request, start_sim, wait_for

REPO = os.path.join(os.path.dirname(__file__), "..", "..")
TMUX = shutil.which("tmux")


@pytest.fixture(scope="module")
def fleet():
    sim = start_sim(nodes=2)
    doomed = start_sim(nodes=1)
    gw = Proc(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
               "--node", "n0=http://127.0.0.1:%d" % sim.ports[0],
               "--node", "n1=http://127.0.0.1:%d" % sim.ports[1],
               "--node", "k=http://127.0.0.1:%d" % doomed.port,
               "--set", "health.interval=500ms", "--set", "health.rise=1",
               "--set", "health.fall=2", "--set", "health.timeout=300ms"],
              "drover-serve ready")
    gw.api = int(gw.fields["listen"].rsplit(":", 1)[1])
    gw.admin = int(gw.fields["admin"].rsplit(":", 1)[1])
    gw.doomed = doomed

    def routable():
        _, _, body = request(gw.admin, "GET", "/admin/v1/nodes")
        return sum(1 for n in json.loads(body)["nodes"] if n["routable"]) == 3
    wait_for("three routable nodes", routable)
    yield gw
    gw.stop()
    sim.stop()
    doomed.stop()


def chat(port, n=1):
    for i in range(n):
        st, _, _ = request(port, "POST", "/v1/chat/completions",
                           {"model": "sim-chat", "messages": [{"role": "user", "content": "t%d" % i}]})
        assert st == 200


class Tmux:
    """One detached tmux session on a private socket (never the user's server)."""

    def __init__(self, cmd, width=140, height=40):
        self.sock = "drover-top-test-%d" % os.getpid()
        self.name = "top"
        subprocess.run([TMUX, "-L", self.sock, "new-session", "-d", "-s", self.name,
                        "-x", str(width), "-y", str(height), cmd], check=True)

    def screen(self):
        r = subprocess.run([TMUX, "-L", self.sock, "capture-pane", "-p", "-t", self.name],
                           capture_output=True, text=True)
        return r.stdout

    def keys(self, *k):
        subprocess.run([TMUX, "-L", self.sock, "send-keys", "-t", self.name] + list(k), check=True)

    def pane_dead_or_gone(self):
        r = subprocess.run([TMUX, "-L", self.sock, "list-panes", "-t", self.name, "-F",
                            "#{pane_dead} #{pane_current_command}"], capture_output=True, text=True)
        return r.returncode != 0 or r.stdout.startswith("1")

    def kill(self):
        subprocess.run([TMUX, "-L", self.sock, "kill-server"], capture_output=True)


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (scripts/deps.sh installs it)")
def test_top_live_view_under_tmux(fleet):
    chat(fleet.api, 6)
    cmd = "env DROVER_ADMIN_URL=http://127.0.0.1:%d %s top --interval 0.5; sleep 30" % (
        fleet.admin, os.path.abspath(harness.DROVER))
    t = Tmux(cmd)
    try:
        scr = wait_for("the nodes on the screen",
                       lambda: (lambda s: s if re.search(r"^n0\s+approved\s+healthy", s, re.M)
                                and "k " in s else None)(t.screen()), timeout=20)
        assert "drover top" in scr
        assert "NODE" in scr and "MODEL" in scr
        # traffic shows as a rate per node while it flows, and in the minute's totals
        deadline = time.monotonic() + 20
        seen_rate = False
        while time.monotonic() < deadline and not seen_rate:
            chat(fleet.api, 4)
            s = t.screen()
            seen_rate = bool(re.search(r"requests/s [1-9]", s)) or bool(
                re.search(r"^n[01]\s.*\s[1-9][0-9]*\.\d\s+sim-chat", s, re.M))
        assert seen_rate, t.screen()
        assert re.search(r"this minute: [1-9]\d* requests", t.screen())
        assert re.search(r"^n[01]\s+sim-chat", t.screen(), re.M)
        # redrawn in place: one title line on the screen, never a scroll of frames
        assert t.screen().count("drover top") == 1
        # a node that dies shows unhealthy within the probe window
        fleet.doomed.kill9()
        wait_for("k unhealthy on the screen",
                 lambda: re.search(r"^k\s+approved\s+unhealthy", t.screen(), re.M), timeout=10)
        # q quits and gives the terminal back (the shell's `sleep` keeps the pane to look at)
        t.keys("q")
        wait_for("top ended", lambda: "drover top" not in t.screen(), timeout=5)
    finally:
        t.kill()


def test_top_once_and_bad_flags(fleet):
    env = dict(os.environ, DROVER_ADMIN_URL="http://127.0.0.1:%d" % fleet.admin)
    r = subprocess.run([harness.DROVER, "top", "--once"], capture_output=True, text=True,
                       env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stdout
    assert re.search(r"^n0\s+approved", r.stdout, re.M)
    r = subprocess.run([harness.DROVER, "top", "--interval", "0"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 2 and "--interval" in r.stderr
    r = subprocess.run([harness.DROVER, "top", "--once", "--admin", "http://127.0.0.1:1"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "cannot reach the admin API" in r.stdout


def grafana_metric_names():
    with open(os.path.join(REPO, "examples", "grafana-dashboard.json")) as f:
        doc = json.load(f)
    names = set()
    for p in doc["panels"]:
        for t in p.get("targets", []):
            names.update(re.findall(r"\bdrover_[a-z_]+", t["expr"]))
    return names


def test_grafana_dashboard_queries_only_exported_metrics(fleet):
    chat(fleet.api, 2)  # histograms and request series have samples
    _, _, body = request(fleet.admin, "GET", "/metrics")
    exported = set()
    for line in body.decode().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        exported.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    wanted = grafana_metric_names()
    assert len(wanted) >= 15, wanted
    missing = sorted(wanted - exported)
    assert not missing, "the dashboard queries metrics /metrics does not export: %s" % missing
