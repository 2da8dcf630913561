"""A small web service for scripts/examples/pyweb.lua (standard library only).

It loads its catalogue once at start (the part a warm snapshot saves:
interpreter start-up, imports, parsing) and answers from memory:
  GET /count        number of items
  GET /item/<id>    one item as JSON
  GET /stock        total stock
"""
import csv
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

with open("/srv/items.csv", newline="") as f:
    ITEMS = {int(r["id"]): r for r in csv.DictReader(f)}
for r in ITEMS.values():
    r["price_cents"] = int(r["price_cents"])
    r["stock"] = int(r["stock"])


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/count":
            body = str(len(ITEMS))
        elif self.path == "/stock":
            body = str(sum(r["stock"] for r in ITEMS.values()))
        elif self.path.startswith("/item/") and self.path[6:].isdigit() and int(self.path[6:]) in ITEMS:
            body = json.dumps(ITEMS[int(self.path[6:])])
        else:
            self.send_error(404)
            return
        data = (body + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        pass


print(f"pyweb: {len(ITEMS)} items loaded, listening on :8000", flush=True)
ThreadingHTTPServer(("0.0.0.0", 8000), Handler).serve_forever()
