"""The packaged CloudFormation template, checked offline: cfn-lint on it and on its SAM
transform, least privilege, the Function URL with both permissions, a small package."""
import json
import os
import shutil
import subprocess
import zipfile

import pytest

from tests.vectorfiles import ROOT_PATH as ROOT

STAGES = ("dev", "prod")


def run(*command, **kwargs):
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, **kwargs)


@pytest.fixture(scope="module")
def packaged(tmp_path_factory):
    """`make wheelhouse` (PyPI), then `make package` for each stage inside a network namespace
    with no network at all when this machine can make one: proof that packaging is offline."""
    build = tmp_path_factory.mktemp("build")
    done = run("make", "wheelhouse")
    assert done.returncode == 0, done.stderr
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


@pytest.mark.parametrize("stage", STAGES)
def test_cfn_lint_passes_on_the_template_and_its_sam_transform(packaged, stage):
    path = packaged[0][stage]
    sam_transform(path)
    for name in ("sam.json", "cfn.json"):
        done = run(os.path.join(os.path.dirname(os.sys.executable), "cfn-lint"), str(path / name))
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("stage", STAGES)
def test_the_notify_function_url_is_public_with_both_permissions(packaged, stage):
    resources = sam_transform(packaged[0][stage])["Resources"]
    urls = [r for r in resources.values() if r["Type"] == "AWS::Lambda::Url"]
    assert [(u["Properties"]["TargetFunctionArn"], u["Properties"]["AuthType"]) for u in urls] == \
        [({"Ref": "Notify"}, "NONE")]
    public = {(p["Properties"]["Action"], p["Properties"].get("FunctionUrlAuthType"),
               p["Properties"].get("InvokedViaFunctionUrl"))
              for p in resources.values()
              if p["Type"] == "AWS::Lambda::Permission" and p["Properties"]["Principal"] == "*"}
    assert public == {("lambda:InvokeFunctionUrl", "NONE", None), ("lambda:InvokeFunction", None, True)}
    assert resources["Notify"]["Properties"]["ReservedConcurrentExecutions"] > 0


@pytest.mark.parametrize("stage", STAGES)
def test_table_secret_schedule_and_outputs(packaged, stage):
    template = json.loads((packaged[0][stage] / "sam.json").read_text())
    table = template["Resources"]["OrdersTable"]
    assert table["DeletionPolicy"] == "Retain" and table["Properties"]["TableName"] == f"alipay-orders-{stage}"
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST" and props["SSESpecification"]["SSEEnabled"]
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert [i["IndexName"] for i in props["GlobalSecondaryIndexes"]] == ["waiting"]
    secret = template["Resources"]["MerchantSecret"]["Properties"]
    assert secret["Name"] == f"alipay/merchant-{stage}"
    assert "SecretString" not in secret and "GenerateSecretString" not in secret  # no value in a template
    schedules = [e for r in template["Resources"].values() if r["Type"] == "AWS::Serverless::Function"
                 for e in r["Properties"].get("Events", {}).values() if e["Type"] == "Schedule"]
    assert [s["Properties"]["Schedule"] for s in schedules] == ["rate(5 minutes)"]  # once, from the decorator
    assert {"EndpointURL", "NotifyFunctionUrl", "OrdersTableName", "MerchantSecretArn"} <= set(template["Outputs"])
    for function in ("APIHandler", "Notify", "Reconcile"):
        variables = template["Resources"][function]["Properties"]["Environment"]["Variables"]
        assert variables["ORDERS_TABLE"] == f"alipay-orders-{stage}"
        assert variables["ALIPAY_SECRET_ID"] == f"alipay/merchant-{stage}"
    assert template["Resources"]["RestAPI"]["Properties"]["EndpointConfiguration"] == "REGIONAL"


@pytest.mark.parametrize("stage", STAGES)
def test_least_privilege_no_wildcard_resources(packaged, stage):
    template = json.loads((packaged[0][stage] / "sam.json").read_text())
    roles = [r for r in template["Resources"].values() if r["Type"] == "AWS::IAM::Role"]
    assert len(roles) == 3
    for role in roles:
        statements = [s for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]
        actions = {a for s in statements for a in s["Action"]}
        assert actions == {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query",
                           "secretsmanager:GetSecretValue", "logs:CreateLogGroup", "logs:CreateLogStream",
                           "logs:PutLogEvents"}
        for statement in statements:
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            assert "*" not in resources
            assert all(f"-{stage}" in r for r in resources), resources
            if any(a.startswith("dynamodb:") for a in statement["Action"]):
                assert all(f":table/alipay-orders-{stage}" in r for r in resources)
            if any(a.startswith("secretsmanager:") for a in statement["Action"]):
                assert resources == [f"arn:aws:secretsmanager:*:*:secret:alipay/merchant-{stage}-??????"]


def test_the_deployment_package_is_small_and_has_no_botocore_or_pyopenssl(packaged):
    path = packaged[0]["prod"] / "deployment.zip"
    names = zipfile.ZipFile(path).namelist()
    tops = {name.split("/")[0] for name in names}
    assert not {"botocore", "boto3", "OpenSSL", "moto", "sandbox", "demo", "tests", "bench"} & tops, tops
    # Chalice ships only its small runtime (chalice/app.py), not the CLI.
    assert {n for n in names if n.startswith("chalice/")} <= {"chalice/__init__.py", "chalice/app.py",
                                                              "chalice/app.pyi", "chalice/py.typed"}
    assert {"app.py", "chalicelib", "cryptography", "urllib3"} <= tops
    size = path.stat().st_size
    print(f"deployment.zip: {size / 1e6:.1f} MB, offline: {packaged[1]}")
    assert size < 8_000_000


def test_the_deployment_package_carries_the_api_reference(packaged):
    # GET /openapi.yaml reads it next to app.py: in Lambda only app.py, chalicelib/ and vendor/ exist.
    names = zipfile.ZipFile(packaged[0]["prod"] / "deployment.zip").namelist()
    assert "chalicelib/openapi.yaml" in names
