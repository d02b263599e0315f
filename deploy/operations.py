"""What an on-call engineer gets with the stack: alarms to an SNS topic (e-mail a parameter), a
CloudWatch dashboard, and log groups with a retention. Every custom metric named here is one the
code emits (chalicelib.metrics.NAMES; a test checks). Each alarm's description says what to look
at first (README, "Operations").
"""
import json

from chalicelib import metrics

# logical id in the template -> the Chalice function name (the metrics' Function dimension)
FUNCTIONS = {"APIHandler": "api_handler", "Notify": "notify", "Reconcile": "reconcile",
             "ReconcileWorker": "reconcile_worker", "PollWorker": "poll_worker", "PublishEvents": "publish_events"}
NOTIFY_PATHS = ("notify", "api_handler")  # the Function URL, and the API route
NOTIFY_TIMEOUT_MS = 10_000
MONEY_ANOMALIES = ("amount_mismatch", "app_id_mismatch", "seller_mismatch", "paid_after_local_close")


def parameters():
    return {
        "AlarmEmail": {"Type": "String", "Default": "",
                       "Description": "who is told when an alarm fires (empty: the topic has no subscriber)"},
        "LogRetentionDays": {"Type": "Number", "Default": 90, "Description": "days the functions' logs are kept"},
    }


def resources(stage, dead_letter_queues):
    topic = {"Ref": "AlarmTopic"}
    found = {
        "AlarmTopic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": f"chalice-alipay-{stage}-alarms"}},
        "AlarmSubscription": {"Type": "AWS::SNS::Subscription", "Condition": "HasAlarmEmail", "Properties": {
            "TopicArn": topic, "Protocol": "email", "Endpoint": {"Ref": "AlarmEmail"}}},
        "Dashboard": {"Type": "AWS::CloudWatch::Dashboard", "Properties": {
            "DashboardName": f"chalice-alipay-{stage}", "DashboardBody": {"Fn::Sub": json.dumps(dashboard(stage))}}},
    }
    for logical, function in FUNCTIONS.items():
        found[f"{logical}Logs"] = {"Type": "AWS::Logs::LogGroup", "Properties": {
            "LogGroupName": {"Fn::Sub": f"/aws/lambda/${{{logical}}}"}, "RetentionInDays": {"Ref": "LogRetentionDays"}}}
        for name, first in (("Errors", "its log group: the traceback of the failed invocation (search request_id)"),
                            ("Throttles", "the account's Lambda concurrency and this function's reserved concurrency")):
            found[f"{logical}{name}Alarm"] = _alarm(
                topic, f"{function}: Lambda {name.lower()}. First check {first}.",
                _aws_metric("AWS/Lambda", name, {"FunctionName": {"Ref": logical}}, "Sum"), 1)
    found["NotifyDurationAlarm"] = _alarm(
        topic, "notify p99 duration is close to its 10 s timeout: Alipay may see timeouts and retry. First check "
               "DynamoDB and Secrets Manager latency (GatewayLatency is not on this path) and cold starts.",
        _aws_metric("AWS/Lambda", "Duration", {"FunctionName": {"Ref": "Notify"}}, None, "p99"), 0.8 * NOTIFY_TIMEOUT_MS)
    found["NotifyServerErrorsAlarm"] = _alarm(
        topic, "notifications answered 5xx: Alipay retries them, but nothing is applied meanwhile. First check the "
               "notify logs for outcome unavailable (DynamoDB or the secret) or internal_error (request_id).",
        _sum(stage, "NotifyServerErrors", {}, NOTIFY_PATHS), 1)
    found["SignatureFailuresAlarm"] = _alarm(
        topic, "many notifications with a bad signature: an attack, or the Alipay public key in the secret is "
               "wrong or was rotated. First run `manage.py check` and compare the key with Alipay's console.",
        _sum(stage, "Notifications", {"Outcome": "bad_signature"}, NOTIFY_PATHS), 20)
    for reason in MONEY_ANOMALIES:
        found[f"Anomaly{''.join(p.capitalize() for p in reason.split('_'))}Alarm"] = _alarm(
            topic, f"anomaly {reason}: Alipay reported something about money that contradicts an order. First read "
                   f"GET /orders/{{out_trade_no}}/events of the order in the log line (event anomaly, reason {reason}).",
            _sum(stage, "Anomalies", {"Reason": reason}, tuple(FUNCTIONS.values())), 1)
    found["RefundsPendingAlarm"] = _alarm(
        topic, "a refund's outcome has been unknown for over an hour. First look at the refund's order events and "
               "the reconcile_worker logs for that out_request_no; compare with Alipay's merchant console.",
        _sum(stage, "RefundsPendingOverAnHour", {}, ("reconcile_worker",)), 1)
    found["ReconcileOrderErrorsAlarm"] = _alarm(
        topic, "the reconciler failed on some orders. First search the reconcile_worker logs for "
               "event reconcile, outcome error: the order number and the reason are there.",
        _sum(stage, "ReconcileErrors", {}, ("reconcile_worker",)), 1)
    for queue in dead_letter_queues:
        found[f"{queue}Alarm"] = _alarm(
            topic, f"messages in {queue}: a worker gave up on them after several receives. First read one message "
                   "(the order number), fix the cause, then move them back (README, Operations: replay).",
            _aws_metric("AWS/SQS", "ApproximateNumberOfMessagesVisible",
                        {"QueueName": {"Fn::GetAtt": [queue, "QueueName"]}}, "Maximum"), 1)
    return found


