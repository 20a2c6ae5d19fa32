"""test_upgrade_check — issue 18 end to end with the real parts: `drover serve`, three
`drover agent`s in front of `drover sim` (Ollama API), each agent configured with upgrade
checks (upgrade_check.models / .backends: a script the test writes, run as an argv with the
item's name, printing the source's latest digest, or failing for one name, or hanging past the
check timeout for another). Nothing on the gateway knows about the checks: it reads the
agents' inventory (GET /admin/v1/inventory, the per-target upgrade check) and the "installed"
list of their discovery (`drover ops upgrades`).

Loopback only; every wait bounded; every process ended by its pid; files in the test's own
directory.
"""
import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from harness import DROVER, Proc, log_text, request, start_sim, wait_until  # noqa: E402

JOIN = "jt-upg"

CHECK = """#!/bin/sh
# the test's upgrade check: $1 the agent, $2 the kind, $3 the item's name (one argv word)
echo "$1 $2 $3" >> '%(dir)s/calls.log'
case "$2:$3" in
  backend:cuda12) echo 'sha256:cuda-new' ;;
  backend:newb) printf '  sha256:newb-latest  \\n' ;;
  backend:rocm) echo 'rocm mirror unreachable' >&2; exit 3 ;;
  backend:slow) exec sleep 30 ;;
  model:*) cat '%(dir)s/latest-model' ;;
  *) exit 1 ;;
esac
"""

BACKENDS = {
    "A1": "cuda12 1.0 sha256:cuda-old\nrocm 6.0 sha256:r1\n",
    "A2": "cuda12 1.1 sha256:cuda-new\nrocm 6.0 sha256:r2\n",
    "A3": "cuda12 1.0 sha256:cuda-old\nrocm 6.0 sha256:r1\nslow 1 sha256:s\n",
}


def wait_for(what, fn, timeout=30.0):
    return wait_until(None, what, fn, timeout)


def ports(gw):
    return int(gw.fields["listen"].rsplit(":", 1)[1]), int(gw.fields["admin"].rsplit(":", 1)[1])


def admin(gw, method, path, body=None):
    st, _, data = request(ports(gw)[1], method, path, body=body, timeout=30)
    try:
        return st, json.loads(data)
    except ValueError:
        return st, {}


def inventory(gw):
    """{node: {("model"|"backend", name): item}} from GET /admin/v1/inventory."""
    st, inv = admin(gw, "GET", "/admin/v1/inventory")
    assert st == 200, inv
    out = {}
    for n in inv.get("nodes", []):
        items = {}
        for kind in ("models", "backends"):
            for it in n.get(kind, []):
                items[(kind[:-1], it["name"])] = it
        out[n["name"]] = items
    return out


def cli(gw, *args):
    r = subprocess.run([DROVER, "ops", "--admin", "http://127.0.0.1:%d" % ports(gw)[1]] +
                       list(args), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


class Fleet:
    def __init__(self, tmp):
        self.tmp = tmp
        with open(os.path.join(tmp, "check.sh"), "w") as f:
            f.write(CHECK % {"dir": tmp})
        os.chmod(os.path.join(tmp, "check.sh"), 0o755)
        self.sims = start_sim("--model", "m0", nodes=3)
        # the source's latest digest of the model: what the sim has (every node is current)
        st, _, data = request(self.sims.ports[0], "GET", "/api/tags")
        models = json.loads(data)["models"]
        self.model = models[0]["name"]
        self.model_digest = models[0]["digest"]
        with open(os.path.join(tmp, "latest-model"), "w") as f:
            f.write(self.model_digest + "\n")
        self.gw = Proc(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                        "--set", "join.token=" + JOIN, "--set", "join.auto_approve=true",
                        "--set", "ops.interval=100ms", "--set", "ops.answer_wait=8s",
                        "--set", "health.interval=100ms", "--set", "health.rise=1",
                        "--set", "join.poll_interval=200ms"],
                       "drover-serve ready", env={"DROVER_STORE_PATH": tmp + "/gw.db"})
        self.agents = {}

    def agent(self, name):
        marks = os.path.join(self.tmp, name + "-backends.txt")
        with open(marks, "w") as f:
            f.write(BACKENDS[name])
        cfg = os.path.join(self.tmp, name + ".yaml")
        check = os.path.join(self.tmp, "check.sh")
        with open(cfg, "w") as f:
            f.write("ops_commands:\n"
                    "  backend.install: 'printf \"%%s 2.0 sha256:newb-old\\n\" {name} >> %s'\n"
                    "  backend.list: 'cat %s'\n"
                    "upgrade_check:\n"
                    "  models: '\"%s\" %s model {name}'\n"
                    "  backends: '\"%s\" %s backend {name}'\n"
                    "  interval: 1h\n"
                    "  timeout: 1s\n"
                    "  concurrency: 2\n" % (marks, marks, check, name, check, name))
        i = int(name[1]) - 1
        self.agents[name] = Proc(
            ["agent", "--config", cfg, "--gateway", "http://127.0.0.1:%d" % ports(self.gw)[0],
             "--join-token", JOIN, "--engine", "ollama",
             "--engine-url", "http://127.0.0.1:%d" % self.sims.ports[i],
             "--listen", "127.0.0.1:0", "--state-file", os.path.join(self.tmp, name + ".state"),
             "--nvidia-smi", "off", "--name", name], "drover-agent ready")

    def close(self):
        codes = {n: a.stop() for n, a in self.agents.items()}
        self.gw.stop()
        self.sims.stop()
        return codes


