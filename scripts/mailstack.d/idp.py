#!/usr/bin/env python3
"""A local OAuth 2.0 identity provider for hecto-watch's tests (never for production).

Serves, on 127.0.0.1 only:
  POST /device      RFC 8628 device authorization: device_code, user_code, verification_uri
  POST /token       grant_type device_code (authorization_pending until approved) and
                    refresh_token (rotates the refresh token; the old one stops working;
                    invalid_grant once revoked)
  POST /introspect  RFC 7662, for Dovecot's oauth2 passdb: {"active": true, "username": ...}
Test controls (what a user or an administrator would do at a real provider):
  POST /approve     user_code=&username=  the user approves the device code
  POST /revoke      username=             the grant is revoked (refresh and access tokens)
  POST /expire      username=             the access tokens stop working (refresh still works)
  POST /config      access_ttl=SECONDS    lifetime of the access tokens issued from now on
  GET  /stats       issued tokens and refresh counts, for assertions
State is in memory; every token is random and short (Postfix's default line length is 2048).
"""
import argparse
import json
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
DEVICES = {}    # device_code -> {"user_code", "username", "expires", "scope"}
REFRESH = {}    # refresh_token -> username
ACCESS = {}     # access_token -> {"username", "expires"}
STATS = {"refreshes": {}, "issued_access": [], "issued_refresh": [], "introspections": 0}
CONFIG = {"access_ttl": 3600}


def issue(username):
    access = "at-" + secrets.token_urlsafe(18)
    refresh = "rt-" + secrets.token_urlsafe(18)
    ttl = CONFIG["access_ttl"]
    ACCESS[access] = {"username": username, "expires": time.time() + ttl}
    REFRESH[refresh] = username
    STATS["issued_access"].append(access)
    STATS["issued_refresh"].append(refresh)
    return {"access_token": access, "refresh_token": refresh, "token_type": "Bearer", "expires_in": ttl}


class Handler(BaseHTTPRequestHandler):
    server_version = "hecto-test-idp/1"

    def log_message(self, fmt, *args):
        pass

    def form(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode() if n else ""
        if "?" in self.path:
            body += "&" + self.path.split("?", 1)[1]
        return {k: v[0] for k, v in urllib.parse.parse_qs(body).items()}

    def reply(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.startswith("/stats"):
            with LOCK:
                return self.reply(200, STATS)
        if self.path.startswith("/verify"):
            return self.reply(200, {"hint": "POST /approve user_code=&username="})
        self.reply(404, {"error": "not_found"})

    def do_POST(self):
        path = self.path.split("?", 1)[0]
        f = self.form()
        with LOCK:
            if path == "/device":
                device = "dc-" + secrets.token_urlsafe(12)
                user_code = secrets.token_hex(2).upper() + "-" + secrets.token_hex(2).upper()
                DEVICES[device] = {"user_code": user_code, "username": None, "expires": time.time() + 300,
                                   "scope": f.get("scope", "")}
                port = self.server.server_address[1]
                return self.reply(200, {"device_code": device, "user_code": user_code,
                                        "verification_uri": f"http://127.0.0.1:{port}/verify",
                                        "expires_in": 300, "interval": 1})
            if path == "/approve":
                for d in DEVICES.values():
                    if d["user_code"] == f.get("user_code"):
                        d["username"] = f.get("username")
                        return self.reply(200, {"approved": True})
                return self.reply(404, {"error": "unknown user_code"})
            if path == "/token":
                grant = f.get("grant_type")
                if grant == "urn:ietf:params:oauth:grant-type:device_code":
                    d = DEVICES.get(f.get("device_code"))
                    if d is None or d["expires"] < time.time():
                        return self.reply(400, {"error": "expired_token"})
                    if d["username"] is None:
                        return self.reply(400, {"error": "authorization_pending"})
                    del DEVICES[f.get("device_code")]
                    return self.reply(200, issue(d["username"]))
                if grant == "refresh_token":
                    user = REFRESH.pop(f.get("refresh_token"), None)
                    if user is None:
                        return self.reply(400, {"error": "invalid_grant",
                                                "error_description": "refresh token revoked, expired or already used"})
                    STATS["refreshes"][user] = STATS["refreshes"].get(user, 0) + 1
                    return self.reply(200, issue(user))
                return self.reply(400, {"error": "unsupported_grant_type"})
            if path == "/introspect":
                STATS["introspections"] += 1
                a = ACCESS.get(f.get("token", ""))
                if a is None or a["expires"] < time.time():
                    return self.reply(200, {"active": False})
                return self.reply(200, {"active": True, "username": a["username"]})
            if path == "/revoke":
                user = f.get("username")
                for t in [t for t, u in REFRESH.items() if u == user]:
                    del REFRESH[t]
                for t in [t for t, a in ACCESS.items() if a["username"] == user]:
                    del ACCESS[t]
                return self.reply(200, {"revoked": user})
            if path == "/expire":
                user = f.get("username")
                for a in ACCESS.values():
                    if a["username"] == user:
                        a["expires"] = 0
                return self.reply(200, {"expired": user})
            if path == "/config":
                if "access_ttl" in f:
                    CONFIG["access_ttl"] = int(f["access_ttl"])
                return self.reply(200, CONFIG)
        self.reply(404, {"error": "not_found"})


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
