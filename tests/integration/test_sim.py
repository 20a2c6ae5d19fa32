"""test_sim — `drover sim` end to end: both wire formats, streaming shapes, embeddings, errors
in each format's shape, every fault knob, slots and queue, the prefix cache, load latency,
pull/delete, several nodes in one process, the port file, YAML config and the CLI contract.
Every wait is bounded; the whole file runs in well under a minute.

Each test takes the sims it needs from fixtures that stop them by pid (and check they exit
0 on SIGTERM). The one-node sim A is shared by the module: its tests only read from it or
inject per-request faults. Sims whose state a test changes (queue, load, cache, pull) are
the test's own."""
import base64
import json
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from harness import DROVER, raw_exchange, request, sse_events, start_sim  # noqa: E402


def post(port, path, body, headers=None, timeout=10.0):
    return request(port, "POST", path, body, headers=headers, timeout=timeout)


def jbody(data):
    try:
        return json.loads(data)
    except ValueError:
        return None


def chat_body(model, text, **kw):
    b = {"model": model, "messages": [{"role": "user", "content": text}]}
    b.update(kw)
    return b


def dechunk(data):
    """Decodes a chunked body, tolerating a cut: returns (bytes, complete)."""
    out = b""
    while True:
        i = data.find(b"\r\n")
        if i < 0:
            return out, False
        try:
            n = int(data[:i].split(b";")[0], 16)
        except ValueError:
            return out, False
        if n == 0:
            return out, True
        chunk = data[i + 2:i + 2 + n]
        out += chunk
        if len(chunk) < n:
            return out, False
        data = data[i + 2 + n + 2:]


def raw_request(method, path, body=b"", headers=None):
    h = "%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n" % (method, path, len(body))
    for k, v in (headers or {}).items():
        h += "%s: %s\r\n" % (k, v)
    return h.encode() + b"\r\n" + body


def split_head(data):
    head, _, body = data.partition(b"\r\n\r\n")
    return head.decode(errors="replace"), body


def ndjson(data):
    return [json.loads(l) for l in data.decode().split("\n") if l.strip()]