@pytest.fixture
def fleet(tmp_path):
    f = Fleet(str(tmp_path))
    yield f
    f.close()


def test_latest_digests_reach_the_gateway_and_the_drift_view(fleet):
    gw = fleet.gw
    for n in ("A1", "A2", "A3"):
        fleet.agent(n)
    m0 = ("model", fleet.model)

    def checked():
        inv = inventory(gw)
        return all(inv.get(n, {}).get(("backend", "cuda12"), {}).get("latest_digest") and
                   inv[n].get(m0, {}).get("latest_digest") for n in ("A1", "A2", "A3")) and inv
    inv = wait_for("every agent's inventory carries its checks' latest digests", checked)

    for n in ("A1", "A2", "A3"):
        assert inv[n][("backend", "cuda12")]["latest_digest"] == "sha256:cuda-new", inv[n]
        assert inv[n][m0] == {"name": fleet.model, "digest": fleet.model_digest,
                              "latest_digest": fleet.model_digest}, (
            "the model check ran with the engine's model name: %r" % inv[n])
        assert "latest_digest" not in inv[n][("backend", "rocm")], (
            "a failing check leaves latest_digest unknown: %r" % inv[n])
    assert inv["A1"][("backend", "cuda12")] == {
        "name": "cuda12", "version": "1.0", "digest": "sha256:cuda-old",
        "latest_digest": "sha256:cuda-new"}
    # a check past upgrade_check.timeout is killed and leaves it unknown too
    wait_for("A3's hanging check killed at its timeout",
             lambda: "upgrade_check_failed kind=backend name=slow reason=\"timed out after 1000 ms\""
             in log_text(fleet.agents["A3"]))
    assert "latest_digest" not in inventory(gw)["A3"][("backend", "slow")]
    log = log_text(fleet.agents["A1"])
    assert ("upgrade_check_failed kind=backend name=rocm reason=\"" in log and
            "exited 3: rocm mirror unreachable" in log), "the failure is logged with its reason"
    assert "upgrade_available kind=backend name=cuda12 digest=sha256:cuda-old " \
           "latest=sha256:cuda-new" in log, "A1 says an upgrade is available"

    # the per-target check on the gateway: behind when the installed digest is not the latest
    st, up = admin(gw, "GET", "/admin/v1/inventory/upgrades?target=backend:cuda12")
    assert st == 200
    rows = {r["node"]: r for r in up["nodes"]}
    assert [rows[n]["outdated"] for n in ("A1", "A2", "A3")] == [True, False, True], up
    assert rows["A1"]["latest_digest"] == "sha256:cuda-new"
    assert rows["A1"]["basis"] == "compared with the latest digest the node knows"
    # rocm's source could not be asked: the nodes are compared with each other
    st, up = admin(gw, "GET", "/admin/v1/inventory/upgrades?target=backend:rocm")
    rows = {r["node"]: r for r in up["nodes"]}
    assert up["fleet_digest"] == "sha256:r1"
    assert [rows[n]["outdated"] for n in ("A1", "A2", "A3")] == [False, True, False], up
    assert rows["A2"]["latest_digest"] is None
    assert rows["A2"]["basis"] == "compared with the digest most nodes have"

    # `drover ops upgrades`: the fleet view from the agents' discovery ("installed")
    def fleet_view():
        items = {(i["node"], i["target"]): i for i in json.loads(cli(gw, "--json", "upgrades"))
                 .get("items", [])}
        want = [(n, "backend:cuda12") for n in ("A1", "A2", "A3")] + \
               [(n, "model:" + fleet.model) for n in ("A1", "A2", "A3")]
        return all(k in items and items[k]["state"] in ("behind", "current") for k in want) \
            and items
    items = wait_for("the joins carry the checked items", fleet_view)
    states = {k: v["state"] for k, v in items.items()}
    assert states[("A1", "backend:cuda12")] == "behind"
    assert states[("A2", "backend:cuda12")] == "current"
    assert states[("A3", "backend:cuda12")] == "behind"
    assert items[("A1", "backend:cuda12")]["want"] == "sha256:cuda-new"
    for n in ("A1", "A2", "A3"):
        assert states[(n, "model:" + fleet.model)] == "current"
    assert states[("A2", "backend:rocm")] == "disagrees", states
    assert states[("A1", "backend:rocm")] == states[("A3", "backend:rocm")] == "majority"
    assert states[("A3", "backend:slow")] == "unchecked"
    table = cli(gw, "upgrades")
    lines = [l.split() for l in table.splitlines()]
    assert ["A1", "backend", "cuda12", "sha256:cuda-old", "sha256:cuda-new", "behind"] in lines, \
        table
    assert ["A2", "backend", "rocm", "sha256:r2", "-", "disagrees"] in lines, table

    # cached: however often the inventory is asked, each item was checked once
    for _ in range(3):
        inventory(gw)
    with open(os.path.join(fleet.tmp, "calls.log")) as f:
        calls = f.read().splitlines()
    for n in ("A1", "A2", "A3"):
        assert calls.count("%s backend cuda12" % n) == 1, calls
        assert calls.count("%s model %s" % (n, fleet.model)) == 1, calls

    # an install through the ops queue lists the node again: the new backend gets checked
    st, res = admin(gw, "POST", "/admin/v1/ops",
                    body={"op": "install", "target": "backend:newb", "nodes": ["A2"]})
    assert st == 200 and res["results"][0]["result"] == "success", res
    inv = wait_for("the installed backend checked",
                   lambda: inventory(gw)["A2"].get(("backend", "newb"), {}).get("latest_digest"),
                   timeout=20)
    assert inventory(gw)["A2"][("backend", "newb")]["latest_digest"] == "sha256:newb-latest"

    # shutdown does not wait for the checks
    codes = fleet.close()
    fleet.agents = {}
    assert codes == {"A1": 0, "A2": 0, "A3": 0}, codes


