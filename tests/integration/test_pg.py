"""test_pg — the store on PostgreSQL, against a private cluster that scripts/pg.sh starts in a
temp dir (and stops by pid at the end): the whole unit suite of the store (test_store) with
DROVER_TEST_PG_URL; `drover serve` with store.engine=postgres keeping an approved node, a
catalogue entry and a queued operation across kill -9; `drover store migrate` from a SQLite
file; and a PostgreSQL outage under a running gateway: requests still served, admin writes
refused at once (no hang), writes working again once the server is back.

Each test gets a database of its own. Skips, saying why, when the PostgreSQL 15 server
binaries are not installed (scripts/deps.sh installs them).
"""
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest  # noqa: F401 (fixtures from conftest.py; runs under pytest)

sys.path.insert(0, os.path.dirname(__file__))
from fake_agent import FakeAgent  # noqa: E402
from harness import DROVER, Proc, request, wait_until  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PG_SH = os.path.join(ROOT, "scripts", "pg.sh")
TEST_STORE = os.path.join(os.path.dirname(os.path.abspath(DROVER)), "test_store")
JOIN = "jt"


def pg_bin(name):
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/" + name))
    return found[-1] if found else None


class Cluster:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="drover-pg-")
        self.start()

    def start(self):
        p = subprocess.run([PG_SH, "start", self.dir], capture_output=True, timeout=120)
        assert p.returncode == 0, "pg.sh start: %s" % p.stderr.decode()
        self.running = True
        with open(os.path.join(self.dir, "url")) as f:
            self.url = f.read().strip()

    def stop(self):
        p = subprocess.run([PG_SH, "stop", self.dir], capture_output=True, timeout=60)
        assert p.returncode == 0, "pg.sh stop: %s" % p.stderr.decode()
        self.running = False

    def sql(self, text, db="postgres"):
        p = subprocess.run([pg_bin("psql"), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
                            "-d", self.db_url(db), "-c", text], capture_output=True, timeout=30)
        assert p.returncode == 0, "psql %s: %s" % (text, p.stderr.decode())
        return p.stdout.decode().strip()

    def new_db(self, name):
        self.sql("CREATE DATABASE " + name)
        return self.db_url(name)

    def db_url(self, name):
        return self.url.replace("dbname=postgres", "dbname=" + name)

    def close(self):
        try:
            if self.running:
                self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)



def start_gw(store, extra=()):
    """store: {"engine": "postgres", "url": …} or {"path": …}."""
    env = {}
    if "url" in store:
        env = {"DROVER_STORE_ENGINE": "postgres", "DROVER_STORE_URL": store["url"]}
    else:
        env = {"DROVER_STORE_PATH": store["path"]}
    return Proc(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                 "--set", "join.token=" + JOIN,
                 "--set", "ops.interval=100ms", "--set", "ops.answer_wait=2s",
                 "--set", "ops.timeout=1s",
                 "--set", "health.interval=100ms", "--set", "health.timeout=1s",
                 "--set", "store.flush_interval=50ms",
                 "--node", "static1=http://127.0.0.1:9"] + list(extra),
                "drover-serve ready", env=env)


def ports(gw):
    return int(gw.fields["listen"].rsplit(":", 1)[1]), int(gw.fields["admin"].rsplit(":", 1)[1])


def admin(gw, method, path, body=None, timeout=30):
    st, _, data = request(ports(gw)[1], method, path, body=body, timeout=timeout)
    try:
        return st, json.loads(data)
    except ValueError:
        return st, {"raw": data}


def join_and_approve(gw, agent):
    st, _, data = request(ports(gw)[0], "POST", "/drover/v1/nodes/join", body=agent.join_body(),
                          headers={"Authorization": "Bearer " + JOIN})
    assert st in (200, 202), "join answered %d %r" % (st, data)
    assert admin(gw, "GET", "/admin/v1/nodes/" + agent.name)[1].get("admin") == "pending"
    p = subprocess.run([DROVER, "nodes", "--admin", "http://127.0.0.1:%d" % ports(gw)[1],
                        "approve", agent.name], capture_output=True, timeout=20)
    assert p.returncode == 0, p.stderr.decode()


def node_admin(gw, name):
    return admin(gw, "GET", "/admin/v1/nodes/" + name)[1].get("admin")


def op_rows(gw):
    return admin(gw, "GET", "/admin/v1/ops?all=1")[1].get("ops", [])


