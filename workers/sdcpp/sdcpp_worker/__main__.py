"""`python -m sdcpp_worker`: an A1111-compatible worker for sdbox around stable-diffusion.cpp.

Loads the checkpoint first, then listens (so `/internal/ping` answering means the model is ready), like
A1111 started with `--api --nowebui --ckpt`.
"""

import argparse
import logging
import os
import sys
import threading
import time

from .checkpoint import Checkpoint
from .engine import Engine
from .server import WorkerServer
from .upscalers import Upscalers

log = logging.getLogger("sdcpp-worker")


def watch_parent(pid):
    """Exits when process `pid` (sdbox) is gone, so that a worker never outlives the server that started it."""
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            log.warning("sdbox (pid %d) is gone; exiting", pid)
            os._exit(0)
        except PermissionError:
            pass
        time.sleep(1)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="sdbox-sdcpp-worker",
        description="An A1111-compatible API for one checkpoint, running real diffusion with stable-diffusion.cpp on the CPU.",
    )
    parser.add_argument("--ckpt", required=True, help="checkpoint to load (.safetensors, .ckpt or .gguf)")
    parser.add_argument("--port", type=int, required=True, help="port to listen on")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--models-dir", help="models folder in A1111's layout: ESRGAN/ upscalers and Lora/ are used from it")
    parser.add_argument("--upscaler", action="append", default=[], help="an ESRGAN model to offer for upscaling (repeatable)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads for the engine (default: all)")
    parser.add_argument("--parent-pid", type=int, help="exit when the process with this id is gone (sdbox passes its own)")
    # A pool's extraArgs may carry A1111's own flags (--api, --nowebui, ...): accepted and ignored.
    arguments, a1111_flags = parser.parse_known_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if a1111_flags:
        logging.getLogger("sdcpp_worker").info("ignoring A1111 flags: %s", " ".join(a1111_flags))
    if arguments.parent_pid:
        threading.Thread(target=watch_parent, args=(arguments.parent_pid,), name="parent-watch", daemon=True).start()
    if not os.path.isfile(arguments.ckpt):
        parser.error(f"checkpoint not found: {arguments.ckpt}")
    for path in arguments.upscaler:
        if not os.path.isfile(path):
            parser.error(f"upscaler not found: {path}")

    checkpoint = Checkpoint(arguments.ckpt)
    lora_dir = os.path.join(arguments.models_dir, "Lora") if arguments.models_dir else None
    upscalers = Upscalers(arguments.models_dir, arguments.upscaler, arguments.threads)
    try:
        engine = Engine(checkpoint, upscalers, arguments.threads, lora_dir)
    except Exception as error:
        log.error("stable-diffusion.cpp could not load %s: %s", checkpoint.path, error)
        return 1
    log.info("Model loaded in %.2fs: %s (%d engine threads)", engine.load_seconds, checkpoint.title, arguments.threads)
    server = WorkerServer((arguments.host, arguments.port), engine)
    log.info("Listening on http://%s:%d", arguments.host, arguments.port)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
