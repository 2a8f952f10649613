"""Client side of SASL PLAIN and SCRAM-SHA-256 (RFC 5802/7677) for tests.
Python has no SCRAM client, so this is a small one with hashlib/hmac."""

import base64
import hashlib
import hmac
import os


def plain(authcid, password, authzid=""):
    return ("%s\0%s\0%s" % (authzid, authcid, password)).encode()


def _saslname(s):
    return s.replace("=", "=3D").replace(",", "=2C")


class ScramClient:
    """Drive with first() and then step(server_message) until done."""

    def __init__(self, user, password, authzid="", nonce=None):
        self.user = user
        self.password = password.encode()
        self.gs2 = "n," + ("a=" + _saslname(authzid) if authzid else "") + ","
        self.cnonce = nonce or base64.b64encode(os.urandom(18)).decode()
        self.client_first_bare = "n=%s,r=%s" % (_saslname(user), self.cnonce)
        self.server_first = None
        self.salt = None
        self.iterations = None
        self.expected_server_sig = None
        self.server_verified = False

    def first(self):
        return (self.gs2 + self.client_first_bare).encode()

    def final(self, server_first):
        self.server_first = server_first.decode()
        attrs = dict(kv.split("=", 1) for kv in self.server_first.split(","))
        snonce = attrs["r"]
        if not snonce.startswith(self.cnonce):
            raise ValueError("server nonce does not extend the client nonce")
        self.salt = base64.b64decode(attrs["s"])
        self.iterations = int(attrs["i"])
        salted = hashlib.pbkdf2_hmac("sha256", self.password, self.salt, self.iterations)
        ckey = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored = hashlib.sha256(ckey).digest()
        cwop = "c=%s,r=%s" % (base64.b64encode(self.gs2.encode()).decode(), snonce)
        authmsg = ("%s,%s,%s" % (self.client_first_bare, self.server_first, cwop)).encode()
        csig = hmac.new(stored, authmsg, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(ckey, csig))
        skey = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        self.expected_server_sig = hmac.new(skey, authmsg, hashlib.sha256).digest()
        return ("%s,p=%s" % (cwop, base64.b64encode(proof).decode())).encode()

    def verify(self, server_final):
        attrs = dict(kv.split("=", 1) for kv in server_final.decode().split(","))
        self.server_verified = base64.b64decode(attrs.get("v", "")) == self.expected_server_sig
        return self.server_verified

    def imaplib_callback(self):
        """An authobject for imaplib.IMAP4.authenticate('SCRAM-SHA-256', ...)."""
        state = {"n": 0}

        def cb(challenge):
            state["n"] += 1
            if state["n"] == 1:
                return self.first()
            if state["n"] == 2:
                return self.final(challenge)
            self.verify(challenge)
            return b""
        return cb
