"""The `chalice deploy` path against a moto server: `make deploy STAGE=dev` in a copy of the
project (its prepare step, then the real `chalice deploy`, offline from the wheelhouse), then
`manage.py deploy-finish` twice, then the README's admin steps with the stage's names.

What moto cannot show, and so these tests do not claim:
- the REST API: moto 5.2.5 cannot import Chalice's Swagger 2.0 definition, so `chalice deploy`
  stops at ImportRestApi after it made the roles, functions, schedule and SQS event source
  mappings; `make deploy` stops there too, and the test runs deploy-finish itself. No API URL is
  recorded (.chalice/deployed/dev.json is written only by a deploy that succeeds).
- anything running: moto invokes nothing without docker; no function is invoked here.
- a mapping in the Creating state (moto's are Enabled at once), the permissions' real form (AWS
  writes them as Conditions; moto keeps the request's fields), an SSE change of an existing table
  (moto ignores UpdateTable's SSESpecification), least privilege (moto checks no resource ARNs),
  AWS's refusal of a second mapping between one queue and one function (moto keeps both: the
  test counts what deploy-prepare deletes instead).
"""
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from deploy import aws, finish, prepare, resources
from tests.deploy.conftest import ROOT
from tests.support import Merchant

STAGE = "dev"
PROJECT_FILES = ["app.py", "chalicelib", "deploy", "manage.py", "Makefile", "requirements.txt",
                 "requirements-dev.txt", "sqsdrain.py", "streamreader.py"]


def copy_project(target, wheelhouse):
    """What `chalice deploy` and the steps read, with timestamps kept (make must not reinstall)."""
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target / name)
    (target / ".chalice").mkdir()
    for path in (ROOT / ".chalice").glob("*.json"):
        shutil.copy2(path, target / ".chalice" / path.name)
    (target / "wheelhouse").symlink_to(wheelhouse)
    return target


def in_project(project, moto, *command, **extra):
    environment = {**os.environ, **moto.environment, **extra}
    return subprocess.run(command, cwd=project, env=environment, capture_output=True, text=True, timeout=600)


def manage(project, moto, *args, **extra):
    return in_project(project, moto, sys.executable, "manage.py", *args, **extra)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, wheelhouse, moto):
    project = copy_project(tmp_path_factory.mktemp("project"), wheelhouse)
    # An index nothing answers on: only the wheelhouse can give pip the Lambda's dependencies.
    made = [in_project(project, moto, "make", "deploy", f"STAGE={STAGE}", f"VENV={ROOT / '.venv'}",
                       PIP_INDEX_URL="http://127.0.0.1:9/simple", PIP_CONFIG_FILE=os.devnull) for _ in range(2)]
    finished = [manage(project, moto, "deploy-finish", "--stage", STAGE) for _ in range(2)]
    return project, made, finished


def test_make_deploy_prepares_then_chalice_deploys_offline_until_moto_lacks_the_rest_api(deployed):
    project, (made, _), _ = deployed
    output = made.stdout + made.stderr
    assert "table alipay-orders-dev: created" in made.stdout
    assert "queue chalice-alipay-reconcile-dev: created" in made.stdout
    assert "secret alipay/merchant-dev: created without a value" in made.stdout
    # The one failure moto causes (see the module's docstring); with the queues made before it,
    # `chalice deploy` gets past the SQS event sources, which fail without them.
    assert made.returncode != 0 and "ImportRestApi" in output, output[-3000:]
    assert "Invalid EventSourceArn" not in output
    zips = list((project / ".chalice" / "deployments").glob("*.zip"))
    assert len(zips) == 1  # made afresh: make deploy removed any cached one
    names = zipfile.ZipFile(zips[0]).namelist()
    assert any(n.startswith("cryptography/") for n in names) and any(n.startswith("urllib3/") for n in names)