def test_store_unit_suite_on_postgres(pg):
    """Every test of test_store, on this cluster (each test wipes its database's schema)."""
    assert os.path.exists(TEST_STORE), "test_store is built beside drover"
    url = pg.new_db("unit")
    env = dict(os.environ, DROVER_TEST_PG_URL=url)
    p = subprocess.run([TEST_STORE], capture_output=True, timeout=240, env=env)
    out = p.stdout.decode() + p.stderr.decode()
    # the failing lines first: a CI log keeps only the head of a long message
    failing = [ln for ln in out.splitlines()
               if "FAILED" in ln or "ERROR" in ln or "rror:" in ln or "Failure" in ln]
    assert p.returncode == 0, "\n".join(failing[:20]) + "\n---\n" + out[-3000:]
    assert out.count("Running") == 2, "both engines ran:\n" + out[-2000:]
    assert pg.sql("SELECT count(*) FROM schema_migrations", db="unit") != "0"


def test_serve_on_postgres_keeps_state_across_restart(pg, tmp_path):
    url = pg.new_db("e2e")
    sqlite_path = str(tmp_path / "unused.db")
    gw = start_gw({"url": url}, extra=["--set", "store.path=" + sqlite_path])
    agent = FakeAgent("gpu-a")
    try:
        join_and_approve(gw, agent)
        st, b = admin(gw, "PUT", "/admin/v1/models/llama3", body={"id": "llama3"})
        assert st in (200, 201), (st, b)
        agent.close()  # offline: the operation is queued, not done
        st, b = admin(gw, "POST", "/admin/v1/ops",
                      body={"op": "install", "target": "model:m1", "nodes": ["gpu-a"]})
        assert st == 200, (st, b)
        assert any(r["node"] == "gpu-a" and r["state"] != "done" for r in op_rows(gw))
        # every acknowledged write is in PostgreSQL, none in a SQLite file
        assert pg.sql("SELECT admin FROM nodes WHERE name = 'gpu-a'", db="e2e") == "approved"
        assert pg.sql("SELECT count(*) FROM catalogue WHERE id = 'llama3'", db="e2e") == "1"
        gw.kill9()
        assert not os.path.exists(sqlite_path)

        gw = start_gw({"url": url})
        assert node_admin(gw, "gpu-a") == "approved"
        st, m = admin(gw, "GET", "/admin/v1/models/llama3")
        assert st == 200, (st, m)
        rows = [r for r in op_rows(gw) if r["node"] == "gpu-a" and r["target"] == "model:m1"]
        assert len(rows) == 1 and rows[0]["state"] != "done", rows
        assert gw.stop() == 0
    finally:
        gw.stop()
        agent.close()


def test_store_migrate_sqlite_to_postgres(pg, tmp_path):
    db = str(tmp_path / "one.db")
    gw = start_gw({"path": db})
    agent = FakeAgent("gpu-b")
    try:
        join_and_approve(gw, agent)
        st, _ = admin(gw, "PUT", "/admin/v1/models/qwen", body={"id": "qwen"})
        assert st in (200, 201)
        assert gw.stop() == 0
    finally:
        gw.stop()
        agent.close()

    url = pg.new_db("mig")
    p = subprocess.run([DROVER, "store", "migrate", "--from", "sqlite:" + db,
                        "--to", "postgres:" + url], capture_output=True, timeout=60)
    out = p.stdout.decode()
    assert p.returncode == 0, p.stderr.decode()
    assert "nodes=2" in out and "catalogue=1" in out, out  # gpu-b and static1
    assert "password" not in out and url not in out

    # a second copy into the now full database is refused and changes nothing
    p = subprocess.run([DROVER, "store", "migrate", "--from", "sqlite:" + db,
                        "--to", "postgres:" + url], capture_output=True, timeout=60)
    assert p.returncode == 1 and "not empty" in p.stderr.decode()
    assert pg.sql("SELECT count(*) FROM nodes", db="mig") == "2"

    gw = start_gw({"url": url})
    try:
        assert node_admin(gw, "gpu-b") == "approved"
        assert admin(gw, "GET", "/admin/v1/models/qwen")[0] == 200
    finally:
        gw.stop()

    p = subprocess.run([DROVER, "store", "migrate", "--from", db], capture_output=True,
                       timeout=10)
    assert p.returncode == 2


