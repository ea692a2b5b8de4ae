"""A minimal stand-in for the Hugging Face Hub API on 127.0.0.1, for push and load tests.

Implements what ``huggingface_hub`` calls to create a repo, a branch and a commit of regular
(non-LFS) files: ``/api/repos/create``, ``/api/validate-yaml``, ``…/branch/<b>``,
``…/preupload/<rev>`` and ``…/commit/<rev>`` (NDJSON, base64 file contents). Files that arrive
are kept in ``HubState.files[(repo_id, revision)][path]``. ``fail_commit`` makes commits fail.

And what loading a pushed repository calls, so that a test pushes a run and loads it back by
repo id (``SentenceTransformer(repo_id, truncate_dim=…)`` with ``HF_ENDPOINT`` set here):
``GET /api/models/<repo>/revision/<rev>`` (the repo's files), ``…/tree/<rev>[/<path>]`` and
``HEAD``/``GET /<repo>/resolve/<rev>/<path>`` with the headers ``hf_hub_download`` reads
(``X-Repo-Commit``, ``ETag``, ``Content-Length``; ``X-Error-Code`` on a 404, so an optional
file that is absent is skipped as on the Hub). Each revision's commit id is a hash of its files.
"""

from __future__ import annotations

import base64
import hashlib
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

        def _revision(self, repo_id: str, rev: str) -> dict[str, bytes] | None:
            rev = rev.replace("%2F", "/")
            if rev == "main" or (repo_id, rev) in state.files:
                return state.files.get((repo_id, rev), {})
            return next((files for (r, _), files in state.files.items() if r == repo_id and _commit(files) == rev),
                        None)

        def _missing(self, code: str, body: bool = True) -> None:
            self.send_response(404)
            self.send_header("X-Error-Code", code)
            self.send_header("Content-Length", "0" if not body else "2")
            self.end_headers()
            if body:
                self.wfile.write(b"{}")

        def _resolve(self, head: bool) -> None:
            state.requests.append(("HEAD" if head else "GET", self.path))
            path = self.path.split("?")[0]
            m = re.fullmatch(r"/(?:api/models/)?([^/]+/[^/]+)/(resolve|revision|tree)/([^/]+)(?:/(.*))?", path)
            if not m:
                return self._missing("RepoNotFound", not head)
            repo_id, action, rev, name = m.groups()
            if repo_id not in state.repos:
                return self._missing("RepoNotFound", not head)
            files = self._revision(repo_id, rev)
            if files is None:
                return self._missing("RevisionNotFound", not head)
            commit = _commit(files)
            if action == "revision":
                return self._send(200, {"id": repo_id, "modelId": repo_id, "sha": commit, "private": False,
                                        "siblings": [{"rfilename": f} for f in sorted(files)]})
            if action == "tree":
                prefix = f"{name.rstrip('/')}/" if name else ""
                entries = [{"type": "file", "path": f, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                           for f, b in sorted(files.items()) if f.startswith(prefix) and "/" not in f[len(prefix):]]
                folders = sorted({prefix + f[len(prefix):].split("/")[0] for f in files
                                  if f.startswith(prefix) and "/" in f[len(prefix):]})
                return self._send(200, [{"type": "directory", "path": d, "oid": commit} for d in folders] + entries)
            if name not in files:
                return self._missing("EntryNotFound", not head)
            data = files[name]
            self.send_response(200)
            self.send_header("X-Repo-Commit", commit)
            self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            if not head:
                self.wfile.write(data)

        def do_HEAD(self):
            self._resolve(head=True)

        def do_GET(self):
            self._resolve(head=False)

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


def _commit(files: dict[str, bytes]) -> str:
    """A revision's commit id: 40 hex digits that change with its files."""
    digest = hashlib.sha1()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha1(files[name]).digest())
    return digest.hexdigest()


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

    def serve_downloads(self, monkeypatch) -> None:
        """Point ``huggingface_hub``'s downloads here: it reads ``HF_ENDPOINT`` once, at import,
        into the constants every ``hf_hub_download`` builds its URLs from."""
        from huggingface_hub import constants

        monkeypatch.setattr(constants, "ENDPOINT", self.url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", self.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
