"""fake_agent — a stand-in for `drover agent` as the gateway sees it (docs/node_api.md):
/drover/v1/health, /drover/v1/ops, /drover/v1/inventory and a chat endpoint, all behind
Bearer H where H = hex(SHA-256(secret)). Lets the gateway's side of joining and operations be
tested on its own; the real agent has its own tests."""
import hashlib
import http.server
import json
import socket
import threading

MODEL = "fake-model"


class FakeAgent:
    """An agent as the gateway sees it: /drover/v1/health and a chat endpoint, both behind
    Bearer H where H = hex(SHA-256(secret))."""

    def __init__(self, name, port=0, ops_taken=("model.install", "model.delete",
                                                  "backend.install", "backend.upgrade")):
        self.name = name
        self.secret = None
        self.chats = 0
        self.auth_seen = []
        self.ops_taken = list(ops_taken)
        self.op_calls = []          # bodies of POST /drover/v1/ops, in order
        self.op_answer = {"class": "ok", "message": "", "listed": True}
        self.installed = {}         # target name -> digest
        self.inventory = None       # when set: the inventory answer as sent, instead of installed
        self.lock = threading.Lock()
        agent = self

        self.conns = set()

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go in two writes

            def setup(self):
                super().setup()
                with agent.lock:
                    agent.conns.add(self.connection)

            def finish(self):
                with agent.lock:
                    agent.conns.discard(self.connection)
                try:
                    super().finish()
                except OSError:
                    pass  # the connection was cut on purpose

            def log_message(self, *a):
                pass

            def _send(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self):
                want = agent.key()
                got = self.headers.get("Authorization", "")
                agent.auth_seen.append(got)
                return want is not None and got == "Bearer " + want

            def do_GET(self):
                if not self._authorized():
                    return self._send(401, {"error": {"message": "no", "code": "unauthorized"}})
                if self.path == "/drover/v1/health":
                    return self._send(200, {
                        "status": "ok", "in_flight": 0, "queued": 0,
                        "engine": {"kind": "openai", "url": "x", "reachable": True},
                        "models": [{"id": MODEL, "status": "loaded", "capabilities": ["chat"],
                                    "in_flight": 0},
                                   {"id": "cold-model", "status": "on_disk",
                                    "capabilities": ["chat"], "in_flight": 0}]})
                if self.path == "/drover/v1/inventory":
                    with agent.lock:
                        items = [{"name": k, "version": "1", "digest": v}
                                 for k, v in sorted(agent.installed.items())]
                        override = agent.inventory
                    if override is not None:
                        return self._send(200, override)
                    return self._send(200, {"models": items, "backends": []})
                return self._send(404, {"error": {"message": "nope"}})

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(n)
                if not self._authorized():
                    return self._send(401, {"error": {"message": "no", "code": "unauthorized"}})
                if self.path == "/drover/v1/ops":
                    body = json.loads(raw)
                    with agent.lock:
                        agent.op_calls.append(body)
                        ans = dict(agent.op_answer)
                    if ans.get("drop"):
                        # an agent that does not answer at all: the connection just closes
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    with agent.lock:
                        if ans["class"] == "ok" and body["op"] in ("install", "upgrade"):
                            agent.installed[body["target"]["name"]] = "sha256:" + "1" * 8
                    return self._send(200, ans)
                agent.chats += 1
                return self._send(200, {
                    "id": "x", "object": "chat.completion", "model": MODEL,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                                 "finish_reason": "stop"}]})

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
        self.port = self.srv.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def key(self):
        return hashlib.sha256(self.secret.encode()).hexdigest() if self.secret else None

    def join_body(self, **extra):
        b = {"name": self.name, "url": self.url, "engine": "openai",
             "labels": {"zone": "a"}, "agent_version": "test",
             "discovery": {"hostname": self.name, "cpus": 2, "gpus": [],
                           "ops": self.ops_taken}}
        if self.secret:
            b["secret"] = self.secret
        b.update(extra)
        return b

    def close(self):
        """Stops listening and cuts every open connection, as a machine that went away."""
        self.srv.shutdown()
        self.srv.server_close()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def ops_for(self, op_id):
        with self.lock:
            return [c for c in self.op_calls if c.get("op_id") == op_id]


