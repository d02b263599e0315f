"""The sandbox's memory: apps, partners, trades, notifications, Alipay's keys and certificates.
A JSON file, rewritten whole after each change (atomically), so a restart picks up where it
stopped; `reset` forgets trades and notifications."""
import json
import os
import pathlib
import tempfile
import threading

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox import certs

EMPTY = {"apps": {}, "partners": {}, "trades": {}, "notifications": [], "valid_notify_ids": {}, "switches": {},
         "clock_offset": 0.0}
KEPT = ("apps", "partners", "alipay_private_key", "pki")  # registrations and Alipay's own keys


class State:
    def __init__(self, path):
        self.path = pathlib.Path(path) if path else None
        self.lock = threading.RLock()
        self.data = json.loads(self.path.read_text()) if self.path and self.path.exists() else {}
        for key, value in EMPTY.items():
            self.data.setdefault(key, json.loads(json.dumps(value)))
        if "alipay_private_key" not in self.data:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.data["alipay_private_key"] = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()).decode()
        self.alipay_key = serialization.load_pem_private_key(self.data["alipay_private_key"].encode(), None)
        for trade in self.data["trades"].values():  # refunds were bare amounts before they were records
            for no, record in trade.get("refunds", {}).items():
                if isinstance(record, str):
                    trade["refunds"][no] = {"amount": record, "gmt_refund_pay": trade.get("gmt_payment", "")}
        if "pki" not in self.data:
            self.data["pki"] = certs.new_pki()
        self.save()

    @property
    def pki(self):
        return self.data["pki"]

    def save(self):
        if not self.path:
            return
        with self.lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle, temp = tempfile.mkstemp(dir=self.path.parent, prefix=".state-")
            with os.fdopen(handle, "w") as out:
                json.dump(self.data, out, ensure_ascii=False)
            os.replace(temp, self.path)

    def reset(self, keep_registrations=True):
        """Forget trades and notifications; apps, partners and the Alipay key stay."""
        with self.lock:
            kept = {k: self.data[k] for k in KEPT if k in self.data}
            if not keep_registrations:
                kept = {k: v for k, v in kept.items() if k not in ("apps", "partners")}
            self.data = json.loads(json.dumps(EMPTY))
            self.data.update(kept)
            self.save()
