"""A webhook receiver for snapgate that verifies every delivery with the Standard Webhooks
library (`pip install standardwebhooks`), standard library otherwise.

    SNAPGATE_WEBHOOK_SECRET=whsec_... python3 examples/webhook_receiver.py 9000

prints one JSON line per verified delivery and answers 401 to anything that does not verify.
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

webhook = Webhook(os.environ["SNAPGATE_WEBHOOK_SECRET"])


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        try:
            event = webhook.verify(body, dict(self.headers))
        except WebhookVerificationError as e:
            print(json.dumps({"refused": str(e)}), flush=True)
            self.send_response(401)
            self.end_headers()
            return
        # A retry carries the same webhook-id: a real receiver drops ids it has seen.
        print(json.dumps({"verified": event["type"], "webhook_id": self.headers["webhook-id"],
                          "data": event["data"]}), flush=True)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    ThreadingHTTPServer(("127.0.0.1", port), Receiver).serve_forever()