def test_postgres_outage_under_a_running_gateway(pg):
    """Its own cluster, stopped and started again under a running gateway."""
    c = Cluster()
    gw = None
    try:
        url = c.new_db("outage")
        gw = start_gw({"url": url})
        st, _ = admin(gw, "PUT", "/admin/v1/models/before", body={"id": "before"})
        assert st in (200, 201)
        c.stop()

        # the data path does not wait on the store
        st, _, _ = request(ports(gw)[0], "GET", "/v1/models", timeout=10)
        assert st == 200
        # an admin write is refused, at once rather than after a hang
        t0 = time.monotonic()
        st, b = admin(gw, "PUT", "/admin/v1/models/during", body={"id": "during"}, timeout=30)
        assert st >= 500, (st, b)
        assert time.monotonic() - t0 < 20
        assert gw.alive()

        c.start()  # same data, same port
        wait_until(None, "an admin write succeeds once PostgreSQL is back",
                   lambda: admin(gw, "PUT", "/admin/v1/models/after",
                                 body={"id": "after"})[0] in (200, 201), timeout=30)
        assert c.sql("SELECT count(*) FROM catalogue WHERE id = 'after'", db="outage") == "1"
        assert "store_reconnected" in gw.read_log()
    finally:
        if gw:
            gw.stop()
        c.close()


def test_failover_to_a_promoted_standby(pg):
    """docs/deploy.md: a multi-host store.url with target_session_attrs=read-write makes a
    standby promotion a reconnect. A primary and its streaming standby (scripts/pg.sh
    standby); the primary stops; until the standby is promoted admin writes answer 503
    (the standby is read-only: never written to), the data path keeps answering; after the
    promotion the gateway reconnects to it by itself and writes land there, with what was
    written before the failover still present."""
    primary = Cluster()
    standby_dir = tempfile.mkdtemp(prefix="drover-pg-standby-")
    standby_up = False
    gw = None
    try:
        primary.new_db("fo")
        p = subprocess.run([PG_SH, "standby", standby_dir, primary.dir], capture_output=True,
                           timeout=120)
        assert p.returncode == 0, "pg.sh standby: %s" % p.stderr.decode()
        standby_up = True
        with open(os.path.join(standby_dir, "port")) as f:
            standby_port = int(f.read().strip())
        with open(os.path.join(primary.dir, "port")) as f:
            primary_port = int(f.read().strip())
        url = ("host=127.0.0.1,127.0.0.1 port=%d,%d user=postgres dbname=fo "
               "target_session_attrs=read-write connect_timeout=2" % (primary_port, standby_port))
        gw = start_gw({"url": url})
        st, _ = admin(gw, "PUT", "/admin/v1/models/before", body={"id": "before"})
        assert st in (200, 201)

        def standby_sql(text, check=True):
            q = subprocess.run([pg_bin("psql"), "-X", "-q", "-t", "-A", "-h", "127.0.0.1",
                                "-p", str(standby_port), "-U", "postgres", "-d", "fo", "-c", text],
                               capture_output=True, timeout=30)
            assert q.returncode == 0 or not check, q.stderr.decode()
            return q.stdout.decode().strip() if q.returncode == 0 else None
        # until the standby has replayed the migrations the table is not there at all
        wait_until(None, "the standby has replayed the write",
                   lambda: standby_sql("SELECT count(*) FROM catalogue WHERE id = 'before'",
                                       check=False) == "1", timeout=20)
        assert standby_sql("SELECT pg_is_in_recovery()") == "t"

        primary.stop()
        st, b = admin(gw, "PUT", "/admin/v1/models/during", body={"id": "during"})
        assert st == 503 and b["error"]["code"] == "store_unavailable", (st, b)
        st, _, _ = request(ports(gw)[0], "GET", "/v1/models", timeout=10)
        assert st == 200

        p = subprocess.run([PG_SH, "promote", standby_dir], capture_output=True, timeout=90)
        assert p.returncode == 0, "pg.sh promote: %s" % p.stderr.decode()
        wait_until(None, "an admin write succeeds on the promoted standby",
                   lambda: admin(gw, "PUT", "/admin/v1/models/after",
                                 body={"id": "after"})[0] in (200, 201), timeout=40)
        assert standby_sql("SELECT pg_is_in_recovery()") == "f"
        assert standby_sql("SELECT string_agg(id, ',' ORDER BY id) FROM catalogue") == \
            "after,before"
        assert admin(gw, "GET", "/admin/v1/models/before")[0] == 200
        assert "store_reconnected" in gw.read_log()
    finally:
        if gw:
            gw.stop()
        if standby_up:
            subprocess.run([PG_SH, "stop", standby_dir], capture_output=True, timeout=60)
        shutil.rmtree(standby_dir, ignore_errors=True)
        primary.close()
