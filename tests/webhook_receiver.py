"""A webhook receiver for herald's tests: verifies every request with the
`standardwebhooks` package (the reference implementation from PyPI, not
herald's code), appends each verified one as a JSON line to OUT, and
answers 204; a request that does not verify is answered 400 and logged
to OUT as {"bad": ...}.

    python3 webhook_receiver.py SECRET PORT OUT
"""
import http.server
import json
import sys

from standardwebhooks.webhooks import Webhook

secret, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
hook = Webhook(secret)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            payload = hook.verify(body, dict(self.headers.items()))
            line = {"id": self.headers["webhook-id"], "payload": payload}
            status = 204
        except Exception as e:  # noqa: BLE001 - any failure is a bad signature
            line = {"bad": str(e), "body": body.decode("utf-8", "replace")}
            status = 400
        with open(out, "a") as f:
            f.write(json.dumps(line) + "\n")
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
print("ready", flush=True)
server.serve_forever()
