"""Admin commands: create-table, put-secret, secret-from-files, keygen, token, check, reconcile.

They read the same settings as the app (ORDERS_TABLE, ALIPAY_SECRET_ID) and honour boto3's
AWS_ENDPOINT_URL, so they work against a moto server exactly as against AWS.
"""
import argparse
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
    for line in store.ensure_table(_client("dynamodb"), table):
        print(f"{table}: {line}")
    return 0


def put_secret(args):
    from chalicelib.merchant import MerchantConfigError, parse_secret
    text = pathlib.Path(args.file).read_text(encoding="utf-8")
    try:
        parse_secret(text)
    except MerchantConfigError as error:
        for reason in error.reasons:
            print(f"invalid secret: {reason}", file=sys.stderr)
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
    out.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_path = out / "app_private_key.pem"
    private_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    private_path.chmod(0o600)
    public = keys.spki_base64(key)
    (out / "app_public_key.txt").write_text(public + "\n")
    print(public)
    return 0


def token(args):
    value = secrets.token_urlsafe(32)
    print(json.dumps({"token": value, "sha256": hashlib.sha256(value.encode()).hexdigest()}))
    return 0


def check(args):
    from chalicelib.merchant import MerchantConfigError, parse_secret
    secret_id = settings.load().secret_id
    try:
        text = _client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]
    except Exception as error:  # report any failure to fetch as a reason, not a traceback
        print(f"cannot read secret {secret_id}: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    try:
        config = parse_secret(text)
    except MerchantConfigError as error:
        for reason in error.reasons:
            print(f"problem: {reason}", file=sys.stderr)
        return 1
    mode = "cert mode" if config.alipay_cert_sn else "public key mode"
    print(f"secret {secret_id}: app {config.app_id}, {config.sign_type}, {mode}, "
          f"{len(config.alipay_keys)} Alipay key(s), {len(config.api_token_hashes)} API token(s), "
          f"legacy {'on' if config.legacy_enabled else 'off'}: all well")
    return 0


def reconcile(args):
    from chalicelib.service import Backend, OrderService
    print(json.dumps(OrderService(Backend(), time_left=lambda: 600.0).reconcile(min_age=args.min_age)))
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
    commands.add_parser("token", help="a new merchant API token and its hash").set_defaults(run=token)
    commands.add_parser("check", help="load the secret and check it").set_defaults(run=check)
    rec = commands.add_parser("reconcile", help="one reconciliation pass, as the scheduled function runs it")
    rec.add_argument("--min-age", type=float, default=None, help="query every waiting order at least this old (s)")
    rec.set_defaults(run=reconcile)
    add_secret_from_files(commands)
    args = parser.parse_args(argv)
    return run_readably(args)


if __name__ == "__main__":
    sys.exit(main())
