"""The merge template for `chalice package --merge-template`, per stage.

What Chalice does not make: the orders table (its definition comes from chalicelib.store, the
one module that knows it), the merchant secret (created empty: its value never enters a
template), a public Function URL for `notify`, and the outputs a merchant needs. The reconciler's
schedule is not here: its Chalice decorator already makes it.

    python -m deploy.template prod > build/merge-prod.json
"""
import json
import sys

from chalicelib import store


def table_name(stage):
    return f"alipay-orders-{stage}"


def secret_name(stage):
    return f"alipay/merchant-{stage}"


def merge_template(stage):
    table = store.table_definition(table_name(stage))
    return {
        "Resources": {
            "OrdersTable": {
                "Type": "AWS::DynamoDB::Table",
                "DeletionPolicy": "Retain",  # orders are records of money: never deleted with the stack
                "UpdateReplacePolicy": "Retain",
                "Properties": dict(
                    table,
                    PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
                    SSESpecification={"SSEEnabled": True},
                    TimeToLiveSpecification={"AttributeName": store.TTL_ATTRIBUTE, "Enabled": True},
                ),
            },
            "MerchantSecret": {
                "Type": "AWS::SecretsManager::Secret",
                "DeletionPolicy": "Retain",
                "UpdateReplacePolicy": "Retain",
                "Properties": {
                    "Name": secret_name(stage),
                    "Description": "chalice-alipay merchant keys: written by `python manage.py put-secret`",
                },
            },
            # SAM makes the URL and the permissions to call it (lambda:InvokeFunctionUrl and, as AWS
            # requires of new URLs since October 2025, lambda:InvokeFunction).
            "Notify": {"Properties": {"FunctionUrlConfig": {"AuthType": "NONE"}}},
        },
        "Outputs": {
            "NotifyFunctionUrl": {"Description": "give this to Alipay as notify_url (NOTIFY_URL)",
                                  "Value": {"Fn::GetAtt": ["NotifyUrl", "FunctionUrl"]}},
            "OrdersTableName": {"Value": {"Ref": "OrdersTable"}},
            "MerchantSecretArn": {"Value": {"Ref": "MerchantSecret"}},
        },
    }


if __name__ == "__main__":
    json.dump(merge_template(sys.argv[1]), sys.stdout, indent=2)
    print()
