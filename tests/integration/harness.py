"""harness — shared helpers for integration tests: start real drover processes on loopback,
wait for their readiness line (never sleep), talk raw HTTP, and always clean up.

Every process started here is ended by its own pid: by the fixture that started it, by
conftest.py's per-test reaper (any process a test started and left running), and at exit
(atexit), so no process outlives its test. Loops are bounded in count and time.
"""
import atexit
import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time

DROVER = os.environ.get("DROVER_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "asan", "drover")

_procs = []
_logs = []  # the log path of each process in _procs, same order


def _cleanup():
    stop_since(0)


def procs_started():
    """A mark for stop_since: how many processes this harness has started so far."""
    return len(_procs)


def logs_since(mark):
    """The log paths of the processes started after mark."""
    return list(_logs[mark:])


def stop_since(mark):
    """Kills, by pid, every process started after mark that is still running."""
    for p in _procs[mark:]:
        if p.poll() is None:
            try:
                p.kill()
            except OSError:
                pass
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


_dbs = []


def _remove_dbs():
    for path in _dbs:
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(path + suffix)
            except OSError:
                pass


atexit.register(_remove_dbs)
atexit.register(_cleanup)


class Proc:
    """A drover subprocess. stdout is read line by line for readiness; stderr (logs) goes to
    a file so a failing test can show it."""

    def __init__(self, args, ready_prefix, timeout=20.0, env=None):
        self.log_path = "/tmp/drover-test-%d-%d.log" % (os.getpid(), len(_procs))
        self.log = open(self.log_path, "wb")
        e = dict(os.environ)
        e.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        if args and args[0] == "serve":
            # each gateway gets its own store unless the test names one
            e["DROVER_STORE_PATH"] = "/tmp/drover-test-%d-%d.db" % (os.getpid(), len(_procs))
            _dbs.append(e["DROVER_STORE_PATH"])
        if env:
            e.update(env)
        self.p = subprocess.Popen([DROVER] + list(args), stdout=subprocess.PIPE,
                                  stderr=self.log, stdin=subprocess.DEVNULL, env=e)
        _procs.append(self.p)
        _logs.append(self.log_path)
        self.ready_line = self._wait_line(ready_prefix, timeout)
        self.fields = parse_kv(self.ready_line)

    def _wait_line(self, prefix, timeout):
        deadline = time.monotonic() + timeout
        buf = b""
        fd = self.p.stdout.fileno()
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.2)
            if r:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    text = line.decode(errors="replace")
                    if text.startswith(prefix):
                        return text
            elif self.p.poll() is not None:
                break
        self.stop()
        raise RuntimeError("process %s not ready (%r); log:\n%s" % (
            self.p.args, prefix, self.read_log()))

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-4000:]
        except OSError:
            return ""

    def alive(self):
        return self.p.poll() is None

    def signal(self, sig):
        if self.p.poll() is None:
            self.p.send_signal(sig)

    def stop(self, timeout=10.0):
        """SIGTERM, then SIGKILL after timeout; returns the exit code."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout=5)
        self.log.close()
        return self.p.returncode

    def kill9(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def parse_kv(line):
    out = {}
    for part in line.split():
        if "=" in part:
            k, v = part.split("=", 1)
            out[k] = v
    return out


def start_sim(*args, nodes=1, timeout=20.0):
    """Starts `drover sim --port 0 --nodes N ...`; returns the Proc with .ports."""
    pr = Proc(["sim", "--port", "0", "--nodes", str(nodes)] + list(args), "drover-sim ready",
              timeout=timeout)
    base = int(pr.fields["port"])
    pr.ports = [base + i for i in range(int(pr.fields.get("nodes", nodes)))]
    pr.port = base
    return pr


def request(port, method, path, body=None, headers=None, timeout=10.0):
    """One request on a fresh connection; returns (status, headers dict lower-case, body)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = {"Content-Type": "application/json"} if body is not None else {}
    if headers:
        h.update(headers)
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    c.close()
    return r.status, hdrs, data


def raw_exchange(port, data, timeout=5.0, read_until_close=True):
    """Sends raw bytes, returns every byte received until close or timeout."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        if data:
            s.sendall(data)
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
            if not read_until_close and b"\r\n\r\n" in out:
                break
        return out
    finally:
        s.close()


def sse_events(body):
    """Splits an SSE body into the list of data payloads (strings)."""
    out = []
    for block in body.decode().replace("\r\n", "\n").split("\n\n"):
        lines = [l[5:].lstrip() if l.startswith("data:") else None for l in block.split("\n")]
        data = [l for l in lines if l is not None]
        if data:
            out.append("\n".join(data))
    return out


def free_port():
    """A loopback port that was free a moment ago (for processes that cannot take port 0)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def metric(port, name):
    """The sum of every sample of a Prometheus metric (any labels) at port's /metrics."""
    _, _, body = request(port, "GET", "/metrics")
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def log_text(proc):
    """The whole stderr log of a Proc so far."""
    with open(proc.log_path, "rb") as f:
        return f.read().decode(errors="replace")


def wait_for(what, fn, timeout=15.0):
    """Polls fn (every 50 ms, at most timeout seconds) until it returns something true and
    returns that; on timeout the test fails (AssertionError) naming what. Connection errors
    and missing keys while the system settles count as not yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            v = fn()
        except (OSError, ValueError, KeyError):
            v = None
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def wait_until(check, what, fn, timeout=15.0):
    """Polls fn (every 50 ms, at most timeout seconds) until it returns something true and
    returns that; on timeout records a failed check naming what (or, with check None,
    fails like wait_for). Connection errors and missing keys while the system settles count
    as not yet."""
    if check is None:
        return wait_for(what, fn, timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            v = fn()
        except (OSError, ValueError, KeyError):
            v = None
        if v:
            return v
        time.sleep(0.05)
    check.ok(False, "timed out waiting for " + what)
    return None


class Check:
    """Tiny assertion collector: each failed check is reported, and the process exits 1."""

    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = 0

    def ok(self, cond, what):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            print("FAIL %s: %s" % (self.name, what), flush=True)
        return cond

    def eq(self, got, want, what):
        return self.ok(got == want, "%s: got %r, want %r" % (what, got, want))

    def done(self):
        print("%d passed, %d failed" % (self.passed, self.failed), flush=True)
        sys.exit(1 if self.failed or not self.passed else 0)
