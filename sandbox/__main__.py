"""python -m sandbox [serve] | trigger | reset  (see --help)."""
import argparse
import json
import logging
import sys
import threading
import urllib.request

from werkzeug.serving import make_server

from sandbox.server import Sandbox

SCENARIOS = ["duplicate", "out_of_order", "delayed", "never_sent", "bad_signature", "wrong_amount", "wrong_app_id",
             "gbk", "extra_params", "late_finished", "partial_refund", "full_refund"]


def serve(args):
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


def post(url, payload):
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


def trigger(args):
    options = dict(item.split("=", 1) for item in args.option)
    print(post(f"{args.url}/sandbox/trigger", {"scenario": args.scenario, "out_trade_no": args.out_trade_no, **options}))
    return 0


def reset(args):
    print(post(f"{args.url}/sandbox/reset", {}))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sandbox")
    commands = parser.add_subparsers(dest="command", required=True)
    s = commands.add_parser("serve", help="run the sandbox")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8001)
    s.add_argument("--state", default=".sandbox/state.json", help="state file ('' keeps it in memory)")
    s.add_argument("--time-factor", type=float, default=1.0, help="scales Alipay's retry schedule (0.001: seconds)")
    s.set_defaults(run=serve)
    t = commands.add_parser("trigger", help="make Alipay misbehave for one order")
    t.add_argument("scenario", choices=SCENARIOS)
    t.add_argument("out_trade_no")
    t.add_argument("--url", default="http://127.0.0.1:8001")
    t.add_argument("--option", action="append", default=[], help="k=v, e.g. refund_amount=1.00 or seconds=5")
    t.set_defaults(run=trigger)
    r = commands.add_parser("reset", help="forget trades and notifications")
    r.add_argument("--url", default="http://127.0.0.1:8001")
    r.set_defaults(run=reset)
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0].startswith("-"):
        argv = ["serve", *argv]  # `python -m sandbox` serves
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
