"""Benchmark of `tinygpt serve`: aggregate generated tokens/s with 1, 2 and 4 parallel streams and
the time to the first token, beside the CLI's single-stream speed (`tinygpt bench`).

usage: bench.py MODEL [TOKENS] [ROUNDS]   (TINYGPT names the binary; run by tools/bench-serve.sh)
"""

import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time

from common import BIN, Server

MODEL = sys.argv[1]
TOKENS = int(sys.argv[2]) if len(sys.argv) > 2 else 128
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 8


def stream(addr, seed, out):
    """One streamed completion; appends (seconds to the first token, seconds, tokens)."""
    body = json.dumps({"prompt": "ROMEO:", "max_tokens": TOKENS, "seed": seed, "stream": True,
                       "stream_options": {"include_usage": True}}).encode()
    s = socket.create_connection(addr, timeout=120)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    start = time.perf_counter()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    buf, first = b"", None
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
        if first is None and b'"text":"' in buf.split(b"\r\n\r\n", 1)[-1].replace(b'"text":""', b""):
            first = time.perf_counter() - start
    took = time.perf_counter() - start
    s.close()
    m = re.search(rb'"completion_tokens":(\d+)', buf)
    assert b"data: [DONE]" in buf and m, buf[-300:]
    out.append((first, took, int(m.group(1))))


def main():
    cli = subprocess.run([BIN, "bench", "-m", MODEL, "-p", "8", "-n", str(TOKENS), "-r", "5"], check=True, capture_output=True, text=True).stdout
    tg = [l.split() for l in cli.splitlines() if l.startswith("tg")][0]
    print("model %s, %d tokens per stream, %d rounds, %d CPUs" % (MODEL, TOKENS, ROUNDS, os.cpu_count()))
    print("CLI (tinygpt bench, tg%d): %s tokens/s wall, %s tokens/s on CPU time" % (TOKENS, tg[2], tg[6]))
    print("%-8s %14s %16s %16s %12s" % ("streams", "tokens/s", "per stream t/s", "TTFT p50 ms", "TTFT max ms"))
    with Server(MODEL, "--parallel", "4", "--queue", "0") as srv:
        host, port = srv.url[7:].split(":")
        addr = (host, int(port))
        stream(addr, 0, [])  # warm-up
        for p in (1, 2, 4):
            results = []
            start = time.perf_counter()
            for r in range(ROUNDS):
                ts = [threading.Thread(target=stream, args=(addr, r * 10 + i, results)) for i in range(p)]
                for t in ts:
                    t.start()
                for t in ts:
                    t.join()
            wall = time.perf_counter() - start
            tokens = sum(n for _, _, n in results)
            per = statistics.median(n / t for _, t, n in results)
            ttft = [f * 1e3 for f, _, _ in results]
            print("%-8d %14.0f %16.0f %16.2f %12.2f" % (p, tokens / wall, per, statistics.median(ttft), max(ttft)))


main()
