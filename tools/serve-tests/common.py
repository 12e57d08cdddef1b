"""Shared helpers of the `tinygpt serve` tests: start the real binary, run the CLI, count results."""

import json
import os
import subprocess
import sys
import time
import traceback
import urllib.request

BIN = os.environ.get("TINYGPT", "target/debug/tinygpt")
OUT = os.environ.get("SERVE_TEST_OUT", "target/serve-tests")


class Server:
    """`tinygpt serve` on a free loopback port; stopped with SIGTERM on exit."""

    def __init__(self, model, *args):
        self.proc = subprocess.Popen(
            [BIN, "serve", "-m", model, "--port", "0", *args],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines = []
        deadline = time.time() + 30
        self.url = None
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            if "listening on http://" in line:
                self.url = "http://" + line.split("listening on http://")[1].split("/")[0]
                break
        if self.url is None:
            self.proc.kill()
            raise RuntimeError("tinygpt serve did not start: %r" % self.lines)
        assert self.url.startswith("http://127.0.0.1:"), self.url

    def get(self, path, key=None):
        req = urllib.request.Request(self.url + path)
        if key:
            req.add_header("Authorization", "Bearer " + key)
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.read().decode()

    def metric(self, name, key=None):
        for line in self.get("/metrics", key).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0

    def wait_idle(self, within=10.0, key=None):
        deadline = time.time() + within
        while self.metric("tinygpt_slots_busy", key) or self.metric("tinygpt_queue_length", key):
            assert time.time() < deadline, "slots still busy after %s s" % within
            time.sleep(0.02)

    def post(self, path, body, key=None):
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST")
        req.add_header("Content-Type", "application/json")
        if key:
            req.add_header("Authorization", "Bearer " + key)
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                code = self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                raise AssertionError("tinygpt serve did not stop on SIGTERM")
            assert code == 0, "tinygpt serve exited with %s" % code

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.stop()
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def cli(*args):
    """stdout of `tinygpt ARGS` (which must succeed)."""
    return subprocess.run([BIN, *args], check=True, capture_output=True, text=True).stdout


def run_tests(tests):
    """Runs each test function; prints one line per test and `N passed, N failed`; exit status."""
    passed = failed = 0
    for t in tests:
        start = time.time()
        try:
            t()
        except Exception:
            failed += 1
            print("FAIL %s (%.1f s)" % (t.__name__, time.time() - start))
            traceback.print_exc()
        else:
            passed += 1
            print("ok   %s (%.1f s)" % (t.__name__, time.time() - start))
        sys.stdout.flush()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0
