"""python -m sandbox [serve] | trigger | reset | clock | rotate-cert  (see --help)."""
import argparse
import json
import logging
import sys
import threading
import urllib.error
import urllib.request

from sandbox.scenarios import SCENARIOS

DEFAULT_URL = "http://127.0.0.1:8001"


def serve(args):
    from werkzeug.serving import make_server

    from sandbox.server import Sandbox
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    sandbox = Sandbox(args.state, time_factor=args.time_factor)
    server = make_server(args.host, args.port, sandbox, threaded=True)
    sandbox.public_url = f"http://{args.host}:{server.server_port}"
    threading.Thread(target=sandbox.run_notifier, daemon=True).start()
    print(f"Alipay sandbox on http://{args.host}:{server.server_port}/gateway.do (state: {args.state or 'memory'})",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
    return 0


class Refused(Exception):
    pass


def post(url, payload):
    """The sandbox's JSON answer; Refused with its code and message when it says no."""
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read().decode())
    except urllib.error.HTTPError as error:
        body = error.read().decode("utf-8", "replace")
        try:
            fields = json.loads(body)
            raise Refused(f"{fields['sub_code']}: {fields['sub_msg']} ({fields['code']})") from None
        except (ValueError, KeyError, TypeError):
            raise Refused(f"HTTP {error.code}: {body[:200]}") from None
    except (urllib.error.URLError, OSError) as error:
        raise Refused(f"no sandbox at {url}: {getattr(error, 'reason', error)}") from None


def option(text):
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not k=v")
    return tuple(text.split("=", 1))


def trigger(args):
    options = dict(args.option)
    for name in ("amount", "out_request_no", "times", "seconds"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    return post(f"{args.url}/sandbox/trigger", {"scenario": args.scenario, "out_trade_no": args.out_trade_no,
                                                **options})


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sandbox", description="A local Alipay (never deployed).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = commands.add_parser("serve", help="run the sandbox (the default command)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8001)
    s.add_argument("--state", default=".sandbox/state.json", help="state file ('' keeps it in memory)")
    s.add_argument("--time-factor", type=float, default=1.0, help="scales Alipay's retry schedule (0.001: seconds)")
    s.set_defaults(run=serve)
    scenarios = "\n".join(f"  {name:15} {what}" for name, what in SCENARIOS.items())
    t = commands.add_parser("trigger", help="make Alipay act or misbehave for one trade",
                            formatter_class=argparse.RawDescriptionHelpFormatter, epilog="scenarios:\n" + scenarios)
    t.add_argument("scenario", choices=list(SCENARIOS), metavar="SCENARIO")
    t.add_argument("out_trade_no", metavar="OUT_TRADE_NO")
    t.add_argument("--amount", help="console_refund / partial_refund: the amount, e.g. 5.00")
    t.add_argument("--out-request-no", dest="out_request_no", help="the refund's out_request_no")
    t.add_argument("--times", help="duplicate: how many deliveries")
    t.add_argument("--seconds", help="delayed: how long the notification waits")
    t.add_argument("--option", action="append", default=[], type=option, help="any other k=v")
    t.set_defaults(run=trigger)
    r = commands.add_parser("reset", help="forget trades and notifications (registrations stay)")
    r.set_defaults(run=lambda a: post(f"{a.url}/sandbox/reset", {}))
    c = commands.add_parser("clock", help="move the trades' time forward (expiry of unpaid trades)")
    c.add_argument("seconds", type=float)
    c.set_defaults(run=lambda a: post(f"{a.url}/sandbox/clock", {"advance_seconds": a.seconds}))
    k = commands.add_parser("rotate-cert", help="certificate mode: Alipay switches to a new certificate")
    k.set_defaults(run=lambda a: post(f"{a.url}/sandbox/rotate_alipay_cert", {}))
    for command in (t, r, c, k):
        command.add_argument("--url", default=DEFAULT_URL, help=f"the sandbox (default {DEFAULT_URL})")
    argv = sys.argv[1:] if argv is None else argv
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["serve", *argv]  # `python -m sandbox` serves
    args = parser.parse_args(argv)
    try:
        result = args.run(args)
    except Refused as error:
        print(f"sandbox: {error}", file=sys.stderr)
        return 1
    if isinstance(result, dict):
        print(json.dumps(result, ensure_ascii=False))
        return 0
    return result


if __name__ == "__main__":
    sys.exit(main())
