"""A stand-in for the Hugging Face hub on loopback, for the full-size rehearsal (issue 16, point 1).

`StandinHub(root)` serves folders laid out as `root/models/<org>/<name>/...` and
`root/datasets/<org>/<name>/...` over HTTP on 127.0.0.1, answering the endpoints that
huggingface_hub 2.x, datasets 5.x and transformers 5.x call: repository info
(`/api/{models,datasets}/<id>[/revision/<rev>]`), file listings (`.../tree/<rev>[/<path>]`,
`.../paths-info/<rev>`) and file downloads (`[/datasets]/<id>/resolve/<rev>/<path>`, with HEAD and
byte ranges, which streaming reads of parquet files use). Point the libraries at it with
`HF_ENDPOINT=hub.url` *before* importing them (they read the variable once, at import), with the
offline switches off and an empty `HF_HOME`: the loading code a learner runs at full size is what
runs, only the bytes are small. Every request is logged in `hub.requests` (method, path, status).

Left out: authentication, gated repositories, xet storage, uploads, revisions other than one
commit per repository (every revision name resolves to it).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_KINDS = {"models": "model", "datasets": "dataset"}
_LAST_MODIFIED = "2024-01-01T00:00:00.000Z"


def repo_sha(folder: Path) -> str:
    """The one commit hash of a stand-in repository: 40 hex digits that change with its files, so a
    cache filled from an earlier build is never taken for this one."""
    h = hashlib.sha1(str(folder).encode())
    for path in _files(folder):
        h.update(_etag(path).encode())
    return h.hexdigest()


def _etag(path: Path) -> str:
    st = path.stat()
    return hashlib.sha1(f"{path.name}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()


class StandinHub:
    """Serve the repositories under `root` on a free loopback port until `close()`."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.requests: list[tuple[str, str, int]] = []
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def repo_dir(self, kind: str, repo_id: str) -> Path | None:
        """The folder of repository `repo_id` of `kind` ("models"/"datasets"), or None."""
        folder = self.root / kind / repo_id
        return folder if repo_id.count("/") <= 1 and folder.is_dir() else None

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "StandinHub":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def _entry(folder: Path, path: Path) -> dict:
    rel = path.relative_to(folder).as_posix()
    if path.is_dir():
        return {"type": "directory", "path": rel, "oid": _etag(path)}
    return {"type": "file", "path": rel, "size": path.stat().st_size, "oid": _etag(path)}


class _Handler(BaseHTTPRequestHandler):
    hub: StandinHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet; see hub.requests
        pass

    # ------------------------------------------------------------------------------------ replies
    def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.hub.requests.append((self.command, self.path, status))
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data: object) -> None:
        self._send(200, json.dumps(data).encode(), {"Content-Type": "application/json"})

    def _missing(self, code: str, message: str) -> None:
        self._send(404, message.encode(), {"X-Error-Code": code, "X-Error-Message": message})

    # ----------------------------------------------------------------------------------- routing
    def do_HEAD(self) -> None:
        self._route()

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def _route(self) -> None:
        parts = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(parts.path)
        query = urllib.parse.parse_qs(parts.query)
        m = re.match(
            r"^/api/(models|datasets)/(.+?)(?:/(revision|tree|paths-info)/([^/]+)(/.*)?)?$", path
        )
        if m:
            kind, repo_id, what, _rev, sub = m.groups()
            if what == "tree" or what == "paths-info":
                return self._tree(kind, repo_id, what, (sub or "").strip("/"), query)
            return self._info(kind, repo_id)
        m = re.match(r"^(/datasets)?/(.+?)/resolve/([^/]+)/(.+)$", path)
        if m:
            kind = "datasets" if m.group(1) else "models"
            return self._resolve(kind, m.group(2), m.group(4))
        self._missing("RepoNotFound", f"the stand-in hub does not serve {path}")

    def _repo(self, kind: str, repo_id: str) -> Path | None:
        folder = self.hub.repo_dir(kind, repo_id)
        if folder is None:
            self._missing("RepoNotFound", f"{kind}/{repo_id} is not in the stand-in hub")
        return folder

    def _info(self, kind: str, repo_id: str) -> None:
        folder = self._repo(kind, repo_id)
        if folder is None:
            return
        files = _files(folder)
        self._json(
            {
                "_id": repo_sha(folder)[:24],
                "id": repo_id,
                "sha": repo_sha(folder),
                "private": False,
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "lastModified": _LAST_MODIFIED,
                "createdAt": _LAST_MODIFIED,
                "siblings": [
                    {"rfilename": p.relative_to(folder).as_posix(), "size": p.stat().st_size}
                    for p in files
                ],
                "usedStorage": sum(p.stat().st_size for p in files),
            }
        )

    def _tree(self, kind: str, repo_id: str, what: str, sub: str, query: dict) -> None:
        folder = self._repo(kind, repo_id)
        if folder is None:
            return
        if what == "paths-info":
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode() if length else ""
            form = urllib.parse.parse_qs(raw)
            if self.headers.get("Content-Type", "").startswith("application/json"):
                form = {"paths": json.loads(raw or "{}").get("paths", [])}
            wanted = [folder / p for p in form.get("paths", [])]
            return self._json([_entry(folder, p) for p in wanted if p.exists()])
        base = folder / sub if sub else folder
        if not base.is_dir():
            return self._missing("EntryNotFound", f"{sub} is not a folder of {repo_id}")
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        found = base.rglob("*") if recursive else base.iterdir()
        entries = [_entry(folder, p) for p in sorted(found) if not p.name.startswith(".")]
        self._json(entries)

    def _resolve(self, kind: str, repo_id: str, filename: str) -> None:
        folder = self._repo(kind, repo_id)
        if folder is None:
            return
        path = folder / filename
        if not path.is_file():
            return self._missing("EntryNotFound", f"{filename} is not in {kind}/{repo_id}")
        size = path.stat().st_size
        headers = {
            "X-Repo-Commit": repo_sha(folder),
            "ETag": f'"{_etag(path)}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        start, end, status = 0, size - 1, 200
        m = re.match(r"bytes=(\d*)-(\d*)$", self.headers.get("Range", ""))
        if m and size:
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:  # a suffix: the last N bytes
                start = max(0, size - int(m.group(2)))
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        headers["Content-Length"] = max(0, end - start + 1)
        if self.command == "HEAD":
            return self._send(status, b"", headers)
        with open(path, "rb") as f:
            f.seek(start)
            body = f.read(max(0, end - start + 1))
        self._send(status, body, headers)
