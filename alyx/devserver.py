"""The development servers: `alyx dev` (a parent that watches and restarts, a child that serves), `flask run`'s port.

`alyx dev` runs two processes. The parent binds the port, starts the child and restarts it when it
exits with code 3 (the reloader's "a watched file changed"); it never builds the app, so it holds no
scheduler lease, runs no jobs and starts no sandbox. SIGTERM or SIGINT to the parent is passed on to
the child, which stops serving, closes its services (every sandbox it started is removed) and exits;
then the parent exits. The child builds the app (or, while the schema is broken, a page saying why),
serves it on the inherited socket and watches schema.yaml, alyx.yaml and the server's own modules.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from types import FrameType
from typing import Any

import click
from click.core import ParameterSource
from flask import Flask, Response
from werkzeug.serving import make_server, run_simple

from alyx.app import create_app
from alyx.config import Config
from alyx.errors import AlyxError, ConfigError
from alyx.http import json_response

CHILD_FLAG = "WERKZEUG_RUN_MAIN"  # werkzeug's own: run_simple in the child serves on WERKZEUG_SERVER_FD
RELOAD_EXIT_CODE = 3  # werkzeug's reloader exits the child with it when a watched file changes
STOP_TIMEOUT = 30.0


def dev_app(project_dir: Path) -> Flask:
    """Build the app; on a ConfigError serve the message (503) until the reloader sees a fix."""
    try:
        return create_app(project_dir=project_dir)
    except ConfigError as exc:
        message = str(exc)
        print(f"Alyx cannot start: {message}\nWaiting for schema.yaml / alyx.yaml to change...", flush=True)
        broken = Flask("alyx-broken")

        @broken.route("/", defaults={"path": ""})
        @broken.route("/<path:path>")
        def explain(path: str) -> Response:
            error = AlyxError("config_error", message, 503)
            return json_response(error.to_dict(), 503)

        return broken


def run_dev(config: Config, host: str, port: int) -> int:
    """`alyx dev`: the watching parent, or (in the process it starts) the serving child. Returns the exit code."""
    if os.environ.get(CHILD_FLAG) == "true":
        return serve_child(config.project_dir, host, port)
    return supervise(host, port, child_command())


def child_command() -> list[str]:
    """The command line that runs this `alyx ...` command again (as `python -m alyx`, from a script or -m)."""
    return [sys.executable, "-m", "alyx", *sys.argv[1:]]


def supervise(host: str, port: int, command: list[str]) -> int:
    """Bind the port, run `command` as the serving child and restart it on exit code 3; stop it on SIGTERM/SIGINT."""
    try:
        server = make_server(host, port, _never_called, threaded=True)  # binds; the child serves on its socket
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    server.socket.set_inheritable(True)
    env = {**os.environ, CHILD_FLAG: "true", "WERKZEUG_SERVER_FD": str(server.fileno())}
    shown = "localhost" if host in ("127.0.0.1", "::1") else host
    click.echo(f"Alyx dev server on http://{shown}:{port} (docs at /docs); it restarts when schema.yaml or "
               "alyx.yaml change. Ctrl+C to stop.")
    stopping: list[int] = []
    child: subprocess.Popen[bytes] | None = None

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.append(signum)
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM if len(stopping) == 1 else signal.SIGKILL)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while True:
            child = subprocess.Popen(command, env=env, close_fds=False)
            code = _wait(child)
            if stopping or code != RELOAD_EXIT_CODE:
                return 0 if stopping else code
            click.echo(" * schema.yaml, alyx.yaml or the server's code changed: restarting")
    finally:
        if child is not None and child.poll() is None:  # e.g. an exception here: never leave the child behind
            child.terminate()
            _wait(child, STOP_TIMEOUT)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.server_close()


def _wait(child: subprocess.Popen[bytes], timeout: float | None = None) -> int:
    """The child's exit code (signals interrupt nothing: the handler only forwards them)."""
    try:
        return child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        return child.wait()


def _never_called(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """The parent's server only holds the socket; the child serves it."""
    raise RuntimeError("the alyx dev parent process does not serve requests")


def serve_child(project_dir: Path, host: str, port: int) -> int:
    """Serve the project on the socket the parent bound; on exit (reload or stop) remove what the app started."""
    stop_requested: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stop_requested.append(signum))  # until run_simple's own
    app = dev_app(project_dir)
    watched = [str(project_dir / "schema.yaml"), str(project_dir / "alyx.yaml")]
    code = 0
    try:
        if stop_requested:
            return 0
        run_simple(host, port, app, use_reloader=True, extra_files=watched, reloader_type="stat", threaded=True)
    except SystemExit as exc:  # the reloader's sys.exit(3), or SIGTERM's sys.exit(0)
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)  # a second signal must not cut the clean-up short
        services = app.extensions.get("alyx")
        if services is not None:
            services.close()  # stops the job loop and the scheduler lease, removes every sandbox
    return code


def flask_run_address(config: Config) -> list[str]:
    """Under `flask run`: the `--host`/`--port` options that the project's settings (server.host/port,
    ALYX_SERVER_*) ask for and the command line (or FLASK_RUN_HOST/PORT) did not set; [] otherwise."""
    ctx = click.get_current_context(silent=True)
    if ctx is None or ctx.command.name != "run" or os.environ.get(CHILD_FLAG) == "true":
        return []
    wanted = {"host": config.server_host, "port": config.server_port}
    options: list[str] = []
    for name, value in wanted.items():
        if ctx.get_parameter_source(name) is ParameterSource.DEFAULT and ctx.params.get(name) != value:
            options += [f"--{name}", str(value)]
    return options


def rerun_flask_with(options: list[str]) -> None:
    """Run this `flask ... run` command again with `options` added (replaces the process)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "flask", *sys.argv[1:], *options])
