"""Access to the conformance vectors copied into tests/vectors (see its README)."""
import json
import pathlib

from chalicelib.alipay import keys

ROOT_PATH = pathlib.Path(__file__).resolve().parent.parent
VECTORS = ROOT_PATH / "tests" / "vectors"


def cases(file_name, kind=None):
    data = json.loads((VECTORS / file_name).read_text(encoding="utf-8"))
    return [case for case in data["cases"] if kind is None or case.get("kind") == kind]


def params(file_name, kind=None):
    """pytest.param-ready (case, id) pairs."""
    import pytest
    return [pytest.param(case, id=case["name"]) for case in cases(file_name, kind)]


def text(file_name):
    return (VECTORS / file_name).read_text(encoding="utf-8")


def private_key(file_name):
    return keys.load_private_key(text(file_name), min_bits=1024)


def public_key(file_name):
    return keys.load_public_key(text(file_name))
