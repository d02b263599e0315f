"""Regression section: create and notify of this checkout against the same requests served by an
earlier commit (BASELINE, the first build: main before issues 10 to 19), in the same run.

Each side runs in a process of its own (both import `app` and `chalicelib`), rounds alternate
between them so that drift on a shared machine hits both alike, and each round times the same
requests as the service section (bench.service.Service), with this checkout's harness: own time,
the wall time less the time inside botocore's calls. The earlier commit is read from git; without
it (a shallow clone) the section says so and measures nothing.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile

BASELINE = "f8ecd6ebdda4883230ad5098ddb64239ea8186f7"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(rounds=5, baseline=BASELINE):
    print(f"== regression (own time of create and notify: this checkout against {baseline[:7]}, rounds alternating)")
    with tempfile.TemporaryDirectory() as earlier:
        try:
            archive = subprocess.run(["git", "-C", ROOT, "archive", baseline], capture_output=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            print(f"skipped: commit {baseline[:7]} is not in this clone (a shallow one?)")
            return
        subprocess.run(["tar", "-x", "-C", earlier], input=archive, check=True)
        medians = {"now": [], "then": []}
        sides = [("then", earlier), ("now", ROOT)]
        for _ in range(rounds):
            for side, tree in sides:
                done = subprocess.run([sys.executable, "-m", "bench.regression", tree], cwd=ROOT,
                                      capture_output=True, text=True)
                if done.returncode != 0:
                    raise RuntimeError(f"the {side} round failed:\n{done.stderr[-3000:]}")
                medians[side].append(json.loads(done.stdout.strip().splitlines()[-1]))
            sides.reverse()  # neither side always goes first
    for name in ("create", "notify"):
        now = statistics.median(m[name] for m in medians["now"])
        then = statistics.median(m[name] for m in medians["then"])
        print(f"{name:<8} now p50 {now:8.1f} µs | {baseline[:7]} p50 {then:8.1f} µs | ratio {now / then:5.2f} "
              f"(rounds: now {', '.join(f'{m[name]:.0f}' for m in medians['now'])}; "
              f"then {', '.join(f'{m[name]:.0f}' for m in medians['then'])})")


def measure(tree):
    """One round in this process: the project at `tree` serves the service section's requests.
    This checkout's harness is imported first; then `tree` comes first on the path for the rest."""
    from bench import timing
    sys.path.insert(0, tree)
    os.chdir(tree)
    from bench.service import Service
    service = Service()
    try:
        times = timing.timed_batches(service.steps(), batches=6, per_batch=25)
    finally:
        service.stop()
    print(json.dumps({name: statistics.median(values) for name, values in times.items()}))


if __name__ == "__main__":
    measure(sys.argv[1])