def conditions():
    return {"HasAlarmEmail": {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]}}


def alarm_metric_names(template):
    """The custom metrics the template's alarms read (for the cross-check against the code)."""
    names = set()
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            for query in resource["Properties"].get("Metrics", []):
                metric = query.get("MetricStat", {}).get("Metric", {})
                if metric.get("Namespace") == metrics.NAMESPACE:
                    names.add(metric["MetricName"])
    return names


def _alarm(topic, description, queries, threshold):
    return {"Type": "AWS::CloudWatch::Alarm", "Properties": {
        "AlarmDescription": description, "AlarmActions": [topic], "OKActions": [topic],
        "ComparisonOperator": "GreaterThanOrEqualToThreshold", "Threshold": threshold, "EvaluationPeriods": 1,
        "TreatMissingData": "notBreaching", "Metrics": queries}}


def _aws_metric(namespace, name, dimensions, stat, extended=None):
    return [{"Id": "m0", "ReturnData": True, "MetricStat": {
        "Metric": {"Namespace": namespace, "MetricName": name,
                   "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()]},
        "Period": 300, "Stat": extended or stat}}]


def _sum(stage, name, dimensions, functions):
    """The sum over the functions that emit it (each function is its own dimension value)."""
    queries = [{"Id": f"m{i}", "ReturnData": False, "MetricStat": {
        "Metric": {"Namespace": metrics.NAMESPACE, "MetricName": name,
                   "Dimensions": [{"Name": k, "Value": v} for k, v in
                                  dict({"Stage": stage, "Function": function}, **dimensions).items()]},
        "Period": 300, "Stat": "Sum"}} for i, function in enumerate(functions)]
    expression = "+".join(f"FILL(m{i},0)" for i in range(len(functions)))
    return queries + [{"Id": "total", "Expression": expression, "Label": name, "ReturnData": True}]


def dashboard(stage):
    def custom(name, function, **dimensions):
        return [metrics.NAMESPACE, name, "Stage", stage, "Function", function,
                *[part for item in dimensions.items() for part in item]]

    def widget(title, series, stat="Sum", x=0, y=0):
        return {"type": "metric", "x": x, "y": y, "width": 12, "height": 6, "properties": {
            "title": title, "region": "${AWS::Region}", "stat": stat, "period": 60, "metrics": series}}
    outcomes = ("applied", "duplicate", "stale", "bad_signature", "malformed", "unavailable")
    return {"widgets": [
        widget("Payments per minute", [custom("Payments", f) for f in ("notify", "api_handler", "reconcile_worker",
                                                                       "poll_worker")], x=0, y=0),
        widget("Notification outcomes", [custom("Notifications", "notify", Outcome=o) for o in outcomes], x=12, y=0),
        widget("Gateway latency p99 (ms)", [custom("GatewayLatency", "api_handler", Method=m) for m in
                                            ("alipay.trade.precreate", "alipay.trade.query", "alipay.trade.refund",
                                             "alipay.trade.pay")], stat="p99", x=0, y=6),
        widget("Gateway answers by code", [custom("GatewayCalls", "api_handler", Method="alipay.trade.refund", Code=c)
                                           for c in ("10000", "40004", "20000", "no_answer", "bad_signature")],
               x=12, y=6),
        widget("Reconciler: due, queued, processed, errors",
               [custom("ReconcileDue", "reconcile"), custom("ReconcileQueued", "reconcile"),
                custom("ReconcileProcessed", "reconcile_worker"), custom("ReconcileErrors", "reconcile_worker")],
               x=0, y=12),
        widget("Events published", [custom("EventsPublished", "publish_events"),
                                     custom("EventsFailed", "publish_events")], x=12, y=12),
    ]}
