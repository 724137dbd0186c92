"""A scripted stand-in for the Anthropic Messages API on 127.0.0.1, for harness tests.

The first `POST /v1/messages` of a conversation that offers the tool `tool` is answered with
one `tool_use` of it (the Bash tool running `command`, or `tool_input`); once the conversation carries a tool result, the answer is text
("done") ending the turn. Streaming (SSE) and plain JSON answers are both served. Every
request's path and body are recorded (`requests`), so a test can read the tool result the
harness sent back.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeAnthropic:
    def __init__(self, command: str = "", tool: str = "Bash", tool_input: dict | None = None):
        self.command, self.tool = command, tool
        self.tool_input = tool_input if tool_input is not None else {
            "command": command, "description": "run the scripted command"}
        self.requests: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"owner": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def tool_results(self) -> list[str]:
        """The text of every tool_result block the harness sent."""
        out = []
        with self.lock:
            bodies = [b for _p, b in self.requests]
        for body in bodies:
            for msg in body.get("messages", []):
                content = msg.get("content")
                for block in content if isinstance(content, list) else []:
                    if block.get("type") == "tool_result":
                        inner = block.get("content")
                        if isinstance(inner, list):
                            out.append("".join(b.get("text", "") for b in inner if isinstance(b, dict)))
                        else:
                            out.append(str(inner))
        return out

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _answer(owner, body: dict) -> tuple[list[dict], str]:
    """The content blocks and stop reason for a request."""
    has_result = any(isinstance(m.get("content"), list) and any(b.get("type") == "tool_result" for b in m["content"])
                     for m in body.get("messages", []))
    offers_tool = any(t.get("name") == owner.tool for t in body.get("tools", []) or [])
    if has_result or not offers_tool:
        return [{"type": "text", "text": "done"}], "end_turn"
    return [{"type": "tool_use", "id": "toolu_corral_1", "name": owner.tool, "input": owner.tool_input}], "tool_use"


class _Handler(BaseHTTPRequestHandler):
    owner: FakeAnthropic
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        self._json(200, {"data": [], "has_more": False})

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b"{}"
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        with self.owner.lock:
            self.owner.requests.append((self.path, body))
        path = self.path.split("?")[0]
        if path.endswith("/count_tokens"):
            return self._json(200, {"input_tokens": 10})
        if not path.endswith("/v1/messages"):
            return self._json(200, {})
        blocks, stop = _answer(self.owner, body)
        model = body.get("model", "claude-test")
        message = {"id": "msg_corral", "type": "message", "role": "assistant", "model": model, "content": blocks,
                   "stop_reason": stop, "stop_sequence": None,
                   "usage": {"input_tokens": 10, "output_tokens": 5}}
        if not body.get("stream"):
            return self._json(200, message)
        events = [("message_start", {"type": "message_start",
                                     "message": {**message, "content": [], "stop_reason": None,
                                                 "usage": {"input_tokens": 10, "output_tokens": 1}}})]
        for i, block in enumerate(blocks):
            if block["type"] == "text":
                events += [("content_block_start", {"type": "content_block_start", "index": i,
                                                    "content_block": {"type": "text", "text": ""}}),
                           ("content_block_delta", {"type": "content_block_delta", "index": i,
                                                    "delta": {"type": "text_delta", "text": block["text"]}})]
            else:
                events += [("content_block_start", {"type": "content_block_start", "index": i,
                                                    "content_block": {**block, "input": {}}}),
                           ("content_block_delta", {"type": "content_block_delta", "index": i,
                                                    "delta": {"type": "input_json_delta",
                                                              "partial_json": json.dumps(block["input"])}})]
            events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
        events += [("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                      "usage": {"output_tokens": 5}}),
                   ("message_stop", {"type": "message_stop"})]
        data = b"".join(f"event: {name}\ndata: {json.dumps(ev)}\n\n".encode() for name, ev in events)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _json(self, status: int, obj) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
