"""What the deployment tests share: the wheelhouse, `make package` for both stages (once per
session), the SAM transform of its template as `aws cloudformation deploy` would apply it, and a
moto server of their own per module (the stages' fixed names would meet across modules)."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.vectorfiles import ROOT_PATH as ROOT

STAGES = ("dev", "prod")


def run(*command, **kwargs):
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, **kwargs)


@pytest.fixture(scope="session")
def wheelhouse():
    """`make wheelhouse` (PyPI): what makes packaging and deploying offline afterwards."""
    done = run("make", "wheelhouse")
    assert done.returncode == 0, done.stderr
    return ROOT / "wheelhouse"


@pytest.fixture(scope="session")
def packaged(tmp_path_factory, wheelhouse):
    """`make package` for each stage inside a network namespace with no network at all when this
    machine can make one: proof that packaging is offline."""
    build = tmp_path_factory.mktemp("build")
    offline = ["unshare", "-n"] if shutil.which("unshare") and run("unshare", "-n", "true").returncode == 0 else []
    templates = {}
    for stage in STAGES:
        done = run(*offline, "make", "package", f"STAGE={stage}", f"BUILD={build}")
        assert done.returncode == 0, done.stdout + done.stderr
        templates[stage] = build / stage
    return templates, bool(offline)


def sam_transform(path):
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        def load(self):
            return {}

    template = json.loads((path / "sam.json").read_text())
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":  # as `aws cloudformation package` would
            resource["Properties"]["CodeUri"] = "s3://artifacts/deployment.zip"
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    transformed = transform(template, {}, NoManagedPolicies())
    (path / "cfn.json").write_text(json.dumps(transformed, indent=1))
    return transformed


class Moto:
    """A moto server in a process of its own (devstack's, behind its lock), and boto3 clients
    pointed at it. Its own process: moto keeps its state per process, and the stages' fixed names
    (alipay-orders-prod, ...) must not meet another module's."""

    def __init__(self):
        from devstack import free_port, wait_until_up
        from localaws import aws_environment
        port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-c", f"import time, localaws; localaws.MotoServer({port}).start(); time.sleep(86400)"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"
        wait_until_up(self.url, self.process)
        self.environment = aws_environment(self.url)

    def client(self, name):
        import boto3
        return boto3.client(name, endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def moto():
    server = Moto()
    yield server
    server.stop()
