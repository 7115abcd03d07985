"""gunicorn settings for Alyx: gevent workers, bind and worker count from alyx.yaml / ALYX_* env.

Patch first, in the master, before anything imports ssl: on_starting below builds the services,
which imports requests, redis and jwt (they hold ssl.SSLContext), and a worker that patches after
that prints gevent's MonkeyPatchWarning at every start. Patched here, the workers inherit it.
"""
from gevent import monkey

monkey.patch_all()

import os  # noqa: E402

from gunicorn import glogging, util  # noqa: E402
from gunicorn.http import unreader  # noqa: E402

from alyx import gunicorn_response, gunicorn_worker  # noqa: E402
from alyx.accesslog import redact_query  # noqa: E402
from alyx.config import load_config  # noqa: E402
from alyx.errors import ConfigError  # noqa: E402
from alyx.http import protocol_error  # noqa: E402

try:
    _config = load_config()
except ConfigError as exc:
    raise SystemExit(f"Alyx cannot start: {exc}") from None

bind = os.environ.get("GUNICORN_BIND", f"{_config.server_host}:{_config.server_port}")
workers = int(os.environ.get("WEB_CONCURRENCY", _config.server_workers))
worker_class = "gevent"
worker_connections = 10000
timeout = 60
graceful_timeout = 20
keepalive = 75  # longer than nginx's upstream keepalive_timeout default
control_socket_disable = True  # gunicorn 27 opens ~/.gunicorn otherwise; not wanted in containers
accesslog = os.environ.get("GUNICORN_ACCESSLOG")  # off by default: it costs throughput
limit_request_line = 8190  # gunicorn's maximum (default 4094): room for long `filter=` expressions


def write_protocol_error(sock, status_int, reason, mesg):  # noqa: ANN001, ANN201 - gunicorn's signature
    """gunicorn answers requests it cannot parse (414, 431, a bad header or chunk) itself, as an HTML
    page: answer them in the one error shape every other response uses."""
    util.write_nonblock(sock, protocol_error(status_int, reason, mesg))


util.write_error = write_protocol_error


class RedactingLogger(glogging.Logger):
    """gunicorn's logger with token query parameters (`?token=` of the realtime sign-in, `access_token`,
    ...) redacted from every access-log atom: the request line, the query string, the referer."""

    def atoms(self, resp, req, environ, request_time):  # noqa: ANN001, ANN201 - gunicorn's signature
        return {key: redact_query(value) if isinstance(value, str) else value
                for key, value in super().atoms(resp, req, environ, request_time).items()}


logger_class = RedactingLogger

# gunicorn 27 reads a request body of known length up to 1 MB per recv() and copies that buffer two or
# three times per read (unreader.py): a 10 MB upload then peaked ~4 MB above the worker's usual heap,
# which glibc kept as RSS once an S3 PUT had allocated above it (docs/benchmarks.md, Files). 64 KB, the
# size werkzeug's form parser asks for, keeps the peak under 1 MB; the 1 MB step exists for CPU-bound
# threads contending for the GIL, which gevent workers do not have.
unreader.SocketUnreader.max_body_chunk = 64 * 1024

# A lone connection's JSON answers: head and body in one send, not two (alyx/gunicorn_response.py).
gunicorn_response.install()
# The Date header once a second and the trusted-proxy check once per peer (alyx/gunicorn_worker.py).
gunicorn_worker.install()


def on_starting(server):
    """Apply safe migrations once in the master, before workers fork (they then find nothing to do);
    check the auth keys and OAuth providers here too, so a missing secret stops the master at once."""
    from alyx.auth import load_key_ring
    from alyx.oauth import load_providers
    from alyx.services import build_services

    try:
        build_services(_config).close()
        load_key_ring(_config)
        load_providers(_config)
    except ConfigError as exc:
        raise SystemExit(f"Alyx cannot start: {exc}") from None


def post_worker_init(worker):
    """After the app is loaded in a worker: move everything built so far out of the cyclic GC's sight
    and collect less often. Full collections walk every tracked object (thousands of WebSockets'
    greenlets and buffers); in bench/realtime.py this cut delivery p99 by a quarter to a third."""
    import gc

    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    gunicorn_worker.settle_settings(worker.cfg)  # settings read as plain attributes from now on
