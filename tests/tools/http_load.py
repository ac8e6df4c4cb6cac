#!/usr/bin/env python3
"""Load for the serve specs: THREADS clients, each on one keep-alive
connection (http.client), GET PATH on HOST:PORT for SECONDS. Prints one JSON
object: answers by status, connection failures, the distinct bodies of the
200s and of answers neither 200 nor 503, and the statuses of the last second (to show recovery).

    http_load.py HOST PORT PATH SECONDS THREADS
"""
import http.client
import json
import sys
import threading
import time

host, port, path, seconds, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
lock = threading.Lock()
statuses, bodies, failures, tail, odd = {}, set(), [], [], set()
end = time.monotonic() + seconds


def client():
    conn = None
    while time.monotonic() < end:
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, port, timeout=30)
            conn.request("GET", path)
            r = conn.getresponse()
            body = r.read()
            with lock:
                statuses[r.status] = statuses.get(r.status, 0) + 1
                if r.status == 200:
                    bodies.add(body.decode())
                elif r.status != 503:
                    odd.add(body.decode()[:300])
                if time.monotonic() > end - 1:
                    tail.append(r.status)
            if r.status == 503:
                time.sleep(0.05)  # as a client backing off would
        except (OSError, http.client.HTTPException) as e:
            with lock:
                failures.append(repr(e))
            conn = None
            time.sleep(0.05)


ts = [threading.Thread(target=client) for _ in range(threads)]
for t in ts:
    t.start()
for t in ts:
    t.join()
print(json.dumps({"statuses": {str(k): v for k, v in statuses.items()}, "failures": failures[:10],
                  "failed": len(failures), "bodies": sorted(bodies), "tail": tail,
                  "odd": sorted(odd)}))