def test_make_deploy_again_after_a_failure_midway_prepares_nothing_new_and_chalice_updates(deployed):
    again = deployed[1][1]
    prepared = again.stdout.split("config: stage dev already has the names")[0].splitlines()
    assert [line for line in prepared if line.startswith(("table", "queue", "secret", "event bus"))] == [
        "table alipay-orders-dev: up to date",
        "queue chalice-alipay-reconcile-dev-dead: up to date", "queue chalice-alipay-reconcile-dev: up to date",
        "queue chalice-alipay-poll-dev-dead: up to date", "queue chalice-alipay-poll-dev: up to date",
        "queue chalice-alipay-dev-events-dlq: up to date",
        "secret alipay/merchant-dev: exists, still without a value; write it with `manage.py put-secret`"]
    # The first deploy failed after making the SQS mappings and recorded nothing: they go, and
    # chalice makes them again (AWS would refuse a second pair; moto would keep both).
    assert sum("was not recorded by chalice (a failed deploy left it): deleted" in line
               for line in prepared) == len(resources.workers(STAGE)) + 1  # and the orders stream's
    assert "Updating lambda function: chalice-alipay-dev-notify" in again.stdout
    assert again.returncode != 0 and "ImportRestApi" in again.stdout + again.stderr  # moto's gap, as before


def test_chalice_made_the_functions_their_settings_and_the_schedule(deployed, moto):
    lambda_ = moto.client("lambda")
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"][STAGE]
    for function, settings in config["lambda_functions"].items():
        if function == "api_handler":
            name = f"chalice-alipay-{STAGE}"  # Chalice names the API's function after the app
        else:
            name = resources.function_name(STAGE, function)
        got = lambda_.get_function(FunctionName=name)
        assert got["Configuration"]["Timeout"] == settings["lambda_timeout"], function
        assert got["Configuration"]["Environment"]["Variables"]["ORDERS_TABLE"] == "alipay-orders-dev"
    notify = lambda_.get_function(FunctionName=resources.function_name(STAGE, "notify"))
    assert notify["Concurrency"]["ReservedConcurrentExecutions"] == config["lambda_functions"]["notify"]["reserved_concurrency"]
    rules = moto.client("events").list_rules()["Rules"]
    assert [rule["ScheduleExpression"] for rule in rules] == ["rate(5 minutes)"]


def test_deploy_finish_makes_the_public_notify_url_with_both_permissions(deployed, moto):
    lambda_ = moto.client("lambda")
    name = resources.function_name(STAGE, "notify")
    url = lambda_.get_function_url_config(FunctionName=name)
    assert url["AuthType"] == "NONE"
    statements = json.loads(lambda_.get_policy(FunctionName=name)["Policy"])["Statement"]
    public = {(s["Action"], s["Principal"], s.get("FunctionUrlAuthType"), s.get("InvokedViaFunctionUrl"))
              for s in statements}
    assert public == {("lambda:InvokeFunctionUrl", "*", "NONE", None), ("lambda:InvokeFunction", "*", None, True)}
    first = deployed[2][0].stdout
    assert f"notify URL (NOTIFY_URL; where Alipay's console asks for a notification address): {url['FunctionUrl']}" in first
    assert "API URL: not recorded" in first  # moto's missing REST API: chalice recorded nothing


def test_deploy_finish_sets_what_chalice_cannot_on_each_workers_event_source(deployed, moto):
    lambda_, sqs = moto.client("lambda"), moto.client("sqs")
    for worker in resources.workers(STAGE):
        url = sqs.get_queue_url(QueueName=worker.queue.name)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        [mapping] = lambda_.list_event_source_mappings(EventSourceArn=arn)["EventSourceMappings"]
        assert mapping["FunctionArn"].endswith(f":function:{resources.function_name(STAGE, worker.function)}")
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert mapping["ScalingConfig"] == {"MaximumConcurrency": resources.WORKER_CONCURRENCY}
        assert mapping["BatchSize"] == 10  # Chalice's, untouched


