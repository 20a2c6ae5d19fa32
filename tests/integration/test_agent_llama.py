"""Agent in front of a real llama.cpp llama-server (scripts/llama-server.sh, the cached test
chroot with a tiny random-weight model served as "tiny-llama"): the llamacpp adapter reads the
real /v1/models, /slots and /metrics; inference passes through; load is unsupported. Skips
(exit 0, with the reason printed) when the chroot is not built or we are not root. Every wait
bounded; both processes stopped by pid."""
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Check, Proc, request, sse_events  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
check = Check("agent_llama")


def skip(why):
    # scripts/test.sh builds the chroot first and sets DROVER_E2E_LLAMA=1: then a missing
    # llama-server is a failure, never a silent pass
    if os.environ.get("DROVER_E2E_LLAMA") == "1":
        print("FAIL agent_llama: llama-server required (DROVER_E2E_LLAMA=1): %s" % why,
              flush=True)
        sys.exit(1)
    print("SKIP agent_llama: %s" % why, flush=True)
    sys.exit(0)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def main():
    st = subprocess.run([os.path.join(ROOT, "scripts", "llama-chroot.sh"), "status"],
                        capture_output=True, timeout=30)
    if st.returncode != 0:
        skip("scripts/llama-chroot.sh status failed (chroot not built): %s"
             % st.stderr.decode().strip()[:200])
    if os.geteuid() != 0:
        skip("llama-server runs in a chroot, which needs root")
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="llama-server-", suffix=".log", delete=False)
    llama = subprocess.Popen([os.path.join(ROOT, "scripts", "llama-server.sh"), str(port),
                              "--metrics", "--slots"], stdout=log, stderr=log,
                             stdin=subprocess.DEVNULL)
    tmp = tempfile.mkdtemp(prefix="drover-agent-llama-")
    state = os.path.join(tmp, "agent.state")
    secret = "cd" * 32
    with open(state, "w") as f:
        json.dump({"name": "l", "secret": secret}, f)
    os.chmod(state, 0o600)
    hdr = {"Authorization": "Bearer " + hashlib.sha256(secret.encode()).hexdigest()}
    agent = None
    try:
        deadline = time.monotonic() + 60
        ready = False
        while time.monotonic() < deadline and llama.poll() is None:
            try:
                if request(port, "GET", "/health", timeout=2)[0] == 200:
                    ready = True
                    break
            except OSError:
                pass
            time.sleep(0.2)
        if not ready:
            check.ok(False, "llama-server not ready within 60 s")
            return
        agent = Proc(["agent", "--engine", "llamacpp", "--engine-url",
                      "http://127.0.0.1:%d" % port, "--listen", "127.0.0.1:0", "--state-file",
                      state, "--nvidia-smi", "off", "--name", "llama-node"], "drover-agent ready")
        ap = int(agent.fields["listen"].rsplit(":", 1)[1])
        st, _, body = request(ap, "GET", "/drover/v1/health", headers=hdr)
        h = json.loads(body)
        check.eq((st, h["status"], h["engine"]["kind"]), (200, "ok", "llamacpp"), "health ok")
        models = {m["id"]: m for m in h["models"]}
        check.ok("tiny-llama" in models, "the served model is listed: %r" % list(models))
        m = models.get("tiny-llama", {})
        check.eq(m.get("status"), "loaded", "llama-server's model is loaded")
        check.eq(sorted(m.get("capabilities", [])), ["chat", "completions"], "caps")
        check.eq((h["in_flight"], h["queued"]), (0, 0), "idle server: nothing in flight")

        body = {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 4}
        st, hh, resp = request(ap, "POST", "/v1/chat/completions", body, headers=hdr)
        check.eq(st, 200, "chat through the agent")
        check.eq(json.loads(resp)["object"], "chat.completion", "llama-server's answer")
        st, _, resp = request(ap, "POST", "/v1/chat/completions", dict(body, stream=True),
                              headers=hdr)
        ev = sse_events(resp)
        check.ok(st == 200 and ev and ev[-1] == "[DONE]", "stream through the agent ends [DONE]")
        st, _, resp = request(ap, "POST", "/drover/v1/models/load", {"model": "tiny-llama"},
                              headers=hdr)
        check.eq((st, json.loads(resp)["error"]["code"]), (501, "unsupported"),
                 "llamacpp load is unsupported")
        check.eq(agent.stop(), 0, "agent exits 0")
    except Exception as e:  # report, then fail
        import traceback
        traceback.print_exc()
        check.ok(False, "exception: %r\n%s" % (e, agent.read_log() if agent else ""))
    finally:
        if agent:
            agent.stop()
        if llama.poll() is None:
            llama.terminate()
            try:
                llama.wait(timeout=10)
            except subprocess.TimeoutExpired:
                llama.kill()
                llama.wait(timeout=5)
        log.close()
        os.unlink(log.name)
        for f in os.listdir(tmp):
            os.unlink(os.path.join(tmp, f))
        os.rmdir(tmp)
    check.done()


if __name__ == "__main__":
    main()
