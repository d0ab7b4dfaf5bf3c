"""A stand-in engine process for the lifecycle tests: a stdlib HTTP server with SGLang's probe endpoints.

    python tests/servers/fake_engine.py --host H --port P [--mode ok|crash|hang] [--startup-delay S]
        [--spawn-child] [--spawn-orphan] [--sglang-sigterm] [--ignore-sigterm] [--old-endpoints-only] [--pid-file F]

- ok: serves /health, /health_generate (503 until --startup-delay has passed), /server_info and
  /model_info (or only their /get_ spellings with --old-endpoints-only).
- crash: prints a few log lines and a traceback, exits 3 without listening.
- hang: prints a line and sleeps without ever listening.
- --spawn-child: starts a worker subprocess (like SGLang's scheduler) that sleeps until killed.
- --sglang-sigterm: on SIGTERM kill the worker and then itself with SIGKILL, as SGLang does (exit -9).
- --ignore-sigterm: ignore SIGTERM, so only SIGKILL stops it.
- --spawn-orphan: starts a grandchild and lets its parent exit (the orphan is re-parented to init).
- --pid-file: once listening, write {"server": pid, "children": [pids], "orphans": [pids]} there.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SERVER_INFO = {"version": "9.9.9-fake", "page_size": 1, "disable_radix_cache": False, "model_path": "fake/model"}
MODEL_INFO = {"model_path": "fake/model", "is_generation": True, "model_type": "fake"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=["ok", "crash", "hang"], default="ok")
    parser.add_argument("--startup-delay", type=float, default=0.0)
    parser.add_argument("--spawn-child", action="store_true")
    parser.add_argument("--spawn-orphan", action="store_true")
    parser.add_argument("--sglang-sigterm", action="store_true")
    parser.add_argument("--ignore-sigterm", action="store_true")
    parser.add_argument("--old-endpoints-only", action="store_true")
    parser.add_argument("--pid-file", default=None)
    args = parser.parse_args()
    print(f"fake engine pid {os.getpid()} mode {args.mode} port {args.port}", flush=True)

    if args.mode == "crash":
        for i in range(80):
            print(f"loading shard {i}", flush=True)
        print("Traceback (most recent call last):\nRuntimeError: fake CUDA out of memory", file=sys.stderr, flush=True)
        sys.exit(3)
    if args.mode == "hang":
        print("waiting for a collective that never comes", flush=True)
        while True:
            time.sleep(3600)

    children, orphans = [], []
    sleeper = [sys.executable, "-c", "import time\nwhile True: time.sleep(3600)"]
    if args.spawn_child:
        children.append(subprocess.Popen(sleeper))
    if args.spawn_orphan:  # a grandchild whose parent exits: re-parented to init, still in our process group
        spawn = f"import subprocess as s; print(s.Popen({sleeper!r}, stdout=s.DEVNULL, stderr=s.DEVNULL).pid)"
        orphans.append(
            int(subprocess.run([sys.executable, "-c", spawn], capture_output=True, text=True, check=True).stdout)
        )
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    elif args.sglang_sigterm:

        def kill_tree(signum, frame):
            for child in children:
                child.kill()
            os.kill(os.getpid(), signal.SIGKILL)

        signal.signal(signal.SIGTERM, kill_tree)

    SERVER_INFO["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES")
    ready_at = time.monotonic() + args.startup_delay
    routes = {"/get_server_info": SERVER_INFO, "/get_model_info": MODEL_INFO}
    if not args.old_endpoints_only:
        routes |= {"/server_info": SERVER_INFO, "/model_info": MODEL_INFO}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path in ("/health", "/health_generate"):
                ready = time.monotonic() >= ready_at
                self._send(200 if ready else 503, {} if ready else {"error": "starting"})
            elif self.path in routes:
                self._send(200, routes[self.path])
            else:
                self._send(404, {"error": f"no route {self.path}"})

        def _send(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt, *fmt_args):
            print(f"request {fmt % fmt_args}", flush=True)

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    if args.pid_file:
        with open(args.pid_file + ".tmp", "w") as f:
            json.dump({"server": os.getpid(), "children": [c.pid for c in children], "orphans": orphans}, f)
        os.replace(args.pid_file + ".tmp", args.pid_file)
    print("listening", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
