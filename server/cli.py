"""`vrcap serve`: registers the subcommand; uvicorn, FastAPI and capture are imported only when it runs."""

from __future__ import annotations

import argparse
import errno
import socket
import sys
from pathlib import Path
from typing import Any

from vrcap.errors import UsageError

EXIT_OK = 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    serve = sub.add_parser(
        "serve",
        help="run the control plane (REST API + companion page)",
        description="Run the control plane: REST API under /api/v1 and the companion page at /. "
        "Prints the bearer token and a pairing URL. SIGTERM or Ctrl-C stops a running recording cleanly.",
    )
    serve.add_argument("--host", default=None, help="bind address (default 127.0.0.1; others expose the API)")
    serve.add_argument("--port", type=int, default=None, help="TCP port (default 8765)")
    serve.add_argument(
        "--root", default=None, help="folder for sessions, datasets, runs and state (default .)"
    )
    serve.add_argument(
        "--config",
        type=Path,
        default=None,
        help="server config: a shipped NAME or a YAML PATH (default: the shipped server.yaml)",
    )
    serve.add_argument(
        "--tls", action="store_true",
        help="serve HTTPS (WebXR on a headset needs it): a self-signed certificate kept under the root",
    )  # fmt: skip
    serve.add_argument("--tls-cert", type=Path, default=None, help="your own certificate (PEM) instead")
    serve.add_argument("--tls-key", type=Path, default=None, help="its private key (PEM)")
    serve.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. max_body_bytes=1e5"
    )
    serve.set_defaults(func=cmd_serve)


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything is printed: a port in use is the first and only message."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(
                f"port {port} is in use; use --port N (another vrcap serve may be running)"
            ) from None
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}; use --host/--port") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def tls_files(args: argparse.Namespace, settings: Any) -> tuple[str, str, str] | None:
    """(certificate, key, SHA-256 fingerprint) for --tls / --tls-cert + --tls-key, or None for plain HTTP."""
    if not (args.tls or args.tls_cert or args.tls_key):
        return None
    from server.tls import check_user_pair, ensure_certificate, fingerprint

    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            raise UsageError("--tls-cert and --tls-key go together: give both PEM files, or --tls alone")
        check_user_pair(args.tls_cert, args.tls_key)
        cert, key = args.tls_cert, args.tls_key
    else:
        settings.make_dirs()
        cert, key = ensure_certificate(settings.state_dir, settings.host)
    return str(cert), str(key), fingerprint(Path(cert))


def print_tls_pairing(tls: tuple[str, str, str], bind: str, shown: str, port: int, token: str) -> None:
    """The https pairing URL (the LAN address when bound to all of them), the fingerprint, a QR code of the URL."""
    from server.tls import lan_address, qr_lines

    host = (lan_address() or shown) if bind in ("0.0.0.0", "::") else shown
    url = f"https://{host}:{port}/#token={token}"
    print(f"vrcap serve: pair a headset with {url}", file=sys.stderr)
    print(f"vrcap serve: certificate {tls[0]}", file=sys.stderr)
    print(
        f"vrcap serve: its SHA-256 fingerprint {tls[2]} (compare it with what the browser shows)",
        file=sys.stderr,
    )
    print(qr_lines(url), file=sys.stderr)


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from server.app import create_app
    from server.connlimits import guarded_http
    from server.recorder_launch import Launcher, lower_api_priority, set_group_priority
    from server.settings import ServerSettings
    from server.system import health_body
    from vrcap.config import load_config

    overrides = list(args.overrides)
    for key in ("host", "port", "root"):
        if getattr(args, key) is not None:
            overrides.append(f"{key}={getattr(args, key)}")
    settings = load_config(ServerSettings, args.config, overrides, default_name="server.yaml")
    tls = tls_files(args, settings)  # a bad --tls-cert is said before the port is taken
    sock = _bind(settings.host, settings.port)
    port = sock.getsockname()[1]
    # One handler, on the root: uvicorn's loggers propagate to it too, so nothing is printed twice.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s", force=True)
    app = create_app(settings)
    app.state.launcher = Launcher().start()  # before the API's priority is lowered: recorders keep ours
    lower_api_priority(settings.api_nice)
    set_group_priority(settings.api_group_nice)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    shown = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else host
    print(f"vrcap serve: root {settings.root_dir}", file=sys.stderr)
    print(f"vrcap serve: token {app.state.token}", file=sys.stderr)
    if tls is None:
        print(
            f"vrcap serve: pair a browser with http://{shown}:{port}/#token={app.state.token}",
            file=sys.stderr,
        )
    else:
        print_tls_pairing(tls, settings.host, shown, port, app.state.token)
    if not settings.is_loopback:
        print(
            f"vrcap serve: listening on {settings.host}, reachable from the network; only the token protects it",
            file=sys.stderr,
        )
    config = uvicorn.Config(
        app, host=settings.host, port=port, log_level="info", access_log=False, log_config=None,
        http=guarded_http(settings, lambda: health_body(app)), ws="websockets-sansio", ws_max_size=65536, timeout_graceful_shutdown=5,
        ssl_certfile=tls[0] if tls else None, ssl_keyfile=tls[1] if tls else None,
    )  # fmt: skip
    uvicorn.Server(config).run(sockets=[sock])
    return EXIT_OK
