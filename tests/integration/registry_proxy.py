#!/usr/bin/env python3
"""A registry in front of a registry, for tests/integration/registry.test.sh:
   registry_proxy.py PORT UPSTREAM MODE [USER:PASSWORD]
forwards /v2/ requests to UPSTREAM (HOST:PORT) and plays:
  bearer    the token flow: a request without "Bearer <token>" gets a 401
            with a Bearer challenge whose realm is /token here; /token hands
            out the token for Basic USER:PASSWORD (or to anyone without one)
  bigsize   a manifest whose first frame is said to be 3 MiB
  hugemanifest  a manifest of 9 MiB
  longblob  every blob with 1 MiB more than it has
  errorbody every blob a 404 with a 64 MiB error body
Prints "ready" once it listens."""
import base64, http.client, http.server, json, sys

PORT, UP, MODE = int(sys.argv[1]), sys.argv[2], sys.argv[3]
CREDS = sys.argv[4] if len(sys.argv) > 4 else None
TOKEN = "t0k3n-for-smolvm-tests"


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, code, body=b"", headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def forward(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        c = http.client.HTTPConnection(UP)
        hdrs = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "authorization")}
        c.request(self.command, self.path, body=body, headers=hdrs)
        r = c.getresponse()
        data = r.read()
        out = []
        for k, v in r.getheaders():
            if k.lower() in ("content-length", "transfer-encoding", "connection"):
                continue
            if k.lower() == "location":
                v = v.replace("http://" + UP, "http://127.0.0.1:%d" % PORT)
            out.append((k, v))
        c.close()
        return r.status, data, out

    def handle_any(self):
        if self.path.startswith("/token"):
            if CREDS:
                want = "Basic " + base64.b64encode(CREDS.encode()).decode()
                if self.headers.get("Authorization") != want:
                    return self.reply(401, b'{"errors":[{"message":"bad credentials"}]}')
            return self.reply(200, json.dumps({"token": TOKEN}).encode(),
                              [("Content-Type", "application/json")])
        if MODE == "bearer" and self.headers.get("Authorization") != "Bearer " + TOKEN:
            n = int(self.headers.get("Content-Length") or 0)
            if n:
                self.rfile.read(n)
            ch = ('Bearer realm="http://127.0.0.1:%d/token",service="smolvm-test",'
                  'scope="repository:x:pull"' % PORT)
            return self.reply(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"token"}]}',
                              [("WWW-Authenticate", ch)])
        code, data, hdrs = self.forward()
        if code == 200 and self.command == "GET" and "/manifests/" in self.path:
            m = json.loads(data)
            if MODE == "bigsize":
                m["layers"][1]["size"] = 3 << 20
                data = json.dumps(m).encode()
            elif MODE == "hugemanifest":
                m["annotations"]["padding"] = "x" * (9 << 20)
                data = json.dumps(m).encode()
        if code == 200 and self.command == "GET" and "/blobs/" in self.path and MODE == "longblob":
            data += b"\0" * (1 << 20)
        if self.command == "GET" and "/blobs/" in self.path and MODE == "errorbody":
            return self.reply(404, b"x" * (64 << 20))
        self.reply(code, data, hdrs)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = handle_any


s = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), H)
print("ready", flush=True)
s.serve_forever()
