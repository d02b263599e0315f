"""Interleaved batch timing shared by the benchmark sections. Imports nothing of the project: the
regression section loads it before it puts another checkout of the project on the path."""
import base64
import contextlib
import gc
import logging
import os
import statistics
import subprocess
import sys
import time
from collections import Counter

import botocore.client

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def interleaved(ours, floor, batches=20, per_batch=50):
    """Per-call times (µs) of two callables, run in alternating batches."""
    times = {"ours": [], "floor": []}
    for _ in range(batches):
        for name, fn in (("ours", ours), ("floor", floor)):
            gc.collect()
            for _ in range(per_batch):
                start = time.perf_counter_ns()
                fn()
                times[name].append((time.perf_counter_ns() - start) / 1000)
    return times


def summary(label, times):
    ours, floor = times["ours"], times["floor"]
    p50o, p50f = statistics.median(ours), statistics.median(floor)
    p95o, p95f = _p95(ours), _p95(floor)
    print(f"{label:<44} ours p50 {p50o:9.1f} µs  p95 {p95o:9.1f} µs | floor p50 {p50f:9.1f} µs  "
          f"p95 {p95f:9.1f} µs | ratio p50 {p50o / p50f:5.2f}  p95 {p95o / p95f:5.2f}")
    return p50o / p50f


def _p95(values):
    ordered = sorted(values)
    return ordered[int(len(ordered) * 0.95) - 1]


class BotocoreMeter:
    """Time spent inside botocore's API calls and their count per service operation."""

    def __init__(self):
        self.inside_ns = 0
        self.calls = Counter()
        self._original = botocore.client.BaseClient._make_api_call

    def __enter__(self):
        meter, original = self, self._original

        def measured(client, operation, params):
            start = time.perf_counter_ns()
            try:
                return original(client, operation, params)
            finally:
                meter.inside_ns += time.perf_counter_ns() - start
                meter.calls[f"{client.meta.service_model.service_name}:{operation}"] += 1

        botocore.client.BaseClient._make_api_call = measured
        return self

    def __exit__(self, *exc):
        botocore.client.BaseClient._make_api_call = self._original


def bench_table(ddb, name):
    """The orders table without its stream: moto copies the whole stream shard into every
    transaction it runs, so a streamed table that grows during a benchmark measures moto."""
    from chalicelib import store
    ddb.create_table(**store.table_definition(name))


class MotoProcess:
    """A moto server in a process of its own, on a port it binds itself. In the benchmark's
    process its threads would take the GIL from the code being timed, and moto's cost would show
    up as ours; each section also starts from empty moto backends. A context manager; the server
    also stops when this process ends (it reads stdin until EOF)."""

    def __init__(self):
        self.url, self._process = None, None

    def start(self):
        script = ("import sys; from localaws import MotoServer; "
                  "print(MotoServer(0).start().port, flush=True); sys.stdin.read()")
        # This checkout's moto server, whichever checkout the section measures (bench.regression).
        self._process = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True)
        port = self._process.stdout.readline().strip()
        if not port.isdigit():
            self.stop()
            raise RuntimeError("the moto server did not start")
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self):
        if self._process:
            self._process.stdin.close()
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class LambdaContext:
    """What a Lambda context offers the handlers."""
    function_name = "api_handler"
    aws_request_id = "bench"
    memory_limit_in_mb = 512

    @staticmethod
    def get_remaining_time_in_millis():
        return 30000


def proxy_event(method, path, headers, body, resource, path_parameters=None):
    return {
        "resource": resource, "path": path, "httpMethod": method, "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()}, "queryStringParameters": None,
        "multiValueQueryStringParameters": None, "pathParameters": path_parameters, "stageVariables": None,
        "requestContext": {"resourcePath": resource, "httpMethod": method, "stage": "api", "path": path,
                           "identity": {"sourceIp": "127.0.0.1"}, "requestId": "bench"},
        "body": base64.b64encode(body).decode(), "isBase64Encoded": True,
    }


def timed_batches(steps, batches=12, per_batch=25):
    """steps: name -> (setup, timed, cleanup). Returns name -> list of µs of own time: the wall
    time less the time inside botocore's API calls (moto's cost is not ours)."""
    times = {name: [] for name in steps}
    gc.disable()
    try:
        with BotocoreMeter() as meter, open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), \
                lambda_log_handler(sink):
            for _ in range(batches):
                for name, (setup, timed, cleanup) in steps.items():
                    for _ in range(per_batch):
                        state = setup()
                        inside, start = meter.inside_ns, time.perf_counter_ns()
                        timed(state)
                        wall = time.perf_counter_ns() - start
                        times[name].append((wall - (meter.inside_ns - inside)) / 1000)
                        cleanup(state)
                    gc.collect()
    finally:
        gc.enable()
    return times


@contextlib.contextmanager
def lambda_log_handler(stream):
    """Log lines formatted and written as Lambda's Python runtime does (its default text format),
    to `stream`: a log line costs what it costs in AWS, for ours and the floors alike."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(request_id)s\t%(message)s\n",
                                           "%Y-%m-%dT%H:%M:%S"))
    handler.addFilter(_with_request_id)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


def _with_request_id(record):
    record.request_id = "bench"  # Lambda's runtime adds aws_request_id to every record the same way
    return True
