"""A local stack in a process of its own, for end-to-end tests that need one beside the session's:
`make run` from a fresh clone with make arguments, or devstack.py with options."""
import contextlib
import os
import pathlib
import signal
import subprocess
import time

from devstack import free_port, port_in_use

ROOT = pathlib.Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def make_run(tmp_path, *make_args):
    """`make run` from a fresh clone on free ports: yields (clone, its output up to "Ctrl-C stops
    everything"); afterwards stops it with Ctrl-C and checks that every port is free again."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    # The project's own virtualenv stands in for the install step, which `make test` already proved.
    with local_stack(["make", "run", *make_args, f"VENV={ROOT / '.venv'}"], clone) as text:
        yield clone, text


@contextlib.contextmanager
def local_stack(command, cwd):
    """The local stack started by `command` in a process of its own, on free ports."""
    ports = {name: free_port() for name in ("PORT", "SANDBOX_PORT", "MOTO_PORT", "SHOP_PORT")}
    env = dict(os.environ, **{k: str(v) for k, v in ports.items()})
    process = subprocess.Popen(command, cwd=cwd, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    output, deadline = [], time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            output.append(line)
            if "Ctrl-C stops everything" in line:
                break
        text = "".join(output)
        assert "Ctrl-C stops everything" in text, text
        yield text
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=30)
    time.sleep(0.5)
    assert not any(port_in_use(port) for port in ports.values()), ports
