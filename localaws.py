"""The local AWS: a moto server, in this process, made to behave as AWS does where the app, the
tests and `make run` depend on it (traps.md): one request at a time, no stream records of a
cancelled transaction. Its state lives in the process: stop and start keep it. Imports nothing
of the project: the benchmark's regression section runs an older checkout's code beside it."""
import logging
import threading


def _cancelled_transactions_write_no_stream_records():
    """Make moto's cancelled TransactWriteItems leave the stream as DynamoDB does: untouched.

    moto applies a transaction's writes one by one, each appending its stream record, and on a
    failed condition puts back a deep copy of the table taken before, with a copy of its stream
    shard. The live shard object, the one every shard iterator handed out so far still reads, is
    orphaned with the cancelled writes' records in it, and the copy numbers the next real record
    with the sequence number of the first of them. A stream reader then publishes an event of a
    change that never happened (a second `order.paid` after a duplicate notification whose guessed
    state lost) and skips the next real record. Here the live shard is kept, cut back to what it
    held before the transaction."""
    from moto.dynamodb.models import DynamoDBBackend
    transact = DynamoDBBackend.transact_write_items
    if getattr(transact, "keeps_stream_shards", False):
        return

    def transact_write_items(self, transact_items):
        before = {name: (table, table.stream_shard, len(table.stream_shard.items))
                  for name, table in self.tables.items() if table.stream_shard is not None}
        try:
            return transact(self, transact_items)
        except Exception:
            for name, (table, shard, length) in before.items():
                restored = self.tables.get(name)
                if restored is not None and restored is not table and restored.stream_shard is not None:
                    del shard.items[length:]
                    shard.table, restored.stream_shard = restored, shard
            raise

    transact_write_items.keeps_stream_shards = True
    DynamoDBBackend.transact_write_items = transact_write_items


class MotoServer:
    """moto's server app behind a lock: real DynamoDB serializes conditional transactions, moto's
    threaded server does not (traps.md); and a cancelled transaction writes no stream record, as in
    DynamoDB. Stop and start keep the data (it lives in this process)."""

    def __init__(self, port=0):
        from moto.server import DomainDispatcherApplication, create_backend_app
        _cancelled_transactions_write_no_stream_records()
        self._app = DomainDispatcherApplication(create_backend_app)
        self._lock = threading.Lock()
        self.port = port
        self._server = None

    def _locked_app(self, environ, start_response):
        with self._lock:
            return [b"".join(self._app(environ, start_response))]

    def start(self):
        from werkzeug.serving import make_server
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # it logs every request otherwise
        self._server = make_server("127.0.0.1", self.port, self._locked_app, threaded=True)
        self.port = self._server.server_port
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"


def aws_environment(moto_url):
    return {"AWS_ENDPOINT_URL": moto_url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}


def kms_app_key(moto_url, alias):
    """`SIGNER=kms`: an RSA_2048 signing key in the moto server's KMS, as `manage.py kms-keygen`
    makes in AWS; the secret's app_signer and the public key the sandbox registers."""
    import base64

    import boto3
    kms = boto3.client("kms", endpoint_url=moto_url)
    arn = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    try:
        kms.create_alias(AliasName=alias, TargetKeyId=arn)
    except kms.exceptions.AlreadyExistsException:  # moto's state is per process, shared by every server
        kms.update_alias(AliasName=alias, TargetKeyId=arn)
    return {"kms_key_id": arn}, base64.b64encode(kms.get_public_key(KeyId=arn)["PublicKey"]).decode()
