"""A minimal stand-in for the Hugging Face Hub API on 127.0.0.1, for push tests.

Implements what ``huggingface_hub`` calls to create a repo, a branch and a commit of regular
(non-LFS) files: ``/api/repos/create``, ``/api/validate-yaml``, ``…/branch/<b>``,
``…/preupload/<rev>`` and ``…/commit/<rev>`` (NDJSON, base64 file contents). Files that arrive
are kept in ``HubState.files[(repo_id, revision)][path]``. ``fail_commit`` makes commits fail.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class HubState:
    repos: dict[str, dict] = field(default_factory=dict)
    files: dict[tuple[str, str], dict[str, bytes]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    fail_commit: int | None = None
    tokens: list[str] = field(default_factory=list)


def make_handler(state: HubState):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def _send(self, code: int, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            state.requests.append(("POST", self.path))
            state.tokens.append(self.headers.get("Authorization", ""))
            path = self.path.split("?")[0]
            if path == "/api/repos/create":
                data = json.loads(raw)
                repo_id = f"{data['organization']}/{data['name']}" if data.get("organization") else data["name"]
                state.repos[repo_id] = data
                return self._send(200, {"url": f"http://{self.headers['Host']}/{repo_id}", "name": repo_id, "id": repo_id})
            if path == "/api/validate-yaml":
                return self._send(200, {"errors": [], "warnings": []})
            m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/(preupload|commit|branch)/(.+)", path)
            if not m:
                return self._send(404, {"error": f"not implemented: {path}"})
            repo_id, action, rev = m.group(1), m.group(2), m.group(3).replace("%2F", "/")
            if repo_id not in state.repos:
                return self._send(404, {"error": "Repository not found"})
            if action == "branch":
                state.files.setdefault((repo_id, rev), {})
                return self._send(200, {})
            if action == "preupload":
                files = json.loads(raw)["files"]
                return self._send(200, {"files": [
                    {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files
                ]})
            if state.fail_commit:
                return self._send(state.fail_commit, {"error": "You don't have the rights to push to this repo"})
            stored = state.files.setdefault((repo_id, rev), {})
            for line in raw.splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    stored[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            return self._send(200, {"commitUrl": f"http://{self.headers['Host']}/{repo_id}/commit/abc123", "commitOid": "abc123"})

    return Handler


class FakeHub:
    def __init__(self) -> None:
        self.state = HubState()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(self.state))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