def live_in_group(pgid):
    """Processes of process group pgid that are alive (zombies do not count)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(d))
    return out


def test_shutdown_kills_running_checks(tmp_path):
    """A check that hangs holds nothing up: SIGTERM ends the agent (exit 0, well inside a
    shutdown_grace it would otherwise wait out) and the check's process group, a child it
    started in the background included, is gone with it. No gateway: the checks run anyway."""
    tmp = str(tmp_path)
    check = os.path.join(tmp, "hang.sh")
    with open(check, "w") as f:
        f.write("#!/bin/sh\nsleep 60 &\necho $$ > '%s/hang.pid'\nexec sleep 60\n" % tmp)
    os.chmod(check, 0o755)
    marks = os.path.join(tmp, "backends.txt")
    with open(marks, "w") as f:
        f.write("cuda12 1.0 sha256:old\n")
    cfg = os.path.join(tmp, "agent.yaml")
    with open(cfg, "w") as f:
        f.write("ops_commands:\n  backend.list: 'cat %s'\nshutdown_grace: 60s\n" % marks)
    sim = start_sim("--model", "m0")
    try:
        agent = Proc(["agent", "--config", cfg, "--engine", "ollama",
                      "--engine-url", "http://127.0.0.1:%d" % sim.port,
                      "--listen", "127.0.0.1:0", "--state-file", os.path.join(tmp, "a.state"),
                      "--nvidia-smi", "off", "--name", "solo",
                      "--set", "upgrade_check.backends=%s {name}" % check,
                      "--set", "upgrade_check.timeout=10m"], "drover-agent ready")
        pid_file = os.path.join(tmp, "hang.pid")
        pid = int(wait_for("the check started",
                           lambda: os.path.exists(pid_file) and open(pid_file).read().strip()))
        assert len(live_in_group(pid)) == 2, "the check and its background child run"
        # stop() sends SIGTERM and kills after 20 s: waiting for the check would show as -9
        assert agent.stop(timeout=20) == 0
        wait_for("the check's process group killed", lambda: not live_in_group(pid),
                 timeout=10)
        assert "upgrade_check_start" in log_text(agent)
    finally:
        sim.stop()
