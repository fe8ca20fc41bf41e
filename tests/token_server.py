#!/usr/bin/env python3
"""A token server for the registry tests (Distribution's token auth).

Checks the request path (the realm), the service, the user's Basic
credentials and each requested scope, logs every granted scope to --log,
and answers an RS256 JWT carrying its certificate in `x5c`, which the
registry verifies against its rootcertbundle. Test use only, on loopback.
"""
import argparse
import base64
import http.server
import json
import os
import re
import time
import urllib.parse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

SCOPE = re.compile(r"^repository:([a-z0-9]+(?:[._/-][a-z0-9]+)*):((?:pull|push|delete|\*)(?:,(?:pull|push|delete|\*))*)$")


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--service", required=True)
    p.add_argument("--issuer", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--refresh-token", required=True, help="identity token accepted by POST (OAuth2 refresh_token grant)")
    p.add_argument("--reader", default=None, help="USER:PASSWORD of a second account whose tokens grant pull only, whatever it asks (a pull-only CI token)")
    a = p.parse_args()
    key = serialization.load_pem_private_key(open(a.key, "rb").read(), password=None)
    cert = x509.load_pem_x509_certificate(open(a.cert, "rb").read())
    chain = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
    expected_auth = "Basic " + base64.b64encode(("%s:%s" % (a.user, a.password)).encode()).decode()
    reader_auth = "Basic " + base64.b64encode(a.reader.encode()).decode() if a.reader else None

    class Handler(http.server.BaseHTTPRequestHandler):
        def refuse(self, code, why):
            with open(a.log, "a") as f:
                f.write("REFUSED %d %s\n" % (code, why))
            self.send_response(code)
            self.end_headers()

        def do_POST(self):
            url = urllib.parse.urlparse(self.path)
            if url.path != "/token":
                return self.refuse(404, "realm path %s" % url.path)
            length = int(self.headers.get("Content-Length", "0"))
            form = urllib.parse.parse_qs(self.rfile.read(length).decode())
            if form.get("grant_type") != ["refresh_token"] or form.get("refresh_token") != [a.refresh_token]:
                return self.refuse(401, "refresh token")
            self.grant(form, "GRANTED(refresh)")

        def do_GET(self):
            url = urllib.parse.urlparse(self.path)
            if url.path != "/token":
                return self.refuse(404, "realm path %s" % url.path)
            q = urllib.parse.parse_qs(url.query)
            auth = self.headers.get("Authorization")
            if reader_auth is not None and auth == reader_auth:
                return self.grant(q, "GRANTED(reader)", pull_only=True)
            if auth != expected_auth:
                return self.refuse(401, "credentials")
            self.grant(q, "GRANTED")

        def grant(self, q, word, pull_only=False):
            if q.get("service") != [a.service]:
                return self.refuse(400, "service %r" % q.get("service"))
            access = []
            for scope in q.get("scope", []):
                for one in scope.split(" "):
                    m = SCOPE.match(one)
                    if not m:
                        return self.refuse(400, "scope %r" % one)
                    actions = m.group(2).split(",")
                    if pull_only:
                        actions = [x for x in actions if x == "pull"]
                    access.append({"type": "repository", "name": m.group(1), "actions": actions})
            now = int(time.time())
            header = {"alg": "RS256", "typ": "JWT", "x5c": chain}
            claims = {"iss": a.issuer, "sub": a.user, "aud": a.service, "exp": now + 300, "nbf": now - 10, "iat": now, "jti": b64url(os.urandom(12)), "access": access}
            signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
            signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
            token = signing_input + "." + b64url(signature)
            with open(a.log, "a") as f:
                f.write("%s %s\n" % (word, " ".join(sorted(s for s in q.get("scope", [])))))
            body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