def test_deploy_finish_sets_what_chalice_cannot_on_the_order_events_stream(deployed, moto):
    stream = moto.client("dynamodb").describe_table(TableName="alipay-orders-dev")["Table"]["LatestStreamArn"]
    [mapping] = moto.client("lambda").list_event_source_mappings(EventSourceArn=stream)["EventSourceMappings"]
    assert mapping["FunctionArn"].endswith(f":function:{resources.function_name(STAGE, resources.PUBLISHER_FUNCTION)}")
    url = moto.client("sqs").get_queue_url(QueueName=resources.events_dead_letter(STAGE).name)["QueueUrl"]
    dead = moto.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"] and mapping["BisectBatchOnFunctionError"]
    assert mapping["MaximumRetryAttempts"] == 10 and mapping["DestinationConfig"]["OnFailure"]["Destination"] == dead
    assert moto.client("events").describe_event_bus(Name=resources.event_bus_name(STAGE))["Name"] == "chalice-alipay-dev"


def test_deploy_finish_twice_changes_nothing_the_second_time(deployed):
    project, _, (first, second) = deployed
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "created" in first.stdout and "added" in first.stdout and "set FunctionResponseTypes" in first.stdout
    changes = [line for line in second.stdout.splitlines()
               if not line.endswith("up to date") and not line.startswith(("notify URL", "API URL"))]
    assert changes == []
    # The URL went into the stage's config once (the next deploy gives it to the functions).
    environment = json.loads((project / ".chalice" / "config.json").read_text())["stages"][STAGE]["environment_variables"]
    assert environment["NOTIFY_URL"] in first.stdout and "now sets NOTIFY_URL" in first.stdout
    assert "NOTIFY_URL" not in second.stdout.split("notify URL")[0]


def test_prepare_made_the_table_with_everything_moto_reports(deployed, moto):
    dynamodb = moto.client("dynamodb")
    table = dynamodb.describe_table(TableName="alipay-orders-dev")["Table"]
    assert {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]} == {"pk": "HASH", "sk": "RANGE"}
    assert [index["IndexName"] for index in table["GlobalSecondaryIndexes"]] == ["due"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["SSEDescription"]["Status"] == "ENABLED" and table["SSEDescription"]["SSEType"] == "KMS"
    ttl = dynamodb.describe_time_to_live(TableName="alipay-orders-dev")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "purge_at"}  # never an order's expires_at
    backups = dynamodb.describe_continuous_backups(TableName="alipay-orders-dev")["ContinuousBackupsDescription"]
    assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"


def test_prepare_made_the_queues_as_the_template_defines_them(deployed, moto):
    sqs = moto.client("sqs")
    for worker in resources.workers(STAGE):
        queue, dead = worker.queue, worker.queue.dead_letter
        attributes = sqs.get_queue_attributes(QueueUrl=sqs.get_queue_url(QueueName=queue.name)["QueueUrl"],
                                              AttributeNames=["All"])["Attributes"]
        dead_attributes = sqs.get_queue_attributes(QueueUrl=sqs.get_queue_url(QueueName=dead.name)["QueueUrl"],
                                                   AttributeNames=["All"])["Attributes"]
        assert int(attributes["VisibilityTimeout"]) == queue.visibility_timeout >= 6 * 20
        assert json.loads(attributes["RedrivePolicy"]) == {"deadLetterTargetArn": dead_attributes["QueueArn"],
                                                           "maxReceiveCount": queue.max_receives}
        assert dead_attributes["MessageRetentionPeriod"] == str(14 * 86400)


