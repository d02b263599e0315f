"""The CloudFormation path against a moto server: `make package`'s template, SAM-transformed, created
as a stack, then deleted; what resolves is read back through the services' own APIs.

Left out, because moto 5.2.5 cannot create them (test_package.py checks them in the template):
- the REST API (`AWS::ApiGateway::RestApi` with a Swagger 2.0 `Body`), its Deployment and Stage,
  the API function's invoke permission (its SourceArn names the API) and the `EndpointURL` and
  `RestAPIId` outputs;
- the notify Function URL (`AWS::Lambda::Url`) and its `NotifyFunctionUrl` output. Its two
  permissions stay in: moto creates them.
Also what moto does not do, so not claimed: it skips the secret (`AWS::SecretsManager::Secret`)
without a word, ignores TTL, point-in-time recovery and SSE in the table's properties, and
ignores `DependsOn` (the queues are put first so that the event source mappings find them).
Nothing is invoked.
"""
import ast
import json

import pytest

from deploy import resources
from tests.deploy.conftest import ROOT, sam_transform

STAGE = "prod"
MOTO_CANNOT_CREATE = ("AWS::ApiGateway::RestApi", "AWS::ApiGateway::Deployment", "AWS::ApiGateway::Stage",
                      "AWS::Lambda::Url")
MOTO_CANNOT_OUTPUT = ("RestAPIId", "EndpointURL", "NotifyFunctionUrl")


def for_moto(template):
    kept = {name: resource for name, resource in template["Resources"].items()
            if resource["Type"] not in MOTO_CANNOT_CREATE and name != "APIHandlerInvokePermission"}
    queues_first = {name: r for name, r in kept.items() if r["Type"] == "AWS::SQS::Queue"}
    queues_first.update(kept)
    outputs = {name: output for name, output in template["Outputs"].items() if name not in MOTO_CANNOT_OUTPUT}
    return dict(template, Resources=queues_first, Outputs=outputs)


@pytest.fixture(scope="module")
def stack(packaged, moto):
    path = packaged[0][STAGE]
    template = sam_transform(path)  # its functions' code is s3://artifacts/deployment.zip
    # Left out with the API: the only permission that names it.
    assert "RestAPI" in json.dumps(template["Resources"]["APIHandlerInvokePermission"]["Properties"]["SourceArn"])
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="artifacts")
    s3.upload_file(str(path / "deployment.zip"), "artifacts", "deployment.zip")
    cloudformation = moto.client("cloudformation")
    cloudformation.create_stack(StackName="chalice-alipay-prod", TemplateBody=json.dumps(for_moto(template)),
                                Capabilities=["CAPABILITY_IAM"])
    described = cloudformation.describe_stacks(StackName="chalice-alipay-prod")["Stacks"][0]
    physical = {r["LogicalResourceId"]: r["PhysicalResourceId"]
                for r in cloudformation.list_stack_resources(StackName="chalice-alipay-prod")["StackResourceSummaries"]
                if r.get("LogicalResourceId")}
    return template, described, physical


def test_the_stack_is_created(stack, moto):
    _, described, physical = stack
    assert described["StackStatus"] == "CREATE_COMPLETE", described.get("StackStatusReason")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described["Outputs"]}
    assert outputs["OrdersTableName"] == "alipay-orders-prod"
    # moto skipped the secret (it only warns, in its own process): nothing is claimed about it.
    assert "MerchantSecret" not in physical and moto.client("secretsmanager").list_secrets()["SecretList"] == []


