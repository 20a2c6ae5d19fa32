"""Agent in front of a real llama.cpp llama-server (scripts/llama-server.sh, the cached test
chroot with a tiny random-weight model served as "tiny-llama"): the llamacpp adapter reads the
real /v1/models (with a slot's context), /slots and /metrics; inference passes through; load is unsupported. Skips
(with the reason) when the chroot is not built or we are not root, unless DROVER_E2E_LLAMA=1
says llama-server is required. Every wait bounded; both processes stopped by pid."""
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from harness import Proc, free_port, request, sse_events  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
SECRET = "cd" * 32
HDR = {"Authorization": "Bearer " + hashlib.sha256(SECRET.encode()).hexdigest()}


def skip(why):
    # scripts/test.sh builds the chroot first and sets DROVER_E2E_LLAMA=1: then a missing
    # llama-server is a failure, never a silent pass
    if os.environ.get("DROVER_E2E_LLAMA") == "1":
        pytest.fail("llama-server required (DROVER_E2E_LLAMA=1): %s" % why)
    pytest.skip(why)


@pytest.fixture(scope="module")
def llama_port():
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
        assert ready, "llama-server not ready within 60 s"
        yield port
    finally:
        if llama.poll() is None:
            llama.terminate()
            try:
                llama.wait(timeout=10)
            except subprocess.TimeoutExpired:
                llama.kill()
                llama.wait(timeout=5)
        log.close()
        os.unlink(log.name)


@pytest.fixture
def agent(llama_port, tmp_path):
    state = str(tmp_path / "agent.state")
    with open(state, "w") as f:
        json.dump({"name": "l", "secret": SECRET}, f)
    os.chmod(state, 0o600)
    a = Proc(["agent", "--engine", "llamacpp", "--engine-url",
              "http://127.0.0.1:%d" % llama_port, "--listen", "127.0.0.1:0", "--state-file",
              state, "--nvidia-smi", "off", "--name", "llama-node"], "drover-agent ready")
    a.port = int(a.fields["listen"].rsplit(":", 1)[1])
    yield a
    assert a.stop() == 0, "agent exits 0"


def test_health_and_models(agent):
    st, _, body = request(agent.port, "GET", "/drover/v1/health", headers=HDR)
    h = json.loads(body)
    assert (st, h["status"], h["engine"]["kind"]) == (200, "ok", "llamacpp"), "health ok"
    models = {m["id"]: m for m in h["models"]}
    assert "tiny-llama" in models, "the served model is listed: %r" % list(models)
    m = models.get("tiny-llama", {})
    assert m.get("status") == "loaded", "llama-server's model is loaded"
    assert sorted(m.get("capabilities", [])) == ["chat", "completions"], "caps"
    # a slot's context (scripts/llama-server.sh: -c 256 -np 2, each slot 256 tokens), which
    # the gateway routes by (docs/routing.md "Context length")
    assert m.get("context_length") == 256, "the engine's context: %r" % m
    assert (h["in_flight"], h["queued"]) == (0, 0), "idle server: nothing in flight"


def test_inference_passes_through(agent):
    body = {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 4}
    st, _, resp = request(agent.port, "POST", "/v1/chat/completions", body, headers=HDR)
    assert st == 200, "chat through the agent"
    assert json.loads(resp)["object"] == "chat.completion", "llama-server's answer"
    st, _, resp = request(agent.port, "POST", "/v1/chat/completions", dict(body, stream=True),
                          headers=HDR)
    ev = sse_events(resp)
    assert st == 200 and ev and ev[-1] == "[DONE]", "stream through the agent ends [DONE]"


def test_load_unsupported(agent):
    st, _, resp = request(agent.port, "POST", "/drover/v1/models/load", {"model": "tiny-llama"},
                          headers=HDR)
    assert (st, json.loads(resp)["error"]["code"]) == (501, "unsupported"), (
        "llamacpp load is unsupported")
