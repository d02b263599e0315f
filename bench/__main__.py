"""`make bench`: our code against the floor it cannot beat, measured in the same run.

Each section interleaves batches of "ours" and "floor" so that drift on a shared machine hits
both alike; results are ratios, never absolute promises. `make bench` runs every section;
`python -m bench service regression` runs the ones named.
"""
import sys

from bench import events, kms, protocol, regression, scale, service

SECTIONS = {"protocol": protocol.run, "service": service.run, "regression": regression.run, "kms": kms.run,
            "scale": scale.run, "events": events.run}


def main(argv):
    for name in argv[1:] or list(SECTIONS):
        SECTIONS[name]()


if __name__ == "__main__":
    main(sys.argv)
