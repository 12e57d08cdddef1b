"""A bounded load test of `tinygpt serve`: REQUESTS requests, CONCURRENCY at once, a mix of
streamed, whole and hung-up-early clients against 4 slots and a queue of 4. Asserts that every
answer is either the exact text (the same as one request alone gives) or a 503 with Retry-After,
(retried after a pause), that every slot is free at the end and that memory stays flat; prints throughput and latency
percentiles.

usage: load_test.py MODELS_DIR [REQUESTS] [CONCURRENCY]
"""

import json
import os
import socket
import sys
import threading
import time

from common import Server, run_tests

MODELS = sys.argv[1]
REQUESTS = int(sys.argv[2]) if len(sys.argv) > 2 else 200
CONCURRENCY = int(sys.argv[3]) if len(sys.argv) > 3 else 16
MODEL = os.path.join(MODELS, "slow.tgpt")
VARIANTS = [("ROMEO:", 1), ("KING:", 2), ("O, ", 3), ("What", 4)]
MAX_TOKENS = 64


def request(addr, body):
    """Sends a POST to /v1/completions; returns (status, headers, body bytes, seconds to the first
    body byte)."""
    data = json.dumps(body).encode()
    s = socket.create_connection(addr, timeout=60)
    start = time.time()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(data) + data)
    buf = b""
    first = None
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        if first is None and b"\r\n\r\n" in buf + chunk and len((buf + chunk).split(b"\r\n\r\n", 1)[1]) > 0:
            first = time.time() - start
        buf += chunk
    s.close()
    head, _, payload = buf.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        out = b""
        while True:
            size, _, rest = payload.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                break
            out += rest[:n]
            payload = rest[n + 2:]
        payload = out
    return status, headers, payload, first


def hang_up(addr, body):
    """A streamed request whose client reads the first event, then closes the connection."""
    data = json.dumps(body).encode()
    s = socket.create_connection(addr, timeout=60)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(data) + data)
    got = s.recv(4096)
    s.close()
    return int(got.split()[1]) if got else 0


def stream_text(payload):
    events = payload.decode().split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""], events[-3:]
    return "".join(json.loads(e[6:])["choices"][0]["text"] for e in events[:-2])


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


def test_load():
    with Server(MODEL, "--parallel", "4", "--queue", "4") as srv:
        host, port = srv.url[7:].split(":")
        addr = (host, int(port))
        want = {}
        for prompt, seed in VARIANTS:
            r = srv.post("/v1/completions", {"prompt": prompt, "seed": seed, "max_tokens": MAX_TOKENS})
            want[(prompt, seed)] = r["choices"][0]["text"]
        rss_start = None
        lock = threading.Lock()
        next_i = [0]
        results = {"ok": 0, "503": 0, "hung_up": 0, "errors": []}
        latencies, ttfts = [], []

        def worker():
            nonlocal rss_start
            while True:
                with lock:
                    i = next_i[0]
                    next_i[0] += 1
                if i >= REQUESTS:
                    return
                if i == REQUESTS // 4:
                    m = srv.metric("tinygpt_resident_memory_bytes")
                    with lock:
                        rss_start = m
                prompt, seed = VARIANTS[i % len(VARIANTS)]
                kind = ["stream", "whole", "stream", "whole", "hang_up"][i % 5]
                body = {"prompt": prompt, "seed": seed, "max_tokens": MAX_TOKENS, "stream": kind != "whole"}
                try:
                    if kind == "hang_up":
                        status = hang_up(addr, dict(body, max_tokens=4000))
                        with lock:
                            results["hung_up"] += 1
                        if status not in (200, 503):
                            raise AssertionError("hang-up request got %s" % status)
                        continue
                    # A 503 is retried after a pause (shorter than Retry-After, to keep the test
                    # short), at most 200 times.
                    for _ in range(200):
                        start = time.time()
                        status, headers, payload, first = request(addr, body)
                        took = time.time() - start
                        if status != 503:
                            break
                        assert headers.get("retry-after") == "1", headers
                        assert "busy" in json.loads(payload)["error"]["message"]
                        with lock:
                            results["503"] += 1
                        time.sleep(0.02)
                    assert status == 200, (status, payload[:200])
                    text = stream_text(payload) if kind == "stream" else json.loads(payload)["choices"][0]["text"]
                    assert text == want[(prompt, seed)], (kind, prompt, text, want[(prompt, seed)])
                    with lock:
                        results["ok"] += 1
                        latencies.append(took)
                        if kind == "stream":
                            ttfts.append(first)
                except Exception as e:  # collected, asserted below
                    with lock:
                        results["errors"].append("%s: %r" % (kind, e))

        tokens_before = srv.metric("tinygpt_generated_tokens_total")
        start = time.time()
        threads = [threading.Thread(target=worker) for _ in range(CONCURRENCY)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.time() - start
        srv.wait_idle(10)
        tokens = srv.metric("tinygpt_generated_tokens_total") - tokens_before
        rss_end = srv.metric("tinygpt_resident_memory_bytes")
        print("  %d requests, %d at once, %.2f s: %d answered, %d answers of 503 (retried), %d hung up early" % (
            REQUESTS, CONCURRENCY, wall, results["ok"], results["503"], results["hung_up"]))
        print("  throughput %.1f requests/s answered, %.0f generated tokens/s" % (results["ok"] / wall, tokens / wall))
        print("  latency (answered) p50 %.0f ms, p90 %.0f ms, p99 %.0f ms; first byte of a stream p50 %.0f ms, p99 %.0f ms" % (
            1e3 * percentile(latencies, 50), 1e3 * percentile(latencies, 90), 1e3 * percentile(latencies, 99),
            1e3 * percentile(ttfts, 50), 1e3 * percentile(ttfts, 99)))
        print("  resident memory %.2f MiB after a quarter of the requests, %.2f MiB at the end" % (rss_start / 2**20, rss_end / 2**20))
        assert not results["errors"], results["errors"][:5]
        assert results["ok"] + results["hung_up"] == REQUESTS
        assert results["503"] > 0, "16 clients on 4 slots and a queue of 4 must see 503s"
        assert srv.metric("tinygpt_slots_busy") == 0 and srv.metric("tinygpt_queue_length") == 0
        assert rss_end - rss_start < 4 * 2**20, "memory grew by %.2f MiB" % ((rss_end - rss_start) / 2**20)
        statuses = {l.split('"')[1]: float(l.split()[1]) for l in srv.get("/metrics").splitlines() if l.startswith("tinygpt_requests_total{")}
        assert set(statuses) <= {"200", "499", "503"}, statuses


sys.exit(run_tests([test_load]))