def test_the_readme_admin_steps_with_the_stage_names(deployed, moto, tmp_path):
    """keygen, token, put-secret, check, create-table, reconcile, as README's deploy section runs
    them against the names the stage's functions read."""
    project = deployed[0]
    names = {"ORDERS_TABLE": "alipay-orders-dev", "ALIPAY_SECRET_ID": "alipay/merchant-dev",
             "RECONCILE_QUEUE": "chalice-alipay-reconcile-dev", "POLL_QUEUE": "chalice-alipay-poll-dev",
             "EVENT_BUS_NAME": "chalice-alipay-dev",
             "ALIPAY_GATEWAY": "http://127.0.0.1:9/gateway.do"}  # nothing listens on port 9
    empty = manage(project, moto, "check", **names)
    assert empty.returncode == 1 and "cannot read secret alipay/merchant-dev" in empty.stderr  # prepare wrote no value
    assert manage(project, moto, "keygen", "--out", str(tmp_path / "keys"), **names).returncode == 0
    token = json.loads(manage(project, moto, "token", **names).stdout)
    secret = dict(Merchant().secret, app_private_key=(tmp_path / "keys" / "app_private_key.pem").read_text(),
                  api_tokens=[token["sha256"]])
    (tmp_path / "secret.json").write_text(json.dumps(secret))
    put = manage(project, moto, "put-secret", "--file", str(tmp_path / "secret.json"), **names)
    assert put.returncode == 0 and put.stdout.strip() == "updated secret alipay/merchant-dev", put.stderr
    checked = manage(project, moto, "check", **names)
    assert checked.returncode == 0 and "all well" in checked.stdout, checked.stderr
    table = manage(project, moto, "create-table", **names)
    assert table.stdout.splitlines() == ["alipay-orders-dev: table is up to date",  # prepare left nothing to add
                                         "alipay-orders-dev: event bus chalice-alipay-dev exists"]
    again = manage(project, moto, "deploy-prepare", "--stage", STAGE)
    assert "secret alipay/merchant-dev: exists (its value is not read here)" in again.stdout
    reconciled = manage(project, moto, "reconcile", **names)
    assert reconciled.returncode == 0, reconciled.stderr
    assert json.loads(reconciled.stdout)["worked"] == 0


def test_prepare_leaves_the_mappings_chalice_recorded(deployed, moto):
    """After a successful deploy (its record written as chalice writes it: resource_type sqs_event
    for a queue's mapping, dynamodb_event for the stream's; event_uuid), prepare deletes nothing."""
    project, lambda_, sqs = deployed[0], moto.client("lambda"), moto.client("sqs")
    # The mappings as chalice makes them (an earlier test's prepare, without a record, removed them).
    stream = moto.client("dynamodb").describe_table(TableName=resources.table_name(STAGE))["Table"]["LatestStreamArn"]
    sources = [(worker.function, aws.queue_arn(sqs, worker.queue.name)) for worker in resources.workers(STAGE)]
    for function, source in sources + [(resources.PUBLISHER_FUNCTION, stream)]:
        arn = aws.function_arn(lambda_, resources.function_name(STAGE, function))  # chalice names it by ARN
        if not lambda_.list_event_source_mappings(EventSourceArn=source, FunctionName=arn)["EventSourceMappings"]:
            lambda_.create_event_source_mapping(EventSourceArn=source, FunctionName=arn, StartingPosition="TRIM_HORIZON")
    mappings = lambda_.list_event_source_mappings()["EventSourceMappings"]
    before = {m["UUID"] for m in mappings}
    kinds = {m["UUID"]: "dynamodb_event" if ":dynamodb:" in m["EventSourceArn"] else "sqs_event" for m in mappings}
    assert sorted(kinds.values()) == ["dynamodb_event", "sqs_event", "sqs_event"]
    record = {"resources": [{"name": f"{uuid}-event-source", "resource_type": kind, "event_uuid": uuid}
                            for uuid, kind in kinds.items()], "schema_version": "2.0", "backend": "api"}
    (project / ".chalice" / "deployed").mkdir(exist_ok=True)
    (project / ".chalice" / "deployed" / f"{STAGE}.json").write_text(json.dumps(record))
    lines = prepare.prepare(STAGE, moto.client, project, sleep=lambda seconds: None)
    assert not [line for line in lines if line.startswith("mapping")]
    assert {m["UUID"] for m in lambda_.list_event_source_mappings()["EventSourceMappings"]} == before
    (project / ".chalice" / "deployed" / f"{STAGE}.json").unlink()


def test_deploy_finish_before_chalice_deploy_says_so(deployed, moto):
    done = manage(deployed[0], moto, "deploy-finish", "--stage", "prod")
    assert done.returncode == 1
    assert "function chalice-alipay-prod-notify does not exist: run `chalice deploy` first" in done.stderr


