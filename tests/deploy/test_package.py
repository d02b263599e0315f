"""The packaged CloudFormation template, checked offline: cfn-lint on it and on its SAM
transform, least privilege, the Function URL with both permissions, a small package."""
import json
import os
import zipfile

import pytest

from deploy import resources as deploy_resources  # the tests name the template's resources `resources`
from tests.deploy.conftest import ROOT, STAGES, run, sam_transform


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
    assert props["TimeToLiveSpecification"] == {"AttributeName": "purge_at", "Enabled": True}  # never expires_at
    assert [i["IndexName"] for i in props["GlobalSecondaryIndexes"]] == ["due"]
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


# Each function's role: what it may do beyond the table, the secret and its logs. Functions that
# sign (pay links, gateway calls) may use the app key in KMS; notify only verifies; the scheduled
# pass only finds and queues; each worker reads its own queue.
SQS_SEND = {"sqs:SendMessage", "sqs:GetQueueUrl"}
SQS_CONSUME = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
ROLES = {"NotifyRole": set(), "ApiHandlerRole": {"kms:Sign"} | SQS_SEND, "ReconcileRole": SQS_SEND,
         "ReconcileWorkerRole": {"kms:Sign"} | SQS_SEND | SQS_CONSUME, "PollWorkerRole": {"kms:Sign"} | SQS_SEND | SQS_CONSUME}
# The events publisher: its stream, the orders' product and total, the bus, its dead letters; no secret.
PUBLISHER = {"dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams",
             "dynamodb:BatchGetItem", "events:PutEvents", "sqs:SendMessage", "logs:CreateLogGroup",
             "logs:CreateLogStream", "logs:PutLogEvents"}
QUEUES = {"ApiHandlerRole": "reconcile", "ReconcileRole": "reconcile", "ReconcileWorkerRole": "reconcile",
          "PollWorkerRole": "poll"}


@pytest.mark.parametrize("stage", STAGES)
def test_least_privilege_no_wildcard_resources(packaged, stage):
    template = json.loads((packaged[0][stage] / "sam.json").read_text())
    roles = {name: r for name, r in template["Resources"].items() if r["Type"] == "AWS::IAM::Role"}
    assert set(roles) == set(ROLES) | {"PublishEventsRole"}
    for name, role in roles.items():
        statements = [s for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]
        actions = {a for s in statements for a in s["Action"]}
        assert actions == (PUBLISHER if name == "PublishEventsRole" else {
            "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query",
            "secretsmanager:GetSecretValue", "logs:CreateLogGroup", "logs:CreateLogStream",
            "logs:PutLogEvents"} | ROLES[name]), name
        for statement in statements:
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            assert "*" not in resources
            if statement["Action"] == ["kms:Sign"]:
                # The key's ARN is known only once it exists: the stage's alias scopes it instead.
                assert resources == ["arn:aws:kms:*:*:key/*"]
                assert statement["Condition"] == {
                    "ForAnyValue:StringEquals": {"kms:ResourceAliases": f"alias/chalice-alipay-{stage}"},
                    "StringEquals": {"kms:SigningAlgorithm": "RSASSA_PKCS1_V1_5_SHA_256"}}
                continue
            assert all(f"-{stage}" in r for r in resources), resources
            if any(a.startswith("dynamodb:") for a in statement["Action"]):
                assert all(f":table/alipay-orders-{stage}" in r for r in resources)
            if any(a.startswith("secretsmanager:") for a in statement["Action"]):
                assert resources == [f"arn:aws:secretsmanager:*:*:secret:alipay/merchant-{stage}-??????"]
            if any(a.startswith("sqs:") for a in statement["Action"]) and name in QUEUES:  # its own queue only
                assert resources == [f"arn:aws:sqs:*:*:chalice-alipay-{QUEUES[name]}-{stage}"]


@pytest.mark.parametrize("stage", STAGES)
def test_each_worker_reports_partial_batch_failures_from_its_own_queue(packaged, stage):
    resources = sam_transform(packaged[0][stage])["Resources"]
    mappings = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    mappings = [m for m in mappings if "Fn::Sub" in m["EventSourceArn"]]  # the queues (not the stream)
    assert len(mappings) == 2
    for mapping in mappings:
        queue = {"reconcile": "ReconcileQueue", "poll": "PollQueue"}[
            mapping["EventSourceArn"]["Fn::Sub"].rsplit(":chalice-alipay-", 1)[1].rsplit("-", 1)[0]]
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert mapping["ScalingConfig"]["MaximumConcurrency"] == deploy_resources.WORKER_CONCURRENCY
        function = {"ReconcileQueue": "ReconcileWorker", "PollQueue": "PollWorker"}[queue]
        assert mapping["FunctionName"] == {"Ref": function}
        properties = resources[queue]["Properties"]
        timeout = resources[function]["Properties"]["Timeout"]
        assert properties["VisibilityTimeout"] >= timeout  # a message never reappears while being worked
        assert properties["RedrivePolicy"]["maxReceiveCount"] == next(
            q.max_receives for q in deploy_resources.queues(stage) if q.logical_id == queue)
        assert properties["QueueName"] == f"chalice-alipay-{queue[:-5].lower()}-{stage}"


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


