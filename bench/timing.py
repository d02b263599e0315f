"""Interleaved batch timing shared by the benchmark sections."""
import gc
import statistics
import time
from collections import Counter

import botocore.client


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