def test_prepare_brings_an_older_table_and_default_queues_up_and_converges(deployed, moto):
    """A stage whose table `manage.py create-table` made and whose queues `manage.py reconcile`
    made with SQS's defaults. Moto ignores UpdateTable's SSESpecification, so there the switch
    to KMS is asked again on every run; AWS would report it."""
    dynamodb, sqs = moto.client("dynamodb"), moto.client("sqs")
    from chalicelib import store
    store.ensure_table(dynamodb, "alipay-orders-prod")
    sqs.create_queue(QueueName="chalice-alipay-poll-prod")
    runs = [prepare.prepare("prod", moto.client, deployed[0], sleep=lambda seconds: None) for _ in range(2)]
    assert "table alipay-orders-prod: point-in-time recovery enabled" in runs[0]
    assert "table alipay-orders-prod: encryption switched to the AWS managed KMS key" in runs[0]
    assert "queue chalice-alipay-poll-prod: set RedrivePolicy, VisibilityTimeout" in runs[0]
    assert [line for line in runs[1] if "up to date" not in line and "KMS" not in line] == [
        "secret alipay/merchant-prod: exists, still without a value; write it with `manage.py put-secret`",
        "config: stage prod already has the names"]
    url = sqs.get_queue_url(QueueName="chalice-alipay-poll-prod")["QueueUrl"]
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])["Attributes"] == {
        "VisibilityTimeout": "120"}


def test_a_stream_added_to_the_table_definition_reaches_the_stage_environment(moto):
    """The hook for stream consumers (`on_dynamodb_record` needs the ARN when app.py is imported):
    a Table with a stream view type gets its stream, and its ARN comes back for the stage config."""
    from chalicelib import store
    table = resources.Table(name="orders-streamed", definition=store.table_definition("orders-streamed"),
                            stream_view_type="NEW_AND_OLD_IMAGES")
    dynamodb = moto.client("dynamodb")
    lines, environment = prepare.ensure_table(dynamodb, table, sleep=lambda seconds: None)
    arn = dynamodb.describe_table(TableName="orders-streamed")["Table"]["LatestStreamArn"]
    assert environment == {"ORDERS_STREAM_ARN": arn}
    assert prepare.ensure_table(dynamodb, table) == (["table orders-streamed: up to date"], {"ORDERS_STREAM_ARN": arn})


def test_finish_names_are_the_ones_chalice_uses():
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    assert config["app_name"] == resources.APP_NAME
    functions = set(config["stages"][STAGE]["lambda_functions"])
    assert {finish.NOTIFY_FUNCTION} | {worker.function for worker in resources.workers(STAGE)} <= functions
    for stage in ("dev", "prod"):
        environment = config["stages"][stage]["environment_variables"]
        assert {name: environment[name] for name in resources.environment(stage)} == resources.environment(stage)


def test_make_deploy_wants_the_stage_named(deployed, moto):
    done = in_project(deployed[0], moto, "make", "deploy", f"VENV={ROOT / '.venv'}")
    assert done.returncode == 2 and "make deploy STAGE=dev|prod" in done.stderr
    assert "deploy-prepare" not in done.stdout  # stopped before anything ran


def test_the_api_url_is_read_as_chalice_records_it(tmp_path):
    """The record `chalice deploy` writes on success (chalice/deploy/planner.py, RecordResourceVariable
    of rest_api_url), which moto's missing REST API never lets it write above."""
    from deploy import stageconfig
    (tmp_path / ".chalice" / "deployed").mkdir(parents=True)
    assert stageconfig.api_url(tmp_path, "prod") is None
    record = {"resources": [{"name": "api_handler", "resource_type": "lambda_function", "lambda_arn": "arn:..."},
                            {"name": "rest_api", "resource_type": "rest_api", "rest_api_id": "abc123",
                             "rest_api_url": "https://abc123.execute-api.us-east-1.amazonaws.com/api/"}],
              "schema_version": "2.0", "backend": "api"}
    (tmp_path / ".chalice" / "deployed" / "prod.json").write_text(json.dumps(record))
    assert stageconfig.api_url(tmp_path, "prod") == "https://abc123.execute-api.us-east-1.amazonaws.com/api/"
