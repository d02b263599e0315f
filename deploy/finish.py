"""After `chalice deploy --stage STAGE`: what Chalice cannot make or set
(`manage.py deploy-finish --stage STAGE`). Idempotent: every run checks and sets again.

- the notify function's public Function URL (AuthType NONE; Chalice has no Function URLs,
  aws/chalice#1913) and both permissions AWS requires of a public URL since October 2025:
  lambda:InvokeFunctionUrl with FunctionUrlAuthType NONE, and lambda:InvokeFunction with
  InvokedViaFunctionUrl;
- the workers' event source mapping settings (deploy/resources.py: ReportBatchItemFailures,
  MaximumConcurrency), through UpdateEventSourceMapping;
- NOTIFY_URL in the stage's environment when it has none (the next deploy gives it to the
  functions), and the URLs a merchant needs.
"""
import json
import time

from botocore.exceptions import ClientError

from chalicelib import store
from deploy import aws, resources, stageconfig

# The statement ids the Lambda console gives these two permissions: a URL made there counts too.
URL_PERMISSIONS = {
    "FunctionURLAllowPublicAccess": {"Action": "lambda:InvokeFunctionUrl", "Principal": "*",
                                     "FunctionUrlAuthType": "NONE"},
    "FunctionURLAllowInvokeAction": {"Action": "lambda:InvokeFunction", "Principal": "*",
                                     "InvokedViaFunctionUrl": True},
}
NOTIFY_FUNCTION = "notify"
_SETTLED = ("Enabled", "Disabled")  # UpdateEventSourceMapping refuses a mapping in any other state


class NotDeployed(Exception):
    """What deploy-finish works on is not there: `chalice deploy` has not run (or failed early)."""


def finish(stage, client, project_dir, sleep=time.sleep):
    """`client(name)` gives a boto3 client. Returns the lines to print."""
    lambda_ = client("lambda")
    url, lines = ensure_function_url(lambda_, resources.function_name(stage, NOTIFY_FUNCTION))
    for worker in resources.workers(stage):
        lines += ensure_mapping(lambda_, resources.function_name(stage, worker.function),
                                aws.queue_arn(client("sqs"), worker.queue.name), worker.queue.name, worker.mapping, sleep)
    try:
        stream = store.latest_stream_arn(client("dynamodb"), resources.table_name(stage))
    except store.NoStream:
        raise NotDeployed(f"{resources.table_name(stage)} has no stream: run `manage.py deploy-prepare` first") from None
    dead_letter = aws.queue_arn(client("sqs"), resources.events_dead_letter(stage).name)
    lines += ensure_mapping(lambda_, resources.function_name(stage, resources.PUBLISHER_FUNCTION), stream,
                            "the orders stream", resources.publisher_mapping(dead_letter), sleep)
    return lines + _urls(stage, project_dir, url)


def _function_arn(lambda_, function):
    arn = aws.function_arn(lambda_, function)
    if arn is None:
        raise NotDeployed(f"function {function} does not exist: run `chalice deploy` first")
    return arn


def ensure_function_url(lambda_, function):
    """(url, lines): the function's public URL with both permissions."""
    _function_arn(lambda_, function)
    lines = []
    try:
        config = lambda_.get_function_url_config(FunctionName=function)
        if config["AuthType"] != "NONE":  # Alipay signs its notifications; it cannot sign AWS requests
            config = lambda_.update_function_url_config(FunctionName=function, AuthType="NONE")
            lines.append(f"function URL of {function}: AuthType set to NONE")
    except ClientError as error:
        if aws.code(error) != "ResourceNotFoundException":
            raise
        config = lambda_.create_function_url_config(FunctionName=function, AuthType="NONE")
        lines.append(f"function URL of {function}: created")
    present = _statement_ids(lambda_, function)
    for statement_id, permission in URL_PERMISSIONS.items():
        if statement_id not in present:
            lambda_.add_permission(FunctionName=function, StatementId=statement_id, **permission)
            lines.append(f"function URL of {function}: permission {permission['Action']} added")
    return config["FunctionUrl"], lines or [f"function URL of {function}: up to date"]


def _statement_ids(lambda_, function):
    try:
        policy = json.loads(lambda_.get_policy(FunctionName=function)["Policy"])
    except ClientError as error:
        if aws.code(error) == "ResourceNotFoundException":  # no resource policy yet
            return set()
        raise
    return {statement.get("Sid") for statement in policy.get("Statement", [])}


def ensure_mapping(lambda_, function, source_arn, queue_name, settings, sleep=time.sleep):
    """Put `settings` on the event source mapping that `chalice deploy` made from the source (a
    queue, or the table's stream), named `queue_name` in what it says."""
    function_arn = _function_arn(lambda_, function)
    # By ARN: moto matches FunctionName only as an ARN (AWS takes either).
    mappings = lambda_.list_event_source_mappings(EventSourceArn=source_arn, FunctionName=function_arn)
    if not mappings["EventSourceMappings"]:
        raise NotDeployed(f"no event source mapping from {queue_name} to {function}: run `chalice deploy` first")
    lines = []
    for mapping in mappings["EventSourceMappings"]:
        different = {name: value for name, value in settings.items() if mapping.get(name) != value}
        if not different:
            continue
        for _ in range(60):  # a mapping chalice just made is Creating for a few seconds
            if mapping["State"] in _SETTLED:
                break
            sleep(2)
            mapping = lambda_.get_event_source_mapping(UUID=mapping["UUID"])
        lambda_.update_event_source_mapping(UUID=mapping["UUID"], **different)
        lines.append(f"mapping {queue_name} -> {function}: set {', '.join(sorted(different))}")
    return lines or [f"mapping {queue_name} -> {function}: up to date"]


def _urls(stage, project_dir, notify_url):
    lines, current = [], stageconfig.environment(project_dir, stage).get("NOTIFY_URL")
    if not current:
        stageconfig.set_environment(project_dir, stage, {"NOTIFY_URL": notify_url})
        lines.append(f"config: stage {stage} now sets NOTIFY_URL; deploy once more to give it to the functions "
                     "(until then notify_url is the API's /alipay/notify, which works too)")
    elif current != notify_url:
        lines.append(f"config: stage {stage} sets NOTIFY_URL to something else; left as it is")
    api = stageconfig.api_url(project_dir, stage)
    return lines + [
        f"notify URL (NOTIFY_URL; where Alipay's console asks for a notification address): {notify_url}",
        f"API URL (merchant API; /alipay/return is the browser's return): {api}" if api else
        f"API URL: not recorded (.chalice/deployed/{stage}.json is written by a successful `chalice deploy`)",
    ]
