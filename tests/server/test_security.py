"""Security: the token on every protected route, Host checks, body limits, path validation, the token file."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from server.app import create_app
from server.auth import load_or_create_token, token_matches
from server.settings import ServerSettings
from tests.server.live import ServeProcess

PUBLIC = {("GET", "/api/v1/health"), ("GET", "/"), ("GET", "/page/{name}"), ("GET", "/openapi.json")}


def http_routes(tmp: Path) -> Iterator[tuple[str, str]]:
    """(method, path) of every HTTP route of a freshly built app, included routers flattened."""
    app = create_app(ServerSettings(root=str(tmp)))
    for route in app.routes:
        contexts = route.effective_route_contexts() if hasattr(route, "effective_route_contexts") else [route]
        for ctx in contexts:
            for method in sorted(getattr(ctx, "methods", None) or ()):
                if method != "HEAD":
                    yield method, ctx.path


def test_every_protected_route_needs_the_token(serve: ServeProcess, tmp_path: Path) -> None:
    routes = sorted(set(http_routes(tmp_path)))
    protected = [(m, p) for m, p in routes if (m, p) not in PUBLIC]
    assert len(protected) >= 17  # the walk found the API, not an empty list
    with httpx.Client(base_url=serve.url, timeout=30) as client:
        for method, path in protected:
            url = path.replace("{", "").replace("}", "")  # /jobs/{job_id} → /jobs/job_id
            body = {} if method == "POST" else None
            for headers in (
                {},
                {"Authorization": "Bearer wrong-token-of-some-length"},
                {"Authorization": "Basic x"},
            ):
                response = client.request(method, url, json=body, headers=headers)
                assert response.status_code == 401, (method, url, headers, response.text)
                error = response.json()
                assert error["error"] == "unauthorized" and "Bearer" in error["fix"]
                assert response.headers["www-authenticate"] == "Bearer"
        for method, path in sorted(PUBLIC):
            url = path.replace("{name}", "app.js")
            assert client.request(method, url).status_code == 200, url


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/api/v1/recordings", {"session": "../escape"}, 422, "bad-session-name"),
        ("POST", "/api/v1/recordings", {"session": "/etc"}, 422, "bad-session-name"),
        ("POST", "/api/v1/recordings", {"session": ".hidden"}, 422, "bad-session-name"),
        ("POST", "/api/v1/recordings", {"session": "ok", "cameras": ["left=/etc/passwd"]}, 422, "bad-camera"),
        (
            "POST",
            "/api/v1/recordings",
            {"session": "ok", "cameras": ["left=../../clip.mp4"]},
            422,
            "bad-camera",
        ),
        (
            "POST",
            "/api/v1/recordings",
            {"session": "ok", "overrides": {"record.cameras": "x=/etc/passwd"}},
            422,
            "bad-override",
        ),
        ("POST", "/api/v1/recordings", {"session": "ok", "overrides": {"no.such.key": 1}}, 422, "bad-config"),
        ("GET", "/api/v1/sessions/..", None, 404, "not-found"),
        ("GET", "/api/v1/sessions/%2e%2e%2fetc", None, 404, "not-found"),
        ("GET", "/api/v1/sessions/..%2F..%2Fetc%2Fpasswd", None, 404, "not-found"),
        ("DELETE", "/api/v1/sessions/..?confirm=..", None, 404, "not-found"),
        ("POST", "/api/v1/jobs/replay", {"session": "../sessions"}, 422, "bad-session-name"),
        ("POST", "/api/v1/jobs/replay", {"session": "x", "dataset": "/tmp/out"}, 422, "bad-session-name"),
        ("POST", "/api/v1/jobs/train", {"config": "../../etc/passwd", "dataset": "x"}, 422, "unknown-config"),
        ("POST", "/api/v1/jobs/train", {"config": "tiny", "dataset": "../runs"}, 422, "bad-session-name"),
        ("GET", "/page/..%2F..%2Fsettings.py", None, 404, "not-found"),
        ("GET", "/api/v1/jobs/..%2F..%2F.vrcap%2Ftoken/log", None, 404, "not-found"),
    ],
)
def test_traversal_and_bad_names_are_refused_by_their_guard(
    serve: ServeProcess, method: str, path: str, body: object, status: int, code: str
) -> None:
    """Each case pins the status and error code of the guard that must refuse it: "any 4xx" let a removed
    camera guard pass on the 409 of a recording already running."""
    with serve.client() as client:
        response = client.request(method, path, json=body)
    assert (response.status_code, response.json().get("error")) == (status, code), response.text
    error = response.json()
    assert error["detail"] and error["fix"]  # the problem and the fix, as JSON
    assert not (serve.root / "escape").exists() and not (serve.root / "ok").exists()


def test_unknown_train_override_is_refused_before_spawning(serve: ServeProcess) -> None:
    (serve.root / "datasets" / "dsx").mkdir(parents=True, exist_ok=True)
    (serve.root / "datasets" / "dsx" / "manifest.json").write_text("{}")
    with serve.client() as client:
        jobs_before = client.get("/api/v1/jobs").json()["jobs"]
        for overrides, word in [
            ({"optim.lrr": 0.1}, "lrr"),
            ({"optim.lr": "fast"}, "optim.lr"),
            ({"model.n_heads": 3}, "n_heads"),
            ({"optim; rm -rf /": 1}, "dotted"),
        ]:
            response = client.post(
                "/api/v1/jobs/train", json={"config": "tiny", "dataset": "dsx", "overrides": overrides}
            )
            assert response.status_code == 422, response.text
            assert word in response.json()["detail"]
        assert client.get("/api/v1/jobs").json()["jobs"] == jobs_before


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8765", "127.0.0.1.nip.io", "localhost:1", "[::1]:x"]
)
def test_foreign_host_header_is_refused(serve: ServeProcess, host: str) -> None:
    with serve.client() as client:
        response = client.get("/api/v1/recordings/current", headers={"Host": host})
        assert response.status_code == 400 and response.json()["error"] == "bad-host"
        assert client.get("/", headers={"Host": host}).status_code == 400
        for good in (
            "localhost",
            f"localhost:{serve.port}",
            f"127.0.0.1:{serve.port}",
            f"[::1]:{serve.port}",
        ):
            assert client.get("/api/v1/recordings/current", headers={"Host": good}).status_code == 200


def test_oversized_body_gets_413(serve: ServeProcess) -> None:
    big = {"text": "x" * 70_000, "kind": "marker", "channel": "external"}
    with serve.client() as client:
        response = client.post("/api/v1/recordings/rec-1/annotations", json=big)
        assert response.status_code == 413 and response.json()["error"] == "body-too-large"

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it streams
            yield b'{"session": "'
            for _ in range(100):
                yield b"a" * 1000
            yield b'"}'

        response = client.post(
            "/api/v1/recordings", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 413 and response.json()["error"] == "body-too-large"


def test_cors_is_closed_unless_configured(serve: ServeProcess) -> None:
    with serve.client() as client:
        response = client.options(
            "/api/v1/sessions",
            headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert "access-control-allow-origin" not in response.headers
        response = client.get("/api/v1/sessions", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in response.headers


def test_generated_token_is_private_and_stable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VRCAP_TOKEN", raising=False)
    settings = ServerSettings(root=str(tmp_path))
    token = load_or_create_token(settings)
    path = tmp_path / ".vrcap" / "token"
    assert len(token) >= 32 and path.read_text().strip() == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    os.chmod(path, 0o644)
    assert load_or_create_token(settings) == token  # the same token at the next start ...
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # ... and the file made private again
    monkeypatch.setenv("VRCAP_TOKEN", "from-the-environment-123")
    assert load_or_create_token(settings) == "from-the-environment-123"
    assert (
        token_matches(token, token)
        and not token_matches(token, token[:-1])
        and not token_matches(token, None)
    )


def test_serve_prints_the_token_and_pairing_url(tmp_path: Path) -> None:
    with ServeProcess(tmp_path, token=None) as server:
        token = (tmp_path / ".vrcap" / "token").read_text().strip()
        assert f"http://127.0.0.1:{server.port}/#token={token}" in server.log()
        server.token = token
        with server.client() as client:
            assert client.get("/api/v1/sessions").status_code == 200
