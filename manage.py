"""Admin commands: create-table, put-secret, secret-from-files, keygen, kms-keygen, token, check,
reconcile, migrate-due, publish-events, deploy-prepare, deploy-finish.

They read the same settings as the app (ORDERS_TABLE, ALIPAY_SECRET_ID) and honour boto3's
AWS_ENDPOINT_URL, so they work against a moto server exactly as against AWS.
"""
import argparse
import contextlib
import hashlib
import json
import pathlib
import secrets
import sys

from chalicelib import settings


def _client(name):
    import boto3
    return boto3.client(name)


def create_table(args):
    from chalicelib import store
    table = settings.load().orders_table
    try:
        done = store.ensure_table(_client("dynamodb"), table)
    except store.TableLayoutError as error:
        print(f"{table}: {error}", file=sys.stderr)
        return 1
    for line in done + _ensure_event_bus():
        print(f"{table}: {line}")
    return 0


# ---- order events (contract, "Order events") ----------------------------------------------------

def _ensure_event_bus():
    """The bus order events go to; in AWS the template makes it, locally this does."""
    from chalicelib.service import publish
    name = settings.load().event_bus_name
    return publish.ensure_bus(_client("events"), name) or [f"event bus {name} exists"]


def publish_events(args):
    """The stream function's work where no Lambda reads the stream: from the oldest record, once
    (exit 1 when some record could not be published) or following new records until Ctrl-C."""
    import streamreader
    from chalicelib import store
    from chalicelib.service import Backend, Context, publish
    ctx = Context(Backend(), time_left=lambda: 600.0)
    try:
        arn = store.latest_stream_arn(_client("dynamodb"), ctx.settings.orders_table)
    except store.NoStream as error:
        print(str(error), file=sys.stderr)
        return 1
    totals = {"records": 0, "events": 0, "failed": 0, "given_up": 0}

    def handle(records):
        outcome = publish.publish(ctx, records)
        for name, count in (("records", outcome.records), ("events", outcome.events), ("failed", len(outcome.failed))):
            totals[name] += count
        if args.follow:
            print(json.dumps(totals), flush=True)
        return outcome.failed

    def give_up(shard, number):
        totals["given_up"] += 1
        print(f"publish-events: record {number} of {shard} still not published after {reader.max_retries} retries; "
              "given up (in AWS the mapping sends its batch's range to the dead-letter queue)", file=sys.stderr,
              flush=True)

    reader = streamreader.StreamReader(_client("dynamodbstreams"), arn, give_up=give_up)
    if not args.follow:
        reader.read_once(handle)
        print(json.dumps(totals))
        return 1 if totals["failed"] else 0
    try:
        reader.follow(handle, poll_seconds=args.poll, on_error=lambda error: print(
            f"publish-events: {type(error).__name__}: {error}; reading again", file=sys.stderr, flush=True))
    except KeyboardInterrupt:
        pass
    return 0


def _parse_and_check(text, prefix):
    """The parsed secret, or None after printing every reason. A KMS app key is asked to sign and
    to show its public key here (once per command, never per request)."""
    from chalicelib.merchant import MerchantConfigError, parse_secret
    from chalicelib.signers import KmsSigner, check_kms_signer
    try:
        config = parse_secret(text, lambda: _client("kms"))
        reasons = []
        if isinstance(config.credentials.signer, KmsSigner):
            reasons = check_kms_signer(config.credentials.signer, config.alipay_keys)
    except MerchantConfigError as error:
        reasons = error.reasons
    for reason in reasons:
        print(f"{prefix}: {reason}", file=sys.stderr)
    return None if reasons else config


def put_secret(args):
    text = pathlib.Path(args.file).read_text(encoding="utf-8")
    if _parse_and_check(text, "invalid secret") is None:
        return 1
    client = _client("secretsmanager")
    secret_id = settings.load().secret_id
    try:
        client.put_secret_value(SecretId=secret_id, SecretString=text)
        print(f"updated secret {secret_id}")
    except client.exceptions.ResourceNotFoundException:
        client.create_secret(Name=secret_id, SecretString=text)
        print(f"created secret {secret_id}")
    return 0


