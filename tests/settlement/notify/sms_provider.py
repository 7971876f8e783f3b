"""A local SMS provider for tests: speaks the API :mod:`settlement.notify.sms` expects.

``python -m tests.settlement.notify.sms_provider <port> <api key> <outbox file>``: accepts
``POST /v1/messages`` with the right bearer key (401 otherwise), refuses numbers that do not
start with ``+`` (422) and numbers ending in ``429`` (429, "try later"), appends every accepted
message as a JSON line to the outbox, and answers ``201 {"id": "sms_<n>"}``.
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def main() -> None:
    """Serve until killed."""
    port, key, outbox = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    sent = [0]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return  # quiet: the test reads the outbox

        def _answer(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            if self.path != "/v1/messages":
                self._answer(404, {"error": "not found"})
            elif self.headers.get("authorization") != f"Bearer {key}":
                self._answer(401, {"error": "bad key"})
            elif not str(body.get("to", "")).startswith("+"):
                self._answer(422, {"error": "invalid number"})
            elif str(body["to"]).endswith("429"):
                self._answer(429, {"error": "slow down"})
            else:
                sent[0] += 1
                with outbox.open("a") as file:
                    file.write(json.dumps(body) + "\n")
                self._answer(201, {"id": f"sms_{sent[0]}"})

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