def test_the_functions_with_their_settings_roles_and_policies(stack, moto):
    template, _, physical = stack
    lambda_, iam = moto.client("lambda"), moto.client("iam")
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    settings = config["stages"][STAGE]["lambda_functions"]
    logical = {"APIHandler": "api_handler", "Notify": "notify", "Reconcile": "reconcile",
               "ReconcileWorker": "reconcile_worker", "PollWorker": "poll_worker"}
    for name, function in logical.items():
        got = lambda_.get_function(FunctionName=physical[name])
        configuration = got["Configuration"]
        assert configuration["Timeout"] == settings[function]["lambda_timeout"], name
        assert configuration["MemorySize"] == 512
        assert configuration["Environment"]["Variables"]["ORDERS_TABLE"] == "alipay-orders-prod"
        assert configuration["Environment"]["Variables"]["ALIPAY_SECRET_ID"] == "alipay/merchant-prod"
        role = template["Resources"][name]["Properties"]["Role"]["Fn::GetAtt"][0]
        assert configuration["Role"].endswith(f":role/{physical[role]}"), name
        [policy_name] = iam.list_role_policies(RoleName=physical[role])["PolicyNames"]
        document = iam.get_role_policy(RoleName=physical[role], PolicyName=policy_name)["PolicyDocument"]
        if isinstance(document, str):  # moto's CloudFormation stores the dict's Python repr, not JSON
            document = ast.literal_eval(document)
        # the hand-written least-privilege policy of .chalice/, as written
        assert document == template["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"], name
    notify = lambda_.get_function(FunctionName=physical["Notify"])
    assert notify["Concurrency"]["ReservedConcurrentExecutions"] == settings["notify"]["reserved_concurrency"]


def test_the_notify_url_permissions_resolve(stack, moto):
    _, _, physical = stack
    statements = json.loads(moto.client("lambda").get_policy(FunctionName=physical["Notify"])["Policy"])["Statement"]
    assert {(s["Action"], s["Principal"], s.get("FunctionUrlAuthType"), s.get("InvokedViaFunctionUrl"))
            for s in statements} == {("lambda:InvokeFunctionUrl", "*", "NONE", None),
                                     ("lambda:InvokeFunction", "*", None, True)}


def test_the_schedule_runs_the_pass_every_five_minutes(stack, moto):
    _, _, physical = stack
    events = moto.client("events")
    rule = events.describe_rule(Name=physical["ReconcileReconcileEvent"])
    assert rule["ScheduleExpression"] == "rate(5 minutes)" and rule["State"] == "ENABLED"
    [target] = events.list_targets_by_rule(Rule=physical["ReconcileReconcileEvent"])["Targets"]
    assert target["Arn"].endswith(f":function:{physical['Reconcile']}")


def test_the_workers_queues_and_event_sources(stack, moto):
    _, _, physical = stack
    sqs, lambda_ = moto.client("sqs"), moto.client("lambda")
    for worker in resources.workers(STAGE):
        attributes = sqs.get_queue_attributes(QueueUrl=physical[worker.queue.logical_id], AttributeNames=["All"])["Attributes"]
        dead = sqs.get_queue_attributes(QueueUrl=physical[worker.queue.dead_letter.logical_id],
                                        AttributeNames=["All"])["Attributes"]
        assert attributes["QueueArn"].endswith(f":{worker.queue.name}")
        assert int(attributes["VisibilityTimeout"]) == worker.queue.visibility_timeout
        assert json.loads(attributes["RedrivePolicy"]) == {"deadLetterTargetArn": dead["QueueArn"],
                                                           "maxReceiveCount": worker.queue.max_receives}
        [mapping] = lambda_.list_event_source_mappings(EventSourceArn=attributes["QueueArn"])["EventSourceMappings"]
        assert mapping["FunctionArn"].endswith(f":function:{physical[worker.logical_id]}")
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert mapping["ScalingConfig"] == {"MaximumConcurrency": resources.WORKER_CONCURRENCY}


def test_the_table_keys_and_index(stack, moto):
    table = moto.client("dynamodb").describe_table(TableName="alipay-orders-prod")["Table"]
    assert {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]} == {"pk": "HASH", "sk": "RANGE"}
    [index] = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "due" and index["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    assert {k["AttributeName"]: k["KeyType"] for k in index["KeySchema"]} == {"due_shard": "HASH", "due_at": "RANGE"}
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


def test_deleting_the_stack_keeps_the_table(stack, moto):
    """Last in this module: the orders are records of money (DeletionPolicy Retain)."""
    _, _, physical = stack
    moto.client("cloudformation").delete_stack(StackName="chalice-alipay-prod")
    assert "alipay-orders-prod" in moto.client("dynamodb").list_tables()["TableNames"]
    functions = [f["FunctionName"] for f in moto.client("lambda").list_functions()["Functions"]]
    assert physical["Notify"] not in functions  # the stack's other resources did go