def keygen(args):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from chalicelib.alipay import keys
    out = pathlib.Path(args.out)
    private_path = out / "app_private_key.pem"
    if private_path.exists():  # it may be the key registered at Alipay: never replace it silently
        print(f"{private_path} exists; move it away first (it may be the key Alipay knows)", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    private_path.chmod(0o600)
    public = keys.spki_base64(key)
    (out / "app_public_key.txt").write_text(public + "\n")
    print(public)
    return 0


def kms_keygen(args):
    """An RSA_2048 SIGN_VERIFY key in KMS, named alias/chalice-alipay-STAGE (the alias the stage's
    policies let the signing functions use: deploy/policies.py); prints the one-line public key for
    Alipay's console. An alias that already exists is not moved: its key's public key is printed again."""
    from chalicelib.alipay import keys
    from chalicelib.signers import KEY_SPEC, KEY_USAGE, KmsSigner
    from deploy import resources
    kms = _client("kms")
    alias = resources.key_alias(args.stage)
    try:
        key_id = kms.describe_key(KeyId=alias)["KeyMetadata"]["Arn"]
        print(f"{alias} already names {key_id}: not creating another key", file=sys.stderr)
    except kms.exceptions.NotFoundException:
        key_id = kms.create_key(KeySpec=KEY_SPEC, KeyUsage=KEY_USAGE,
                                Description=f"chalice-alipay {args.stage}: the Alipay app key (RSA2)",
                                Tags=[{"TagKey": "chalice-alipay-stage", "TagValue": args.stage}])["KeyMetadata"]["Arn"]
        kms.create_alias(AliasName=alias, TargetKeyId=key_id)
        print(f"created {key_id} as {alias}", file=sys.stderr)
    try:
        public, _ = KmsSigner(key_id, lambda: kms).public_key()
    except ValueError as error:
        print(f"problem: {error}", file=sys.stderr)
        return 1
    print(f'in the secret: "app_signer": {{"kms_key_id": "{key_id}"}}, "sign_type": "RSA2"', file=sys.stderr)
    print(keys.spki_base64(public))
    return 0


def token(args):
    value = secrets.token_urlsafe(32)
    print(json.dumps({"token": value, "sha256": hashlib.sha256(value.encode()).hexdigest()}))
    return 0


def check(args):
    secret_id = settings.load().secret_id
    try:
        text = _client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]
    except Exception as error:  # report any failure to fetch as a reason, not a traceback
        print(f"cannot read secret {secret_id}: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    config = _parse_and_check(text, "problem")
    if config is None:
        return 1
    mode = "cert mode" if config.alipay_cert_sn else "public key mode"
    signer = getattr(config.credentials.signer, "key_id", None)
    print(f"secret {secret_id}: app {config.app_id}, {config.sign_type}, {mode}, "
          f"app key {'in KMS ' + signer + ' (a test signature verified)' if signer else 'in the secret'}, "
          f"{len(config.alipay_keys)} Alipay key(s), {len(config.api_token_hashes)} API token(s), "
          f"legacy {'on' if config.legacy_enabled else 'off'}: all well")
    return 0


def reconcile(args):
    """One pass as the schedule runs it, then the queue drained into the worker as Lambda would."""
    import app
    import sqsdrain
    from chalicelib.service import Backend, Context, reconcile as passes
    config = settings.load()
    sqsdrain.ensure_queues(config.reconcile_queue)
    summary = passes.run_pass(Context(Backend(), time_left=lambda: 600.0), min_age=args.min_age)
    with contextlib.redirect_stdout(sys.stderr):  # the worker's metric lines: not this command's output
        summary["worked"] = sqsdrain.drain(config.reconcile_queue, app.reconcile_worker)
    print(json.dumps(summary))
    return 0


def migrate_due(args):
    """Orders written under the old `waiting` index onto the sharded `due` index; resumable."""
    import time

    from chalicelib import store
    table, start, total = settings.load().orders_table, json.loads(args.start) if args.start else None, 0
    for moved, start in store.migrate_due(_client("dynamodb"), table, time.time(), start):
        total += moved
        print(json.dumps({"moved": total, "resume_from": start}), flush=True)
    print(f"{table}: {total} order(s) moved; when none are left, delete the index {store.LEGACY_INDEX}")
    return 0


def secret_from_files(args):
    """The secret's JSON from key files, so that nobody escapes a PEM's newlines by hand."""
    from chalicelib.merchant import MerchantConfigError, parse_secret

    def text(path):
        return pathlib.Path(path).read_text(encoding="utf-8").strip()

    secret = {"app_id": args.app_id, "app_private_key": text(args.app_private_key),
              "alipay_public_key": [text(path) for path in args.alipay_public_key],
              "sign_type": args.sign_type, "api_tokens": [value.strip().lower() for value in args.token_hash]}
    if len(secret["alipay_public_key"]) == 1:
        secret["alipay_public_key"] = secret["alipay_public_key"][0]
    optional = {"seller_id": args.seller_id, "partner": args.partner, "md5_key": args.md5_key,
                "aes_key": args.aes_key, "app_cert": args.app_cert and text(args.app_cert),
                "alipay_cert": args.alipay_cert and text(args.alipay_cert),
                "alipay_root_cert": args.alipay_root_cert and text(args.alipay_root_cert)}
    secret.update({name: value for name, value in optional.items() if value})
    document = json.dumps(secret, indent=2) + "\n"
    try:
        parse_secret(document)
    except MerchantConfigError as error:
        for reason in error.reasons:
            print(f"invalid secret: {reason}", file=sys.stderr)
        return 1
    if args.out == "-":
        sys.stdout.write(document)
        return 0
    out = pathlib.Path(args.out)
    out.touch(mode=0o600)  # it holds the private key: readable by its owner only, before a byte is written
    out.chmod(0o600)  # also when it existed already
    out.write_text(document, encoding="utf-8")
    print(f"wrote {out} (keep it out of git); next: .venv/bin/python manage.py put-secret --file {out}")
    return 0


def add_secret_from_files(commands):
    build = commands.add_parser("secret-from-files", help="write the secret's JSON from key files (no PEM escaping)")
    build.add_argument("--app-id", required=True, help="the app's id in Alipay's console, e.g. 2021000000000000")
    build.add_argument("--app-private-key", required=True, metavar="FILE", help="e.g. keys/app_private_key.pem")
    build.add_argument("--alipay-public-key", required=True, metavar="FILE", action="append",
                       help="Alipay's public key (支付宝公钥) as the console shows it; twice while Alipay rotates it")
    build.add_argument("--token-hash", required=True, action="append", metavar="SHA256",
                       help="the sha256 that `manage.py token` printed; repeat for more tokens")
    build.add_argument("--seller-id", help="2088...: every notification must name it")
    build.add_argument("--sign-type", default="RSA2", choices=["RSA2", "RSA"])
    build.add_argument("--partner", help="legacy gateway only, with --md5-key")
    build.add_argument("--md5-key", help="legacy gateway only, with --partner")
    build.add_argument("--app-cert", metavar="FILE", help="cert mode, with --alipay-cert and --alipay-root-cert")
    build.add_argument("--alipay-cert", metavar="FILE")
    build.add_argument("--alipay-root-cert", metavar="FILE")
    build.add_argument("--aes-key", help="base64 AES key, to encrypt biz_content")
    build.add_argument("--out", default="secret.json", help="where to write it ('-': standard output)")
    build.set_defaults(run=secret_from_files)


NO_REGION = ("no AWS region is set: export AWS_DEFAULT_REGION (for example ap-southeast-1), "
             "or set region in ~/.aws/config")
# Asked for a region before they start, so that each says the same sentence, whatever it catches itself.
NEEDS_AWS = {"create-table", "put-secret", "check", "reconcile"}


def run_readably(args):
    """Run a command; an expected failure (no region, no credentials, AWS unreachable or refusing,
    a missing file) is a sentence on stderr and exit 1, not a traceback."""
    import boto3
    from botocore.exceptions import (ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError,
                                     PartialCredentialsError)
    if args.command in NEEDS_AWS and not boto3.session.Session().region_name:
        print(f"{args.command}: {NO_REGION}", file=sys.stderr)
        return 1
    try:
        return args.run(args)
    except NoRegionError:
        reason = NO_REGION
    except (NoCredentialsError, PartialCredentialsError):
        reason = ("no AWS credentials: export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE "
                  "(against a local moto server any values do, with AWS_ENDPOINT_URL pointing at it)")
    except EndpointConnectionError as error:
        reason = f"cannot reach AWS at {error.kwargs.get('endpoint_url')}: is it running, is AWS_ENDPOINT_URL right?"
    except ClientError as error:
        detail = error.response.get("Error", {})
        reason = f"AWS refused {error.operation_name}: {detail.get('Code')}: {detail.get('Message')}"
    except OSError as error:
        reason = f"{error.strerror}: {error.filename}" if error.filename else str(error)
    print(f"{args.command}: {reason}", file=sys.stderr)
    return 1


PROJECT_DIR = pathlib.Path(__file__).resolve().parent


def deploy_prepare(args):
    """Before `chalice deploy`: the table, the queues, the secret (no value), the names in the
    stage's config (deploy/prepare.py)."""
    from chalicelib import store
    from deploy import prepare
    return _deploy_step("deploy-prepare", lambda: prepare.prepare(args.stage, _client, args.project_dir),
                        store.TableLayoutError)


def deploy_finish(args):
    """After `chalice deploy`: the notify Function URL and its permissions, the event source
    mappings' settings, the URLs (deploy/finish.py)."""
    from deploy import finish
    return _deploy_step("deploy-finish", lambda: finish.finish(args.stage, _client, args.project_dir),
                        finish.NotDeployed)


def _deploy_step(command, step, refusal):
    """The step's lines; its refusal (what the admin must do first) as one sentence on stderr, exit 1."""
    try:
        lines = step()
    except refusal as error:
        print(f"{command}: {error}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="manage.py", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("create-table", help="create ORDERS_TABLE, or add what it lacks").set_defaults(run=create_table)
    put = commands.add_parser("put-secret", help="validate a secret file and write it to ALIPAY_SECRET_ID")
    put.add_argument("--file", required=True)
    put.set_defaults(run=put_secret)
    gen = commands.add_parser("keygen", help="a new RSA-2048 app key pair")
    gen.add_argument("--out", default=".")
    gen.set_defaults(run=keygen)
    kms = commands.add_parser("kms-keygen", help="an RSA-2048 app key in AWS KMS for a stage; prints its public key")
    kms.add_argument("--stage", required=True, help="the key's alias is alias/chalice-alipay-STAGE")
    kms.set_defaults(run=kms_keygen)
    commands.add_parser("token", help="a new merchant API token and its hash").set_defaults(run=token)
    commands.add_parser("check", help="load the secret and check it").set_defaults(run=check)
    rec = commands.add_parser("reconcile", help="one reconciliation pass, as the scheduled function runs it")
    rec.add_argument("--min-age", type=float, default=None, help="query every waiting order at least this old (s)")
    rec.set_defaults(run=reconcile)
    mig = commands.add_parser("migrate-due", help="move orders of the old waiting index onto the due index")
    mig.add_argument("--start", default=None, help="resume from this key (JSON, as printed)")
    mig.set_defaults(run=migrate_due)
    pub = commands.add_parser("publish-events", help="publish order events from the table's stream, as the stream function does")
    pub.add_argument("--follow", action="store_true", help="keep publishing new records until Ctrl-C")
    pub.add_argument("--poll", type=float, default=0.5, help="seconds between reads when following")
    pub.set_defaults(run=publish_events)
    add_secret_from_files(commands)
    for name, run, help_text in (
            ("deploy-prepare", deploy_prepare, "before `chalice deploy`: what the stage's functions need"),
            ("deploy-finish", deploy_finish, "after `chalice deploy`: the notify Function URL, mapping settings, URLs")):
        step = commands.add_parser(name, help=help_text)
        step.add_argument("--stage", required=True, choices=("dev", "prod"))
        step.add_argument("--project-dir", default=str(PROJECT_DIR), help="where .chalice/ is (default: here)")
        step.set_defaults(run=run)
    args = parser.parse_args(argv)
    return run_readably(args)


if __name__ == "__main__":
    sys.exit(main())
