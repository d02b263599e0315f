"""The AWS lookups both deploy steps make: deploy/prepare.py before `chalice deploy`,
deploy/finish.py after it."""
from botocore.exceptions import ClientError


def code(error):
    return error.response["Error"]["Code"]


def queue_arn(sqs, name):
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def function_arn(lambda_, function):
    """The function's ARN, or None when `chalice deploy` has not made it."""
    try:
        return lambda_.get_function(FunctionName=function)["Configuration"]["FunctionArn"]
    except ClientError as error:
        if code(error) == "ResourceNotFoundException":
            return None
        raise
