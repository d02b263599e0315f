"""`make bench`: our code against the floor it cannot beat, measured in the same run.

Each section interleaves batches of "ours" and "floor" so that drift on a shared machine hits
both alike; results are ratios, never absolute promises. `make bench` runs every section;
`python -m bench service regression` runs the ones named. Each section runs in a process of its
own: the app keeps its AWS clients per process, pointed at the section's own moto server.
"""
import subprocess
import sys

from bench import events, kms, protocol, regression, scale, service

SECTIONS = {"protocol": protocol.run, "service": service.run, "regression": regression.run, "kms": kms.run,
            "scale": scale.run, "events": events.run}


def main(argv):
    names = argv[1:] or list(SECTIONS)
    unknown = [name for name in names if name not in SECTIONS]
    if unknown:
        sys.exit(f"no section {', '.join(unknown)}; the sections: {', '.join(SECTIONS)}")
    if len(names) == 1:
        SECTIONS[names[0]]()
        return
    for name in names:
        subprocess.run([sys.executable, "-m", "bench", name], check=True)


if __name__ == "__main__":
    main(sys.argv)
