"""`make bench`: our code against the floor it cannot beat, measured in the same run.

Each section interleaves batches of "ours" and "floor" so that drift on a shared machine hits
both alike; results are ratios, never absolute promises.
"""
import sys

from bench import protocol


def main(argv):
    sections = {"protocol": protocol.run}
    try:
        from bench import kms, scale, service
        sections["service"] = service.run
        sections["kms"] = kms.run
        sections["scale"] = scale.run
    except ImportError:
        pass
    try:
        from bench import events
        sections["events"] = events.run
    except ImportError:
        pass
    chosen = argv[1:] or list(sections)
    for name in chosen:
        sections[name]()


if __name__ == "__main__":
    main(sys.argv)