def metric(port, name):
    st, _, data = request(port, "GET", "/metrics")
    for line in data.decode().split("\n"):
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def wait_for(fn, timeout=5.0, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(step)
    return None


def test_cli(tmp_path):
    TMP = str(tmp_path)

    r = subprocess.run([DROVER, "sim", "--help"], capture_output=True, timeout=20)
    assert r.returncode == 0, "--help exits 0"
    out = r.stdout.decode()
    for flag in ("--nodes", "--port-file", "--fault-rate", "--ttft-per-token-ms", "--slots",
                 "--max-body-bytes", "--config"):
        assert flag in out, "--help lists %s" % flag
    r = subprocess.run([DROVER, "sim", "--no-such-flag"], capture_output=True, timeout=20)
    assert r.returncode == 2, "bad flag exits 2"
    assert len(r.stderr.decode().strip().split("\n")) == 1, "bad flag: one line on stderr"
    r = subprocess.run([DROVER, "sim", "--slots", "x"], capture_output=True, timeout=20)
    assert r.returncode == 2, "bad value exits 2"
    bad_yaml = os.path.join(TMP, "bad.yaml")
    with open(bad_yaml, "w") as f:
        f.write("nodes: 1\nslots: lots\n")
    r = subprocess.run([DROVER, "sim", "--config", bad_yaml], capture_output=True, timeout=20)
    assert r.returncode != 0, "bad YAML stops start-up"
    assert ("%s:2:" % bad_yaml) in r.stderr.decode(), "bad YAML names file:line: %r" % r.stderr


@pytest.fixture(scope="module")
def sim_a(tmp_path_factory):
    """One node, fast, with a chat and an embedding model, and a port file."""
    port_file = str(tmp_path_factory.mktemp("sim-a") / "ports")
    A = start_sim("--model", "chat1", "--model", "emb1:embedding", "--port-file", port_file)
    A.port_file = port_file
    yield A
    assert A.stop() == 0, "A exits 0 on SIGTERM"


@pytest.fixture
def pa(sim_a):
    return sim_a.port


def test_port_file_health_and_models(sim_a, pa):
    with open(sim_a.port_file) as f:
        assert f.read().split() == [str(pa)], "port file lists the node port"

    st, _, data = request(pa, "GET", "/health")
    assert (st, jbody(data)) == (200, {"status": "ok"}), "health"
    st, _, data = request(pa, "GET", "/v1/models")
    ids = [m["id"] for m in (jbody(data) or {}).get("data", [])]
    assert st == 200 and jbody(data)["object"] == "list" and ids == ["chat1", "emb1"], (
        "OpenAI models list: %r" % data)
    st, _, data = request(pa, "GET", "/api/tags")
    names = [m["name"] for m in (jbody(data) or {}).get("models", [])]
    assert st == 200 and names == ["chat1", "emb1"], "Ollama tags: %r" % data


def test_openai_chat(pa):
    story = chat_body("chat1", "tell me a story", max_tokens=5)
    st, _, data = post(pa, "/v1/chat/completions", story)
    full = jbody(data) or {}
    text = full.get("choices", [{}])[0].get("message", {}).get("content", "")
    assert st == 200, "chat non-stream status"
    assert full.get("object") == "chat.completion", "chat object"
    assert len(text.split()) == 5, "max_tokens=5 gives 5 words: %r" % text
    assert full.get("usage", {}).get("completion_tokens") == 5, "usage completion_tokens"
    assert full.get("usage", {}).get("prompt_tokens", 0) >= 1, "usage prompt_tokens"
    assert full["choices"][0].get("finish_reason") == "length", "finish_reason length"
    st2, _, data2 = post(pa, "/v1/chat/completions", story)
    assert jbody(data2)["choices"][0]["message"]["content"] == text, "deterministic text"

    st, hdrs, data = post(pa, "/v1/chat/completions",
                          chat_body("chat1", "tell me a story", max_tokens=5, stream=True,
                                    stream_options={"include_usage": True}))
    ev = sse_events(data)
    assert st == 200, "chat stream status"
    assert hdrs.get("content-type", "").startswith("text/event-stream"), "SSE content type"
    assert (ev[-1] if ev else None) == "[DONE]", "stream ends with [DONE]"
    chunks = [json.loads(e) for e in ev[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks), "chunk object"
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert streamed == text, "stream content concatenates to the non-stream text"
    usage_chunks = [c for c in chunks if c.get("usage")]
    assert (len(usage_chunks) == 1 and usage_chunks[0]["choices"] == [] and
             usage_chunks[0]["usage"]["completion_tokens"] == 5), "include_usage chunk"
    fin = [c for c in chunks if c["choices"] and c["choices"][0].get("finish_reason")]
    assert len(fin) == 1 and fin[0] is chunks[-2], "finish_reason in the last choice chunk"
    st, _, data = post(pa, "/v1/chat/completions",
                       chat_body("chat1", "tell me a story", max_tokens=3, stream=True))
    ev = sse_events(data)
    assert ev[-1] == "[DONE]" and not any('"usage"' in e for e in ev), "no usage chunk unasked"


def test_openai_completions(pa):
    st, _, data = post(pa, "/v1/completions",
                       {"model": "chat1", "prompt": "once upon", "max_tokens": 4})
    ctext = (jbody(data) or {}).get("choices", [{}])[0].get("text")
    assert st == 200 and ctext and len(ctext.split()) == 4, "completions non-stream: %r" % data
    st, _, data = post(pa, "/v1/completions",
                       {"model": "chat1", "prompt": "once upon", "max_tokens": 4, "stream": True})
    ev = sse_events(data)
    assert (ev[-1] if ev else None) == "[DONE]", "completions stream [DONE]"
    assert "".join(json.loads(e)["choices"][0]["text"] for e in ev[:-1]) == ctext, (
        "completions stream text")


def test_ollama_chat_and_generate(pa):
    ob = chat_body("chat1", "hi ollama", options={"num_predict": 4})
    st, hdrs, data = post(pa, "/api/chat", ob)
    lines = ndjson(data) if st == 200 else []
    assert st == 200 and "ndjson" in hdrs.get("content-type", ""), "Ollama chat streams NDJSON"
    assert (lines and lines[-1].get("done") is True and lines[-1].get("done_reason") == "length" and
             lines[-1].get("eval_count") == 4 and "total_duration" in lines[-1] and
             "prompt_eval_count" in lines[-1]), "Ollama chat last line: %r" % (lines[-1:],)
    assert all(l.get("done") is False for l in lines[:-1]) and len(lines) == 5, "4 token lines"
    ostream = "".join(l["message"]["content"] for l in lines)
    ob["stream"] = False
    st, _, data = post(pa, "/api/chat", ob)
    one = jbody(data) or {}
    assert st == 200 and one.get("done") is True and one["message"]["content"] == ostream, (
        "Ollama chat stream:false is one object with the same text")
    st, _, data = post(pa, "/api/generate", {"model": "chat1", "prompt": "why", "stream": False})
    g = jbody(data) or {}
    assert st == 200 and g.get("done") and len(g.get("response", "").split()) == 16, (
        "generate non-stream, default 16 tokens: %r" % data)
    st, _, data = post(pa, "/api/generate", {"model": "chat1", "prompt": "why"})
    lines = ndjson(data)
    assert (lines[-1].get("done") is True and
            "".join(l["response"] for l in lines) == g["response"]), (
        "generate stream matches")


def test_embeddings(pa):
    st, _, data = post(pa, "/v1/embeddings", {"model": "emb1", "input": ["alpha", "beta"]})
    e = jbody(data) or {}
    vecs = [d["embedding"] for d in e.get("data", [])]
    assert (st == 200 and e.get("object") == "list" and len(vecs) == 2 and len(vecs[0]) == 16 and
             vecs[0] != vecs[1]), "OpenAI embeddings, 2 inputs x 16 dims"
    st, _, data = post(pa, "/api/embed", {"model": "emb1", "input": "alpha"})
    oe = (jbody(data) or {}).get("embeddings", [])
    assert st == 200 and len(oe) == 1 and oe[0] == vecs[0], "Ollama embed, same vector"
    st, _, data = post(pa, "/v1/embeddings", {"model": "emb1", "input": "alpha"})
    assert jbody(data)["data"][0]["embedding"] == vecs[0], "input string == array element"
    # encoding_format "base64" (the openai client's default): float32 little-endian
    st, _, data = post(pa, "/v1/embeddings", {"model": "emb1", "input": "alpha",
                                              "encoding_format": "base64"})
    b64 = (jbody(data) or {}).get("data", [{}])[0].get("embedding")
    assert st == 200 and isinstance(b64, str), "base64 embedding is a string: %r" % data[:80]
    if isinstance(b64, str):
        raw = base64.b64decode(b64)
        floats = struct.unpack("<%df" % (len(raw) // 4), raw)
        assert len(floats) == 16 and all(abs(a - b) < 1e-6 for a, b in zip(floats, vecs[0])), (
            "base64 decodes to the float vector")
    st, _, data = post(pa, "/v1/embeddings", {"model": "emb1", "input": "alpha",
                                              "encoding_format": "hex"})
    assert st == 400, "unknown encoding_format is a 400"


def test_errors_in_each_shape(pa):
    st, _, data = post(pa, "/v1/chat/completions", chat_body("emb1", "x"))
    assert st == 400 and "does not support chat" in jbody(data)["error"]["message"], (
        "OpenAI: embedding model cannot chat: %r" % data)
    st, _, data = post(pa, "/api/chat", chat_body("emb1", "x"))
    assert st == 400 and "does not support chat" in jbody(data)["error"], "Ollama: same: %r" % data
    st, _, data = post(pa, "/v1/chat/completions", chat_body("nope", "x"))
    err = (jbody(data) or {}).get("error", {})
    assert (st == 404 and err.get("code") == "model_not_found" and
             set(err) == {"message", "type", "param", "code"}), "OpenAI 404 shape: %r" % data
    st, _, data = post(pa, "/api/generate", {"model": "nope", "prompt": "x"})
    assert st == 404 and jbody(data) == {"error": 'model "nope" not found, try pulling it first'}, (
        "Ollama 404 shape: %r" % data)
    st, _, data = post(pa, "/v1/chat/completions", b'{"model": "chat1", "messages": [')
    assert st == 400 and "error" in jbody(data) and "message" in jbody(data)["error"], (
        "OpenAI malformed JSON 400")
    st, _, data = post(pa, "/api/chat", b'{"model":')
    assert st == 400 and isinstance(jbody(data).get("error"), str), "Ollama malformed JSON 400"


def test_faults(pa):
    faults_before = metric(pa, "drover_sim_faults_total") or 0
    cb = json.dumps(chat_body("chat1", "fault me", max_tokens=6, stream=True)).encode()
    st, hdrs, data = post(pa, "/v1/chat/completions", cb,
                          headers={"X-Sim-Fault": "status=503;retry_after=2"})
    assert st == 503 and hdrs.get("retry-after") == "2" and "error" in jbody(data), (
        "status fault with Retry-After")
    st, hdrs, data = post(pa, "/api/chat", cb, headers={"X-Sim-Fault": "status=429"})
    assert st == 429 and isinstance(jbody(data).get("error"), str) and "retry-after" not in hdrs, (
        "status fault in Ollama shape, no Retry-After unasked")
    st, _, data = post(pa, "/v1/chat/completions", cb, headers={"X-Sim-Fault": "bogus"})
    assert st == 400, "bad fault header is a 400"

    got = raw_exchange(pa, raw_request("POST", "/v1/chat/completions", cb,
                                       {"X-Sim-Fault": "reset"}), timeout=3.0)
    assert not got.startswith(b"HTTP/"), "reset: no status line (%r)" % got[:40]
    rst = False
    s = socket.create_connection(("127.0.0.1", pa), timeout=3)
    s.sendall(raw_request("POST", "/v1/chat/completions", cb, {"X-Sim-Fault": "reset"}))
    try:
        rst = s.recv(100) == b"" and False
    except ConnectionResetError:
        rst = True
    except socket.timeout:
        pass
    s.close()
    assert rst, "reset: the connection is reset (ECONNRESET)"

    got = raw_exchange(pa, raw_request("POST", "/v1/chat/completions", cb,
                                       {"X-Sim-Fault": "cut_after=2"}), timeout=3.0)
    head, body = split_head(got)
    payload, complete = dechunk(body)
    ev = sse_events(payload)
    assert (head.startswith("HTTP/1.1 200") and len(ev) == 2 and "[DONE]" not in ev and
             not complete), "cut_after=2: 2 events, no [DONE], cut body (%d events)" % len(ev)

    s = socket.create_connection(("127.0.0.1", pa), timeout=3)
    hung = metric(pa, "drover_sim_faults_total") or 0
    s.sendall(raw_request("POST", "/v1/chat/completions", cb, {"X-Sim-Fault": "hang"}))
    # the sim counts the fault when it has decided what to do with the request; a request on
    # another connection answered after that shows its loop has moved on without answering
    assert wait_for(lambda: (metric(pa, "drover_sim_faults_total") or 0) > hung), (
        "hang: the fault was taken")
    assert request(pa, "GET", "/health")[0] == 200, "the sim answers others meanwhile"
    r_, _, _ = select.select([s], [], [], 0)
    assert not r_, "hang: no bytes for the hung request"
    s.close()

    t0 = time.monotonic()
    s = socket.create_connection(("127.0.0.1", pa), timeout=3)
    s.sendall(raw_request("GET", "/health", b"", {"X-Sim-Fault": "slow_headers=300"}))
    first = s.recv(1)
    dt = time.monotonic() - t0
    s.close()
    assert first == b"H" and dt >= 0.25, "slow_headers=300: first byte after %.3f s" % dt

    nb = json.dumps(chat_body("chat1", "complete me", max_tokens=6)).encode()
    s = socket.create_connection(("127.0.0.1", pa), timeout=3)
    s.sendall(raw_request("POST", "/v1/chat/completions", nb,
                          {"X-Sim-Fault": "reset_after_complete"}))
    got, reset_seen = b"", False
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            c = s.recv(65536)
        except ConnectionResetError:
            reset_seen = True
            break
        except socket.timeout:
            break
        if not c:
            break
        got += c
    s.close()
    head, body = split_head(got)
    clen = [l.split(":", 1)[1].strip() for l in head.split("\r\n")
            if l.lower().startswith("content-length")]
    assert (head.startswith("HTTP/1.1 200") and clen and len(body) == int(clen[0]) and
            jbody(body) and jbody(body)["choices"][0]["message"]["content"]), (
        "reset_after_complete: the full body arrived")
    assert reset_seen, "reset_after_complete: then the connection was reset"
    got = raw_exchange(pa, raw_request("POST", "/v1/chat/completions", cb,
                                       {"X-Sim-Fault": "reset_after_complete"}), timeout=3.0)
    head, body = split_head(got)
    payload, complete = dechunk(body)
    assert complete and sse_events(payload)[-1] == "[DONE]", "reset_after_complete on a stream"

    st, _, data = request(pa, "GET", "/health")
    assert st == 200, "node still healthy after the faults"
    assert (metric(pa, "drover_sim_faults_total") or 0) - faults_before >= 8, (
        "faults counted in /metrics")


def test_yaml_config_fault_rate(tmp_path):
    TMP = str(tmp_path)
    yb = os.path.join(TMP, "b.yaml")
    with open(yb, "w") as f:
        f.write("fault_rate: 1.0\nfaults:\n  - status=500\nmodels:\n  - name: yamlm\n"
                "    kind: chat\n  - name: yamle\n    kind: embedding\n    dims: 8\n")
    B = start_sim("--config", yb)
    st, _, data = request(B.port, "GET", "/v1/models")
    assert [m["id"] for m in jbody(data)["data"]] == ["yamlm", "yamle"], "models from YAML"
    codes = [post(B.port, "/v1/chat/completions", chat_body("yamlm", "x%d" % i))[0]
             for i in range(5)]
    codes.append(post(B.port, "/api/embed", {"model": "yamle", "input": "x"})[0])
    assert codes == [500] * 6, "fault rate 1.0 hits every model request"
    assert request(B.port, "GET", "/health")[0] == 200, "fault rate spares /health"
    assert B.stop() == 0, "B exits 0 on SIGTERM"


def test_slots_and_queue():
    C = start_sim("--model", "m", "--slots", "1", "--queue", "1", "--tokens-per-second", "25")
    pc = C.port
    results = {}


    def timed_post(key, body):
        t = time.monotonic()
        st_, h_, d_ = post(pc, "/v1/chat/completions", body, timeout=10)
        results[key] = (st_, h_, t, time.monotonic())


    slow = chat_body("m", "queue me", max_tokens=10)  # ~0.36 s at 25 tok/s
    t1 = threading.Thread(target=timed_post, args=("a", slow))
    t1.start()
    assert wait_for(lambda: metric(pc, "llamacpp:requests_processing") == 1), "first takes the slot"
    t2 = threading.Thread(target=timed_post, args=("b", slow))
    t2.start()
    deferred = wait_for(lambda: metric(pc, "llamacpp:requests_deferred"))
    assert deferred and deferred > 0, "requests_deferred > 0 while the second waits"
    st, hdrs, data = post(pc, "/v1/chat/completions", slow)
    assert st == 503 and "retry-after" in hdrs and "error" in jbody(data), (
        "queue full: 503 with Retry-After")
    t1.join(10)
    t2.join(10)
    a, b = results.get("a"), results.get("b")
    assert a and b and a[0] == 200 and b[0] == 200, "both queued requests succeed"
    if a and b:
        assert b[3] - a[3] >= 0.25, "serialized: second ends %.3f s after the first" % (b[3] - a[3])
    assert metric(pc, "llamacpp:requests_deferred") == 0, "queue drained"
    assert C.stop() == 0, "C exits 0"


def ttft(port, body):
    """Seconds to the first SSE data event."""
    s_ = socket.create_connection(("127.0.0.1", port), timeout=10)
    raw = json.dumps(body).encode()
    t = time.monotonic()
    s_.sendall(raw_request("POST", "/v1/chat/completions", raw))
    buf = b""
    while b"data:" not in buf and time.monotonic() - t < 10:
        c = s_.recv(65536)
        if not c:
            break
        buf += c
    dt_ = time.monotonic() - t
    s_.close()
    return dt_


def timed(fn):
    t = time.monotonic()
    v = fn()
    return time.monotonic() - t, v

@pytest.fixture
def sim_d():
    """Three nodes with load latency and a prefix cache: each test changes their state."""
    D = start_sim("--model", "m", "--ttft-per-token-ms", "1", "--load-ms", "300", nodes=3)
    assert len(D.ports) == 3, "3 nodes"
    yield D
    assert D.stop() == 0, "D exits 0"


def test_load_latency_and_keep_alive(sim_d):
    p0, p1, p2 = sim_d.ports
    st, _, data = request(p2, "GET", "/api/ps")
    assert jbody(data) == {"models": []}, "nothing loaded before first use"
    d1, r1 = timed(lambda: post(p2, "/v1/chat/completions", chat_body("m", "hi", max_tokens=2)))
    d2, r2 = timed(lambda: post(p2, "/v1/chat/completions", chat_body("m", "hi", max_tokens=2)))
    assert r1[0] == 200 and r2[0] == 200 and d1 >= 0.25 and d1 > d2 + 0.15, (
        "load latency on first use: %.3f s then %.3f s" % (d1, d2))
    st, _, data = request(p2, "GET", "/api/ps")
    assert [m["name"] for m in jbody(data)["models"]] == ["m"], "/api/ps lists the loaded model"
    st, _, data = post(p2, "/api/generate", {"model": "m", "keep_alive": 0})
    assert st == 200 and jbody(data).get("done_reason") == "unload", "keep_alive 0 unloads"
    st, _, data = request(p2, "GET", "/api/ps")
    assert jbody(data) == {"models": []}, "/api/ps empty after keep_alive 0"


def test_prefix_cache(sim_d):
    p0, p1, p2 = sim_d.ports
    post(p0, "/v1/chat/completions", chat_body("m", "warm up", max_tokens=1))  # loads the model
    long_prompt = " ".join("word%03d" % i for i in range(100))  # ~800 bytes, ~200 tokens
    body = chat_body("m", long_prompt, max_tokens=2, stream=True)
    first = ttft(p0, body)
    second = ttft(p0, body)
    assert first > second + 0.1, "prefix cache: TTFT %.3f s then %.3f s" % (first, second)
    body["stream"] = False
    st, _, data = post(p0, "/v1/chat/completions", body)
    assert jbody(data)["usage"]["prompt_tokens_details"]["cached_tokens"] > 100, (
        "usage reports cached tokens")
    other = ttft(p1, dict(body, stream=True))
    assert other > second + 0.1, "another node has its own cache (%.3f s)" % other


def test_pull_and_delete(sim_d):
    D = sim_d
    p0, p1, p2 = sim_d.ports
    t0 = time.monotonic()
    st, hdrs, data = post(p1, "/api/pull", {"model": "pulled:7b"})
    dt = time.monotonic() - t0
    lines = ndjson(data) if st == 200 else []
    assert (lines and lines[0]["status"] == "pulling manifest" and
            lines[-1] == {"status": "success"}), (
        "pull streams status lines ending in success")
    assert dt >= 0.25, "pull honours load latency (%.3f s)" % dt
    tags = [[m["name"] for m in jbody(request(p, "GET", "/api/tags")[2])["models"]]
            for p in D.ports]
    assert "pulled:7b" in tags[1] and "pulled:7b" not in tags[0] and "pulled:7b" not in tags[2], (
        "pull adds the model on one node only: %r" % tags)
    st, _, data = post(p1, "/api/chat", chat_body("pulled:7b", "hey", stream=False))
    assert st == 200, "pulled model serves"
    st, _, data = post(p0, "/api/chat", chat_body("pulled:7b", "hey", stream=False))
    assert st == 404, "other nodes still do not have it"
    st, _, data = request(p1, "DELETE", "/api/delete", {"model": "pulled:7b"})
    assert st == 200, "delete"
    st, _, data = request(p1, "DELETE", "/api/delete", {"model": "pulled:7b"})
    assert st == 404 and "error" in jbody(data), "delete again: 404"
    tags = [m["name"] for m in jbody(request(p1, "GET", "/api/tags")[2])["models"]]
    assert "pulled:7b" not in tags, "deleted model gone from tags"
    st, _, data = post(p1, "/api/pull", {"model": "quick", "stream": False})
    assert (st, jbody(data)) == (200, {"status": "success"}), "pull stream:false"


def test_context_shown_and_enforced_like_the_engines():
    """--ctx: shown where llama-server, vLLM and Ollama show it, enforced as llama-server does
    (its own 400 and fields for a prompt of at least n_ctx tokens; generation stops at the end
    of the context), and Ollama's API keeps the end of an over-long prompt."""
    s = start_sim("--model", "m", "--preload", "--ctx", "100")
    try:
        p = s.port
        _, _, body = request(p, "GET", "/v1/models")
        m = json.loads(body)["data"][0]
        assert m["max_model_len"] == 100 and m["meta"]["n_ctx"] == 100, m
        _, _, body = request(p, "GET", "/props")
        assert json.loads(body)["default_generation_settings"]["n_ctx"] == 100
        _, _, body = request(p, "GET", "/api/ps")
        assert json.loads(body)["models"][0]["context_length"] == 100
        st, _, body = post(p, "/api/show", {"model": "m"})
        show = json.loads(body)
        assert st == 200 and "num_ctx" in show["parameters"], show
        assert show["model_info"]["sim.context_length"] == 100, show
        assert post(p, "/api/show", {"model": "nope"})[0] == 404
        # 396 bytes: 99 tokens fit (with 1 token left to generate); 400 bytes do not
        st, _, body = post(p, "/v1/chat/completions",
                           {"model": "m", "max_tokens": 50,
                            "messages": [{"role": "user", "content": "x" * 396}]})
        r = json.loads(body)
        assert st == 200 and r["usage"]["completion_tokens"] == 1, r
        assert r["choices"][0]["finish_reason"] == "length", r
        st, _, body = post(p, "/v1/chat/completions",
                           {"model": "m", "messages": [{"role": "user", "content": "x" * 400}]})
        err = json.loads(body)["error"]
        assert st == 400 and err["type"] == "exceed_context_size_error", body
        assert (err["n_prompt_tokens"], err["n_ctx"]) == (100, 100), err
        assert "exceeds the available context size" in err["message"], err
        st, _, body = post(p, "/v1/completions", {"model": "m", "prompt": "y" * 1000})
        assert st == 400 and json.loads(body)["error"]["n_prompt_tokens"] == 250, body
        st, _, body = post(p, "/api/generate", {"model": "m", "prompt": "z" * 1000,
                                                "stream": False})
        assert st == 200 and json.loads(body)["prompt_eval_count"] == 100, body
    finally:
        s.stop()
    hidden = start_sim("--model", "m", "--ctx", "100", "--hide-ctx", "all")
    try:
        _, _, body = request(hidden.port, "GET", "/v1/models")
        assert "max_model_len" not in json.loads(body)["data"][0]
        assert request(hidden.port, "GET", "/props")[0] == 404
        st, _, _ = post(hidden.port, "/v1/chat/completions",
                        {"model": "m", "messages": [{"role": "user", "content": "x" * 400}]})
        assert st == 400, "hidden, still enforced"
    finally:
        hidden.stop()
