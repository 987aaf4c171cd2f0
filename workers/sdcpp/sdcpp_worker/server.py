"""The HTTP side: the A1111 API subset sdbox uses, on Python's threading HTTP server.

Each request has its own thread; a generation holds the engine's lock while stable-diffusion.cpp runs
without the GIL, so progress, interrupt and ping answer at once during a generation.
"""

import json
import logging
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from . import a1111
from .errors import InputError, NotFound

log = logging.getLogger("sdcpp-worker")

MAX_BODY_BYTES = 512 << 20


class Handler(BaseHTTPRequestHandler):
    """Routes one request to the engine (`self.server.engine`)."""

    protocol_version = "HTTP/1.1"
    server_version = "sdbox-sdcpp-worker"

    def do_GET(self):
        engine = self.server.engine
        routes = {
            # Ready; `loaded` says whether the checkpoint is loaded or freed (/sdapi/v1/unload-checkpoint).
            "/internal/ping": lambda: {"status": "ok", "loaded": engine.loaded},
            "/sdapi/v1/progress": engine.progress,
            "/sdapi/v1/options": engine.current_options,
            "/sdapi/v1/sd-models": lambda: [engine.checkpoint.sd_model()],
            "/sdapi/v1/samplers": a1111.sampler_list,
            "/sdapi/v1/schedulers": a1111.scheduler_list,
            "/sdapi/v1/upscalers": engine.upscalers.listing,
            # A1111's lists of what this engine does not have: none of each, in A1111's shapes.
            "/sdapi/v1/face-restorers": list,
            "/sdapi/v1/realesrgan-models": list,
            "/sdapi/v1/hypernetworks": list,
            "/sdapi/v1/extensions": list,
            "/sdapi/v1/script-info": list,
        }
        self._answer(routes.get(urlsplit(self.path).path))

    def do_POST(self):
        engine = self.server.engine
        routes = {
            "/sdapi/v1/txt2img": lambda: engine.generate("txt2img", self._body()),
            "/sdapi/v1/img2img": lambda: engine.generate("img2img", self._body()),
            "/sdapi/v1/extra-single-image": lambda: engine.postprocess("extra-single-image", self._body()),
            "/sdapi/v1/extra-batch-images": lambda: engine.postprocess("extra-batch-images", self._body()),
            "/sdapi/v1/unload-checkpoint": lambda: engine.unload() or {},
            "/sdapi/v1/reload-checkpoint": lambda: engine.reload() or {},
            "/sdapi/v1/interrupt": lambda: engine.interrupt() or {},
            "/sdapi/v1/skip": lambda: engine.skip() or {},
            "/sdapi/v1/options": lambda: engine.set_options(self._body()),
        }
        self._answer(routes.get(urlsplit(self.path).path))

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise BodyTooLarge()
        data = self.rfile.read(length)
        self._body_read = True
        try:
            return json.loads(data or b"null")
        except ValueError:
            raise InputError("request body must be JSON") from None

    def _answer(self, route):
        self._body_read = False
        if route is None:
            self._send(HTTPStatus.NOT_FOUND, {"error": "Not Found", "detail": f"no route {self.command} {self.path}"})
            return
        try:
            self._send(HTTPStatus.OK, route())
        except InputError as error:
            self._send(HTTPStatus.UNPROCESSABLE_ENTITY, {"error": "ValidationError", "detail": str(error)})
        except NotFound as error:
            self._send(HTTPStatus.NOT_FOUND, {"error": "Not Found", "detail": str(error)})
        except BodyTooLarge:
            self._body_read = True  # not read: the connection is closed instead
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "Payload Too Large", "detail": f"the body exceeds {MAX_BODY_BYTES} bytes"})
            self.close_connection = True
        except Exception as error:  # a failed generation is answered, not fatal to the worker
            log.error("%s %s failed:\n%s", self.command, self.path, traceback.format_exc())
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": type(error).__name__, "detail": str(error)})

    def _send(self, status, value):
        if self.command == "POST" and not self._body_read:
            # Drain an unread body so that the connection can carry the next request.
            self.rfile.read(min(int(self.headers.get("Content-Length") or 0), MAX_BODY_BYTES))
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        log.debug("%s %s", self.address_string(), format % args)


class BodyTooLarge(Exception):
    """A request body over `MAX_BODY_BYTES` (HTTP 413)."""


class WorkerServer(ThreadingHTTPServer):
    """The worker's HTTP server, holding the engine its handlers use."""

    daemon_threads = True

    def __init__(self, address, engine):
        super().__init__(address, Handler)
        self.engine = engine