def test_the_policy_files_are_the_ones_deploy_policies_writes():
    """Ten static files (chalice deploy takes files), written from one definition: kept in step."""
    from deploy import policies
    for name, document in policies.files().items():
        assert (ROOT / ".chalice" / name).read_text() == policies.text(document), name
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    for stage in policies.STAGES:
        functions = config["stages"][stage]["lambda_functions"]
        assert {name: f.get("iam_policy_file") for name, f in functions.items() if f.get("iam_policy_file")} == {
            name: policies.file_name(kind, stage) for name, kind in policies.FUNCTIONS.items()}


@pytest.mark.parametrize("stage", STAGES)
def test_every_alarm_reads_a_metric_the_code_emits_and_says_what_to_do_first(packaged, stage):
    from chalicelib import metrics
    from deploy import operations
    template = json.loads((packaged[0][stage] / "sam.json").read_text())
    alarms = {name: r["Properties"] for name, r in template["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert operations.alarm_metric_names(template) <= set(metrics.NAMES)
    assert {"NotifyServerErrors", "Notifications", "Anomalies", "RefundsPendingOverAnHour", "ReconcileErrors"} <= \
        operations.alarm_metric_names(template)
    for name, alarm in alarms.items():
        assert "First" in alarm["AlarmDescription"] and alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
        for query in alarm["Metrics"]:
            dimensions = {d["Name"]: d["Value"] for d in query.get("MetricStat", {}).get("Metric", {}).get("Dimensions", [])}
            if query.get("MetricStat", {}).get("Metric", {}).get("Namespace") == metrics.NAMESPACE:
                assert dimensions["Stage"] == stage and dimensions["Function"] in operations.FUNCTIONS.values()
                unit, extra = metrics.NAMES[query["MetricStat"]["Metric"]["MetricName"]]
                assert set(dimensions) == {"Stage", "Function", *extra}  # exactly the dimensions it is emitted with
    for logical in operations.FUNCTIONS:  # every function: errors, throttles, a log group with a retention
        assert {f"{logical}ErrorsAlarm", f"{logical}ThrottlesAlarm"} <= set(alarms)
        assert template["Resources"][f"{logical}Logs"]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
        variables = template["Resources"][logical]["Properties"]["Environment"]["Variables"]
        assert variables["STAGE"] == stage  # the metrics' Stage dimension
    assert template["Parameters"]["LogRetentionDays"]["Default"] == 90


@pytest.mark.parametrize("stage", STAGES)
def test_order_events_stream_bus_dead_letters_and_narrow_permissions(packaged, stage):
    template = json.loads((packaged[0][stage] / "sam.json").read_text())
    resources = template["Resources"]
    assert resources["OrdersTable"]["Properties"]["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert resources["EventBus"]["Properties"]["Name"] == f"chalice-alipay-{stage}"
    source = resources["PublishEvents"]["Properties"]["Events"]["PublishEventsDynamodbEventSource"]["Properties"]
    assert source["Stream"] == {"Fn::GetAtt": ["OrdersTable", "StreamArn"]}  # not app.py's stand-in
    assert source["FunctionResponseTypes"] == ["ReportBatchItemFailures"] and source["BisectBatchOnFunctionError"]
    assert 0 < source["MaximumRetryAttempts"] <= 10 and source["StartingPosition"] == "TRIM_HORIZON"
    assert source["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["EventsDeadLetterQueue", "Arn"]}
    variables = resources["PublishEvents"]["Properties"]["Environment"]["Variables"]
    assert variables["EVENT_BUS_NAME"] == f"chalice-alipay-{stage}"
    statements = {s["Sid"]: s for s in json.loads((ROOT / ".chalice" / f"policy-events-{stage}.json").read_text())["Statement"]}
    assert statements["OrderEventsBus"]["Resource"] == [f"arn:aws:events:*:*:event-bus/chalice-alipay-{stage}"]
    assert statements["OrderEventsStream"]["Resource"] == [f"arn:aws:dynamodb:*:*:table/alipay-orders-{stage}/stream/*"]
    assert statements["OrderEventsDeadLetter"]["Resource"] == \
        [f"arn:aws:sqs:*:*:chalice-alipay-{stage}-events-dlq"]
    cfn = sam_transform(packaged[0][stage])["Resources"]
    mappings = [r["Properties"] for r in cfn.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"
                and r["Properties"]["FunctionName"] == {"Ref": "PublishEvents"}]
    assert len(mappings) == 1 and mappings[0]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_the_deployment_package_carries_the_api_reference(packaged):
    # GET /openapi.yaml reads it next to app.py: in Lambda only app.py, chalicelib/ and vendor/ exist.
    names = zipfile.ZipFile(packaged[0]["prod"] / "deployment.zip").namelist()
    assert "chalicelib/openapi.yaml" in names
