#!/usr/bin/env python3
"""A local stand-in for the public APIs quarry fetches from (Elexon, the
market sources), for the specs: serves ROOT/PATH.json
for GET PATH (404 with an Elexon-like error body when there is no file), with
faults injected per path from FAULTS (a JSON object: path -> list of faults,
taken one per request in order; a fault ending in "!" stays). Faults:

    429[:SECONDS]   HTTP 429, with Retry-After SECONDS when given
    500 | 503       that status
    404             not found
    empty           {"data": []}
    slow:SECONDS    wait, then answer normally
    truncate        the headers promise more body than is sent, then close
    reset           close the connection without an answer
    malformed       200 with a body that is not JSON

Every request is logged to LOG as a JSON line {t, path, answer}. The port
chosen is written to PORTFILE once listening.

    api_server.py ROOT FAULTS LOG PORTFILE
"""
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

root, faults_path, log_path, port_file = sys.argv[1:5]
lock = threading.Lock()
faults = {}
if os.path.exists(faults_path):
    with open(faults_path) as f:
        faults = json.load(f)
log = open(log_path, "a", buffering=1)


def next_fault(path):
    with lock:
        queue = faults.get(path) or []
        if not queue:
            return None
        fault = queue[0]
        if fault.endswith("!"):
            return fault[:-1]
        queue.pop(0)
        return fault


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def note(self, answer):
        log.write(json.dumps({"t": time.time(), "path": self.path, "answer": answer}) + "\n")

    def send(self, status, body, headers=None):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?")[0]
        fault = next_fault(path)
        self.note(fault or "ok")
        if fault:
            kind, _, arg = fault.partition(":")
            if kind == "429":
                return self.send(429, '{"error": "Too Many Requests"}', {"Retry-After": arg} if arg else None)
            if kind in ("500", "503"):
                return self.send(int(kind), '{"error": "server error"}')
            if kind == "404":
                return self.send(404, '{"status": 404, "error": "Not Found"}')
            if kind == "empty":
                return self.send(200, '{"data": []}')
            if kind == "malformed":
                return self.send(200, '{"data": [{"settlementDate": ')
            if kind == "reset":
                self.close_connection = True
                self.connection.close()
                return
            if kind == "truncate":
                body = self.body(path) or b'{"data": []}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body) + 100))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.close()
                return
            if kind == "slow":
                time.sleep(float(arg))
        body = self.body(path)
        if body is None:
            return self.send(404, '{"status": 404, "error": "Not Found"}')
        self.send(200, body)

    def body(self, path):
        file = os.path.join(root, path.lstrip("/") + ".json")
        if not os.path.isfile(file):
            return None
        with open(file, "rb") as f:
            return f.read()


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(port_file + ".tmp", port_file)
server.serve_forever()
