"""Fixtures that start the real `apig` binary (control plane and one gateway) on free loopback
ports, a real echo backend, and an official `huaweicloudsdkapig` client pointed at it."""

import http.server
import json
import os
import subprocess
import tempfile
import threading
import time

import pytest
import requests
from huaweicloudsdkapig.v2 import ApigClient
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.http.http_config import HttpConfig

AK = "PYTESTADMINAK01"
SK = "pytest-admin-secret-0123456789abcdef"
PROJECT = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
INSTANCE = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
TOKEN = "pytest-cluster-token-0123456789"


def _bin():
    path = os.environ.get("APIG_BIN")
    if not path:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        path = os.path.join(root, "target", "debug", "apig")
    if not os.path.exists(path):
        pytest.fail(f"apig binary not found at {path}: run `cargo build -p apig` or set APIG_BIN")
    return path


def _spawn(args, env, roles):
    full_env = dict(os.environ)
    for k in ("APIG_ADMIN_AK", "APIG_ADMIN_SK", "APIG_PROJECT_ID", "APIG_INSTANCE_ID", "APIG_CLUSTER_TOKEN"):
        full_env.pop(k, None)
    full_env.update(env)
    full_env.setdefault("RUST_LOG", "warn")
    proc = subprocess.Popen([_bin()] + args, env=full_env, stdout=subprocess.PIPE, text=True)
    addrs = {}
    deadline = time.time() + 30
    while set(roles) - set(addrs):
        if time.time() > deadline:
            proc.kill()
            pytest.fail(f"{args[0]} did not report its listeners")
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"{args[0]} exited early: {proc.wait()}")
        if line.startswith("apig: listening "):
            role, url = line[len("apig: listening "):].split()
            addrs[role] = url
    # Keep draining stdout so the process never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return proc, addrs


class _Echo(http.server.BaseHTTPRequestHandler):
    def _answer(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        path, _, query = self.path.partition("?")
        payload = json.dumps({
            "method": self.command, "path": path, "query": query,
            "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body,
        }).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def backend():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="session")
def stack():
    with tempfile.TemporaryDirectory() as tmp:
        control, caddrs = _spawn(
            ["control", "--data-dir", os.path.join(tmp, "control"),
             "--mgmt-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0"],
            {"APIG_ADMIN_AK": AK, "APIG_ADMIN_SK": SK, "APIG_PROJECT_ID": PROJECT,
             "APIG_INSTANCE_ID": INSTANCE, "APIG_CLUSTER_TOKEN": TOKEN},
            ["management", "grpc"],
        )
        gateway, gaddrs = _spawn(
            ["gateway", "--control-plane", caddrs["grpc"], "--instance-id", INSTANCE,
             "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
             "--cache-dir", os.path.join(tmp, "gw"),
             # Statistics reach the control plane quickly (test_statistics.py).
             "--usage-report-interval-ms", "300",
             # test_app_auth.py calls with AppCodes over plain HTTP; the default refuses them
             # there (as APIG), which tests/e2e/credentials.rs checks against the TLS listener.
             "--allow-app-code-over-http"],
            {"APIG_CLUSTER_TOKEN": TOKEN},
            ["gateway", "gateway-admin"],
        )
        try:
            yield {"mgmt": caddrs["management"], "gateway": gaddrs["gateway"], "admin": gaddrs["gateway-admin"]}
        finally:
            for p in (gateway, control):
                p.kill()
                p.wait()


def make_client(endpoint, ak=AK, sk=SK, project=PROJECT):
    config = HttpConfig.get_default_config()
    config.retry_times = 0
    return (
        ApigClient.new_builder()
        .with_http_config(config)
        .with_credentials(BasicCredentials(ak, sk, project))
        .with_endpoint(endpoint)
        .build()
    )


@pytest.fixture(scope="session")
def sdk(stack):
    return make_client(stack["mgmt"])


def call_gateway(stack, host, path, headers=None, method="GET"):
    h = {"Host": host}
    h.update(headers or {})
    return requests.request(method, stack["gateway"] + path, headers=h, timeout=10)


def until_routed(stack, host, path, headers=None, timeout=15):
    deadline = time.time() + timeout
    while True:
        r = call_gateway(stack, host, path, headers)
        # 404: the route is not in the applied snapshot yet; 503 APIG.0606: the replica has
        # applied no snapshot at all yet (the first publish of a fresh stack).
        pending = r.status_code == 404 or (r.status_code == 503 and "APIG.0606" in r.text)
        if not pending or time.time() > deadline:
            return r
        time.sleep(0.05)
