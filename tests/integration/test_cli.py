"""test_cli — issue 13 §5: the admin CLI as an operator uses it, and the probe endpoints.

- `drover models` put/ls/show/rm round trip over the admin API, as tables and as --json;
  the reconciler's reason shows in `models ls` and `models show`.
- Empty lists say so (no nodes, no models, no operations, no dead letters).
- An unknown subcommand exits 2 with "unknown command"; an unreachable admin API names the
  URL and what to set; a refused token says to set --token or DROVER_ADMIN_TOKEN.
- /healthz and /readyz on both listeners, without a token: readyz is 503 with Retry-After
  while no node is routable and 200 once one is.

Real processes on loopback (harness.py); every wait is on the admin API, a probe endpoint or
a log line, bounded; each process is stopped by its pid.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from harness import DROVER, Proc, request, start_sim  # noqa: E402

ADMIN = "cli-admin-token"


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


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def ports(gw):
    return int(gw.fields["listen"].rsplit(":", 1)[1]), int(gw.fields["admin"].rsplit(":", 1)[1])


def cli(gw, *args, token=ADMIN, admin=None):
    """Runs `drover ARGS --admin URL`; returns (exit code, stdout, stderr)."""
    url = admin or "http://127.0.0.1:%d" % ports(gw)[1]
    env = dict(os.environ)
    env.pop("DROVER_ADMIN_URL", None)
    env.pop("DROVER_ADMIN_TOKEN", None)
    if token:
        env["DROVER_ADMIN_TOKEN"] = token
    p = subprocess.run([DROVER] + [args[0], "--admin", url] + list(args[1:]),
                       capture_output=True, text=True, timeout=60, env=env,
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


def cli_ok(gw, *args, **kw):
    rc, out, err = cli(gw, *args, **kw)
    assert rc == 0, "drover %s: exit %d\n%s%s" % (" ".join(args), rc, out, err)
    return out


def cli_json(gw, *args):
    return json.loads(cli_ok(gw, *args, "--json"))


def table(out):
    """A table's rows as dicts keyed by the header's columns (split on 2+ spaces)."""
    lines = [l for l in out.splitlines() if l.strip()]
    cols = [c for c in lines[0].split("  ") if c.strip()]
    rows = []
    for l in lines[1:]:
        cells = [c.strip() for c in l.split("  ") if c.strip()]
        rows.append(dict(zip([c.strip() for c in cols], cells)))
    return rows


def kv(out):
    """A KEY VALUE listing as a dict."""
    d = {}
    for l in out.splitlines():
        parts = l.split(None, 1)
        if parts:
            d[parts[0]] = parts[1] if len(parts) > 1 else ""
    return d


def probe(port, path):
    st, h, body = request(port, "GET", path)
    return st, h, json.loads(body)


@pytest.fixture(scope="module")
def sim():
    s = start_sim("--model", "m1")
    yield s
    s.stop()


def config(sim_port=None):
    text = ("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nadmin_token: %s\n"
            "allow_empty_fleet: true\n"
            "health: {interval: 100ms, jitter: 10ms, rise: 1}\n"
            "placement: {reconcile_interval: 100ms}\n" % ADMIN)
    if sim_port:
        text += "nodes:\n  - name: n0\n    url: http://127.0.0.1:%d\n" % sim_port
    return text


@pytest.fixture
def empty_gw(tmp_path):
    """A gateway with no node at all."""
    path = str(tmp_path / "gw.yaml")
    write(path, config())
    gw = Proc(["serve", "--config", path], "drover-serve ready")
    gw.config_path = path
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def gw(sim, tmp_path_factory):
    """A gateway with one routable node (the sim)."""
    path = str(tmp_path_factory.mktemp("cli") / "gw.yaml")
    write(path, config(sim.port))
    g = Proc(["serve", "--config", path], "drover-serve ready")
    wait_for("n0 routable",
             lambda: cli_json(g, "nodes", "show", "n0")["routable"])
    yield g
    g.stop()


# ---- models ---------------------------------------------------------------------------------

def test_models_round_trip(gw, tmp_path):
    out = cli_ok(gw, "models", "ls")
    assert out.startswith("no models"), "an empty catalogue says so: %r" % out

    out = cli_ok(gw, "models", "put", "big", "--alias", "big-alias", "--engine", "any",
                 "--capabilities", "chat,completions", "--replicas", "1:2",
                 "--selector", "gpu=h100", "--pinned", "--load-options", '{"ctx":4096}')
    assert out.splitlines()[0] == "model big added", out
    shown = kv("\n".join(out.splitlines()[1:]))
    assert shown["id"] == "big" and shown["aliases"] == "big-alias", shown
    assert shown["replicas"] == "min=1,max=2" and shown["selector"] == "gpu=h100", shown
    assert shown["pinned"] == "true" and shown["source"] == "api", shown

    # --json is the server's JSON, parseable and complete
    j = cli_json(gw, "models", "show", "big")
    assert j["id"] == "big" and j["aliases"] == ["big-alias"], j
    assert j["capabilities"] == ["chat", "completions"], j
    assert j["replicas"] == {"min": 1, "max": 2} and j["load_options"] == {"ctx": 4096}, j
    lst = cli_json(gw, "models", "ls")
    assert [m["id"] for m in lst["models"]] == ["big"], lst

    # the node carries no gpu=h100 label and has no agent: the reconciler says why
    def why_listed():
        rows = table(cli_ok(gw, "models", "ls"))
        return rows and rows[0].get("WHY NOT PLACED", "-") != "-" and rows[0]
    row = wait_for("the reconciler's reason in models ls", why_listed)
    assert row["ID"] == "big" and row["REPLICAS"] == "0/1..2", row
    # the reason names the node and what it fails (placement_explain)
    assert "labels do not match the selector" in row["WHY NOT PLACED"], row
    assert "n0" in row["WHY NOT PLACED"], row
    assert "labels do not match" in kv(cli_ok(gw, "models", "show", "big"))["reconciler"]

    # put replaces the whole entry
    out = cli_ok(gw, "models", "put", "big", "--replicas", "0")
    assert out.splitlines()[0] == "model big replaced", out
    j = cli_json(gw, "models", "show", "big")
    assert j["aliases"] == [] and j["pinned"] is False and j["replicas"]["min"] == 0, j

    # put from a file, a flag overriding it
    entry = str(tmp_path / "entry.json")
    write(entry, json.dumps({"aliases": ["f1"], "engine": "ollama", "min_vram_mb": 512}))
    cli_ok(gw, "models", "put", "filed", "--from", entry, "--engine", "vllm")
    j = cli_json(gw, "models", "show", "filed")
    assert j["aliases"] == ["f1"] and j["engine"] == "vllm" and j["min_vram_mb"] == 512, j

    # a refused entry names the field, exits 1
    rc, out, err = cli(gw, "models", "put", "bad", "--replicas", "3:1")
    assert rc == 1 and "invalid_model" in err and "replicas.max" in err, (rc, err)

    for mid in ("big", "filed"):
        out = cli_ok(gw, "models", "rm", mid)
        assert out.strip() == "model %s deleted" % mid, out
    rc, out, err = cli(gw, "models", "show", "big")
    assert rc == 1 and "model_not_found" in err and "drover models ls" in err, (rc, err)
    assert cli_ok(gw, "models", "ls").startswith("no models")
    assert cli_json(gw, "models", "ls") == {"models": []}


def test_nodes_and_ops_tables(gw):
    rows = table(cli_ok(gw, "nodes", "ls"))
    assert [r["NAME"] for r in rows] == ["n0"] and rows[0]["ROUTABLE"] == "true", rows
    assert rows[0]["MODELS"] == "m1", rows
    shown = kv(cli_ok(gw, "nodes", "show", "n0"))
    assert shown["admin"] == "approved" and shown["models"] == "m1", shown
    assert not any(v.startswith(("{", "[")) for v in shown.values()), "no embedded JSON: %r" % shown
    assert cli_json(gw, "nodes", "ls")["nodes"][0]["name"] == "n0"
    out = cli_ok(gw, "ops", "upgrades", "model:m1")
    assert "model:m1" in out.splitlines()[0], out
    assert cli_json(gw, "ops", "upgrades", "model:m1")["target"] == "model:m1"


def test_empty_lists_say_so(empty_gw):
    gw = empty_gw
    for args, want in [(("nodes", "ls"), "no nodes"), (("nodes", "ls", "--all"), "no nodes"),
                       (("models", "ls"), "no models"), (("ops", "ls"), "no operations"),
                       (("ops", "ls", "--all"), "no operations"),
                       (("ops", "dead"), "no dead letters")]:
        out = cli_ok(gw, *args)
        assert out.startswith(want), "%s: %r" % (" ".join(args), out)
        assert len(out.strip().splitlines()) == 1, "one sentence, no lone header: %r" % out
    assert cli_json(gw, "nodes", "ls") == {"nodes": []}
    assert cli_json(gw, "ops", "ls") == {"ops": []}


# ---- usage and errors ----------------------------------------------------------------------

@pytest.mark.parametrize("command", ["nodes", "models", "ops"])
def test_unknown_subcommand_exits_2(gw, command):
    rc, out, err = cli(gw, command, "frobnicate")
    assert rc == 2, (rc, out, err)
    assert "unknown command 'frobnicate'" in err and "--help" in err, err
    assert out == ""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("command", [("nodes", "ls"), ("models", "ls"), ("ops", "ls")])
def test_unreachable_admin_gives_the_hint(command):
    url = "http://127.0.0.1:%d" % free_port()
    rc, out, err = cli(None, *command, admin=url)
    assert rc == 1, (rc, err)
    assert "cannot reach the admin API at " + url in err, err
    assert "drover serve" in err and "--admin" in err and "DROVER_ADMIN_URL" in err, err
    assert len(err.strip().splitlines()) == 1, "one line: %r" % err


def test_refused_token_says_what_to_set(gw):
    for command in (("nodes", "ls"), ("models", "ls"), ("ops", "ls")):
        rc, out, err = cli(gw, *command, token="wrong")
        assert rc == 1, (rc, err)
        assert "the admin token was refused: set --token or DROVER_ADMIN_TOKEN" in err, err
        rc, out, err = cli(gw, *command, token=None)
        assert rc == 1 and "DROVER_ADMIN_TOKEN" in err, err


# ---- probes -------------------------------------------------------------------------------

def test_healthz_and_readyz(empty_gw, sim):
    gw = empty_gw
    api, adm = ports(gw)
    for port in (api, adm):
        st, _, body = probe(port, "/healthz")
        assert st == 200 and body == {"status": "ok"}, (port, st, body)
        st, h, body = probe(port, "/readyz")
        assert st == 503, "no node yet: %d %r" % (st, body)
        assert int(h.get("retry-after", "0")) > 0, h
        assert body["error"]["code"] == "no_healthy_nodes" and body["error"]["message"], body

    # a node arrives (SIGHUP with the sim in the file); readyz turns 200 once it is routable
    with open(gw.log_path, "rb") as f:
        before = f.read().count(b"config_reloaded")
    write(gw.config_path, config(sim.port))
    gw.signal(signal.SIGHUP)

    def reloaded():
        with open(gw.log_path, "rb") as f:
            return f.read().count(b"config_reloaded") > before
    wait_for("config_reloaded", reloaded)
    for port in (api, adm):
        st, _, body = wait_for("readyz 200 on port %d" % port,
                               lambda: (lambda r: r if r[0] == 200 else None)(
                                   probe(port, "/readyz")))
        assert body == {"status": "ready", "routable_nodes": 1}, body
    # neither needs a token, though both listeners are guarded
    st, _, _ = request(adm, "GET", "/admin/v1/nodes")
    assert st == 401, "the admin API itself still wants the token: %d" % st


# ---- the agent's side of a refused identity -----------------------------------------------

JOIN = "cli-join-token"


def agent(gw, sim, state, name="gpu-1"):
    api, _ = ports(gw)
    return Proc(["agent", "--gateway", "http://127.0.0.1:%d" % api, "--join-token", JOIN,
                 "--engine", "openai", "--engine-url", "http://127.0.0.1:%d" % sim.port,
                 "--listen", "127.0.0.1:0", "--state-file", state, "--nvidia-smi", "off",
                 "--name", name], "drover-agent ready")


def test_agent_reports_refused_identity(sim, tmp_path):
    """A second agent under an approved node's name, without its secret, gets 403
    node_identity_refused and logs it as such (not as an unexpected answer)."""
    path = str(tmp_path / "gw.yaml")
    write(path, config() + "join: {token: %s, auto_approve: true}\n" % JOIN)
    gw = Proc(["serve", "--config", path], "drover-serve ready")
    first = second = None
    try:
        first = agent(gw, sim, str(tmp_path / "a.state"))
        wait_for("gpu-1 approved with a secret",
                 lambda: cli_json(gw, "nodes", "show", "gpu-1")["has_secret"])
        url = cli_json(gw, "nodes", "show", "gpu-1")["url"]
        second = agent(gw, sim, str(tmp_path / "b.state"))

        def refused():
            with open(second.log_path, "rb") as f:
                lines = [l for l in f.read().decode(errors="replace").splitlines()
                         if "join_refused" in l]
            return lines and lines[-1]
        line = wait_for("the second agent's join_refused line", refused)
        assert "level=error" in line, line
        assert "the gateway refused this node's identity: the secret was rejected; an operator " \
               "must remove and re-approve the node" in line, line
        assert "unexpected answer" not in line, line
        node = cli_json(gw, "nodes", "show", "gpu-1")
        assert node["url"] == url and node["admin"] == "approved", "nothing moved: %r" % node
    finally:
        for p in (second, first, gw):
            if p:
                p.stop()
