"""`vrcap serve`: registers the subcommand; uvicorn, FastAPI and capture are imported only when it runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
        "--config", type=Path, default=None, help="server config YAML (default configs/server.yaml)"
    )
    serve.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. max_body_bytes=1e5"
    )
    serve.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from server.app import create_app
    from server.settings import ServerSettings
    from vrcap.config import load_config

    overrides = list(args.overrides)
    for key in ("host", "port", "root"):
        if getattr(args, key) is not None:
            overrides.append(f"{key}={getattr(args, key)}")
    settings = load_config(ServerSettings, args.config, overrides, default_name="server.yaml")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    app = create_app(settings)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    shown = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else host
    print(f"vrcap serve: root {settings.root_dir}", file=sys.stderr)
    print(f"vrcap serve: token {app.state.token}", file=sys.stderr)
    print(
        f"vrcap serve: pair a browser with http://{shown}:{settings.port}/#token={app.state.token}",
        file=sys.stderr,
    )
    if not settings.is_loopback:
        print(
            f"vrcap serve: listening on {settings.host}, reachable from the network; only the token protects it",
            file=sys.stderr,
        )
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level="info", access_log=False,
        ws="websockets-sansio", ws_max_size=65536, timeout_graceful_shutdown=5,
    )  # fmt: skip
    uvicorn.Server(config).run()
    return EXIT_OK
