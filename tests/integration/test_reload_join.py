"""test_reload_join — issue 12 §5: nothing fails open.

- SIGHUP with an empty (or token-less, node-less) config file is refused: the tokens and the
  static nodes stay, a request without a token still gets 401, and the refusal is logged.
- SIGHUP with the explicit opt-outs (allow_no_auth, allow_empty_fleet) is honoured.
- A non-loopback listener without tokens stops start-up unless allow_no_auth says so.
- A join for an approved name without the node's secret (or with a wrong one) is refused with
  403 and changes nothing: the node keeps its URL, stays approved and keeps serving. With the
  right secret the node may move.
- The descriptor limit is raised to the hard limit and a too-small one is warned about.

Real processes on loopback (harness.py); each test starts and stops its own by pid; every
wait is on a log line or the admin API, bounded.
"""
import json
import os
import resource
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from harness import DROVER, Proc, request, start_sim  # noqa: E402
from fake_agent import FakeAgent  # noqa: E402

ADMIN = "reload-admin-token"
API_KEY = "reload-client-key"
JOIN = "reload-join-token"
MODEL = "m1"


def wait_for(what, fn, timeout=15.0):
    """Polls fn every 50 ms until it returns something true; fails the test on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            v = fn()
        except (OSError, ValueError, KeyError):
            v = None
        if v:
            return v
        time.sleep(0.05)
    pytest.fail("timed out waiting for " + what)


def full_log(gw):
    with open(gw.log_path, "rb") as f:
        return f.read().decode(errors="replace")


def has_event(gw, event):
    return any(event in line for line in full_log(gw).splitlines())


def ports(gw):
    return int(gw.fields["listen"].rsplit(":", 1)[1]), int(gw.fields["admin"].rsplit(":", 1)[1])


def admin(gw, method, path, body=None, token=ADMIN):
    _, adm = ports(gw)
    h = {"Authorization": "Bearer " + token} if token else {}
    st, _, data = request(adm, method, path, body=body, headers=h)
    try:
        return st, json.loads(data)
    except ValueError:
        return st, {}


def nodes(gw, token=ADMIN):
    st, b = admin(gw, "GET", "/admin/v1/nodes", token=token)
    assert st == 200, "admin node list: %d %r" % (st, b)
    return {n["name"]: n for n in b.get("nodes", [])}


def chat(gw, key=API_KEY, model=MODEL):
    api, _ = ports(gw)
    h = {"Authorization": "Bearer " + key} if key else {}
    return request(api, "POST", "/v1/chat/completions", headers=h,
                   body={"model": model, "messages": [{"role": "user", "content": "hi"}]})


def join(gw, body, token=JOIN):
    api, _ = ports(gw)
    st, _, data = request(api, "POST", "/drover/v1/nodes/join", body=body,
                          headers={"Authorization": "Bearer " + token})
    try:
        return st, json.loads(data)
    except ValueError:
        return st, {}


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


@pytest.fixture
def sim():
    s = start_sim("--model", MODEL)
    yield s
    s.stop()


def secured_config(sim_port):
    return ("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n"
            "admin_token: %s\napi_key: %s\n"
            "health: {interval: 100ms, jitter: 10ms, rise: 1}\n"
            "nodes:\n  - name: n0\n    url: http://127.0.0.1:%d\n" % (ADMIN, API_KEY, sim_port))


@pytest.fixture
def secured_gw(sim, tmp_path):
    path = str(tmp_path / "gw.yaml")
    write(path, secured_config(sim.port))
    gw = Proc(["serve", "--config", path], "drover-serve ready")
    gw.config_path = path
    wait_for("n0 routable", lambda: nodes(gw)["n0"]["routable"])
    yield gw
    gw.stop()


def reload_and_wait(gw, text, event):
    """Writes the config, sends SIGHUP and waits for the n-th occurrence of event."""
    before = full_log(gw).count(event)
    write(gw.config_path, text)
    gw.signal(signal.SIGHUP)
    wait_for(event, lambda: full_log(gw).count(event) > before)
    assert gw.alive(), "the gateway survives the reload"


def assert_still_secured(gw):
    st, _, _ = chat(gw, key=None)
    assert st == 401, "a client request without a key is still refused: %d" % st
    st, _, _ = chat(gw, key="wrong")
    assert st == 401, "a client request with a wrong key is still refused: %d" % st
    st, _ = admin(gw, "GET", "/admin/v1/nodes", token=None)
    assert st == 401, "an admin call without a token is still refused: %d" % st
    ns = nodes(gw)
    assert "n0" in ns and ns["n0"]["admin"] == "approved", "the static node stays: %r" % ns
    st, h, body = chat(gw)
    assert st == 200 and h.get("x-drover-node") == "n0", "the node still serves: %d %r" % (
        st, body[:200])


def test_sighup_empty_file_keeps_auth_and_nodes(secured_gw):
    gw = secured_gw
    assert_still_secured(gw)
    reload_and_wait(gw, "", "config_reload_refused")
    line = [l for l in full_log(gw).splitlines() if "config_reload_refused" in l][-1]
    assert "admin_token" in line and "allow_no_auth" in line, line
    assert "level=error" in line or "ERROR" in line.upper(), "logged as an error: " + line
    assert_still_secured(gw)


@pytest.mark.parametrize("text,why", [
    ("admin_token: %s\nhealth: {interval: 100ms, rise: 1}\nnodes:\n"
     "  - {name: n0, url: 'http://127.0.0.1:%%d'}\n" % ADMIN, "api_key"),
    ("admin_token: %s\napi_key: %s\n" % (ADMIN, API_KEY), "allow_empty_fleet"),
])
def test_sighup_partial_drop_refused(secured_gw, sim, text, why):
    gw = secured_gw
    if "%d" in text:
        text = text % sim.port
    reload_and_wait(gw, text, "config_reload_refused")
    line = [l for l in full_log(gw).splitlines() if "config_reload_refused" in l][-1]
    assert why in line, line
    assert_still_secured(gw)


def test_sighup_explicit_opt_out_honoured(secured_gw):
    gw = secured_gw
    reload_and_wait(gw, "allow_no_auth: true\nallow_empty_fleet: true\n", "config_reloaded")
    assert not has_event(gw, "config_reload_refused")
    st, b = admin(gw, "GET", "/admin/v1/nodes", token=None)
    assert st == 200, "the operator asked for an open admin API: %d" % st
    assert "n0" not in {n["name"] for n in b["nodes"]}, "the static node left with the file"
    api, _ = ports(gw)
    st, _, _ = request(api, "GET", "/v1/models")
    assert st == 200, "the operator asked for an open client API: %d" % st


def test_sighup_keeps_flag_nodes(sim, tmp_path):
    """--node flags outlive the file: a reload re-applies them (before, it dropped them)."""
    path = str(tmp_path / "gw.yaml")
    write(path, "health: {interval: 100ms, rise: 1}\n")
    gw = Proc(["serve", "--config", path, "--listen", "127.0.0.1:0", "--admin-listen",
               "127.0.0.1:0", "--node", "f0=http://127.0.0.1:%d" % sim.port], "drover-serve ready")
    gw.config_path = path
    try:
        wait_for("f0 routable", lambda: nodes(gw, token=None)["f0"]["routable"])
        reload_and_wait(gw, "health: {interval: 200ms, rise: 1}\n", "config_reloaded")
        assert not has_event(gw, "config_reload_refused")
        assert nodes(gw, token=None)["f0"]["admin"] == "approved", "the flag's node stays"
    finally:
        gw.stop()


def test_non_loopback_listener_needs_tokens():
    p = subprocess.run([DROVER, "serve", "--listen", "0.0.0.0:0", "--admin-listen",
                        "127.0.0.1:0", "--set", "store.path="],
                       capture_output=True, timeout=20, stdin=subprocess.DEVNULL)
    err = p.stderr.decode()
    assert p.returncode == 2, "refused at start: %d %r" % (p.returncode, err)
    assert "0.0.0.0:0" in err and "api_key" in err and "allow_no_auth" in err, err
    assert b"drover-serve ready" not in p.stdout


def test_nofile_limit_raised_and_warned():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > 900000:
        pytest.skip("the hard descriptor limit is too high to provoke the warning")
    gw = Proc(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
               "--set", "limits.max_connections=1000000"], "drover-serve ready")
    try:
        line = wait_for("nofile warning", lambda: [l for l in full_log(gw).splitlines()
                                                   if "nofile_limit" in l and "need=" in l])[0]
        assert "soft=%d " % hard in line, "soft limit raised to the hard one: " + line
        assert "need=1000128" in line, line
        with open("/proc/%d/limits" % gw.p.pid) as f:
            row = [l for l in f if l.startswith("Max open files")][0].split()
        assert int(row[3]) == hard, "the process runs with soft = hard: %r" % row
    finally:
        gw.stop()


@pytest.fixture
def join_gw():
    gw = Proc(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
               "--set", "join.token=" + JOIN, "--set", "admin_token=" + ADMIN,
               "--set", "health.interval=100ms", "--set", "health.timeout=1s",
               "--set", "health.rise=1", "--set", "join.poll_interval=1s"],
              "drover-serve ready")
    agents = []
    yield gw, agents
    gw.stop()
    for a in agents:
        a.close()


def approved_agent(gw, agents, name):
    a = FakeAgent(name)
    agents.append(a)
    st, b = join(gw, a.join_body())
    assert st == 200 and b["state"] == "pending", b
    st, _ = admin(gw, "POST", "/admin/v1/nodes/%s/approve" % name)
    assert st == 200
    st, b = join(gw, a.join_body())
    assert st == 200 and len(b.get("secret", "")) == 64, b
    a.secret = b["secret"]
    wait_for(name + " routable", lambda: nodes(gw)[name]["routable"])
    return a


def test_rejoin_without_secret_is_refused(join_gw):
    gw, agents = join_gw
    a = approved_agent(gw, agents, "gpu-1")
    thief = FakeAgent("gpu-1")
    agents.append(thief)
    for what, extra in (("no secret", {}), ("wrong secret", {"secret": "0" * 64})):
        before = full_log(gw).count("node_identity_refused")
        st, b = join(gw, thief.join_body(**extra))
        assert st == 403, "%s: %d %r" % (what, st, b)
        assert b["error"]["code"] == "node_identity_refused", b
        assert "secret" not in b, "no secret is handed out"
        n = nodes(gw)["gpu-1"]
        assert n["url"] == a.url, "%s: the node keeps its URL" % what
        assert n["admin"] == "approved", "%s: the node stays approved" % what
        line = wait_for("refusal logged",
                        lambda: full_log(gw).count("node_identity_refused") > before and
                        [l for l in full_log(gw).splitlines() if "node_identity_refused" in l][-1])
        assert "node=gpu-1" in line and "peer=127.0.0.1:" in line, line
    # same URL, no secret: no rotation either (the token alone would get a secret)
    st, b = join(gw, a.join_body(secret=None))
    assert st == 403 and "secret" not in b, b
    # the real node keeps serving with its old secret
    assert nodes(gw)["gpu-1"]["routable"]
    chats = a.chats
    st, h, _ = chat(gw, key=None, model="fake-model")
    assert st == 200 and h.get("x-drover-node") == "gpu-1" and a.chats == chats + 1
    assert thief.chats == 0 and not thief.auth_seen, "the thief's URL is never called"
    st, b = join(gw, a.join_body())
    assert st == 200 and b["state"] == "approved" and "secret" not in b, b


def test_rejoin_with_secret_may_move(join_gw):
    gw, agents = join_gw
    a = approved_agent(gw, agents, "gpu-2")
    moved = FakeAgent("gpu-2")
    agents.append(moved)
    moved.secret = a.secret
    st, b = join(gw, moved.join_body())
    assert st == 200 and b["state"] == "approved" and "secret" not in b, b
    n = nodes(gw)["gpu-2"]
    assert n["url"] == moved.url and n["admin"] == "approved", n
    wait_for("gpu-2 routable at its new URL", lambda: nodes(gw)["gpu-2"]["routable"])
    st, h, _ = chat(gw, key=None, model="fake-model")
    assert st == 200 and moved.chats == 1, "served at the new URL"
    assert not has_event(gw, "node_identity_refused")


def test_pending_and_removed_names_rejoin_freely(join_gw):
    gw, agents = join_gw
    a = FakeAgent("gpu-3")
    agents.append(a)
    st, b = join(gw, a.join_body())
    assert st == 200 and b["state"] == "pending"
    other = FakeAgent("gpu-3")
    agents.append(other)
    st, b = join(gw, other.join_body())
    assert st == 200 and b["state"] == "pending", "a pending node is not an identity yet"
    assert nodes(gw)["gpu-3"]["url"] == other.url
    # a removed node starts over: the operator's way back for an agent that lost its secret
    st, _ = admin(gw, "POST", "/admin/v1/nodes/gpu-3/approve")
    assert st == 200
    st, b = join(gw, other.join_body())
    assert st == 200 and b.get("secret")
    st, b = join(gw, a.join_body())
    assert st == 403, "approved now: the other URL needs the secret"
    st, _ = admin(gw, "DELETE", "/admin/v1/nodes/gpu-3")
    assert st == 200
    st, b = join(gw, a.join_body())
    assert st == 200 and b["state"] == "pending" and "secret" not in b, b
