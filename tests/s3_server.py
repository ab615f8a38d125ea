"""A real S3-compatible server for tests: moto's S3 in server mode on a loopback port, with IAM auth on.

Requests go over HTTP to a werkzeug server in a thread of the test process (moto's own WSGI app, as
``moto.server.ThreadedMotoServer`` runs it); nothing in the client library is replaced. A small WSGI
wrapper counts the bytes of every response body, so tests can measure what a read really downloaded.

Auth is enforced (moto's ``INITIAL_NO_AUTH_ACTION_COUNT`` set to 0 through its ``/moto-api/reset-auth``
endpoint) once the bucket and two IAM users exist: ``storage_options`` holds the keys of a user allowed
``s3:*``; ``denied_options`` those of a user with no permissions; any other key is unknown to the server.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from typing import Any

BUCKET = "owa-test"
REFUSED_KEY = "refused/dataset_dict.json"
REGION = "us-east-1"


@dataclasses.dataclass
class S3Server:
    """What the ``s3`` fixture yields."""

    endpoint_url: str
    bucket: str
    storage_options: dict[str, Any]
    denied_options: dict[str, Any]
    traffic: ByteCounter

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def options_with(self, key: str, secret: str) -> dict[str, Any]:
        return {**self.storage_options, "key": key, "secret": secret}


class ByteCounter:
    """Counts response body bytes (and requests) of GET requests the server answered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.bytes_sent = 0
        self.requests = 0

    def add(self, n: int, *, request: bool = False) -> None:
        with self._lock:
            self.bytes_sent += n
            self.requests += request

    def snapshot(self) -> tuple[int, int]:
        with self._lock:
            return self.bytes_sent, self.requests


def _counting(app: Callable[..., Iterable[bytes]], counter: ByteCounter) -> Callable[..., Iterator[bytes]]:
    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        is_get = environ.get("REQUEST_METHOD") == "GET"
        if is_get:
            counter.add(0, request=True)
        result = app(environ, start_response)
        try:
            for piece in result:
                if is_get:
                    counter.add(len(piece))
                yield piece
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    return wrapped


def _user_keys(iam: Any, name: str, policy: dict[str, Any] | None) -> tuple[str, str]:
    iam.create_user(UserName=name)
    if policy is not None:
        iam.put_user_policy(UserName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


@dataclasses.dataclass
class RunningServer:
    server: Any
    thread: threading.Thread
    s3: S3Server

    def stop(self) -> None:
        _set_auth(self.s3.endpoint_url, float("inf"))  # moto's switch is process-wide: leave it as found
        self.server.shutdown()
        self.thread.join(timeout=10)
        self.server.server_close()


def start_server() -> RunningServer:
    """Start the server, create the bucket and users, and turn auth on. Call ``stop()`` when done."""
    import boto3
    from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    counter = ByteCounter()
    app = _counting(DomainDispatcherApplication(create_backend_app), counter)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, name="moto-s3", daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    endpoint = f"http://{host}:{port}"
    # Set-up runs before auth is on, with throwaway keys passed explicitly (never the user's ~/.aws).
    setup = {
        "endpoint_url": endpoint,
        "region_name": REGION,
        "aws_access_key_id": "setup",
        "aws_secret_access_key": "x",
    }
    boto3.client("s3", **setup).create_bucket(Bucket=BUCKET)
    iam = boto3.client("iam", **setup)
    allow_all = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
            # One key the reader may not write: an upload that fails at its very last file.
            {"Effect": "Deny", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{BUCKET}/{REFUSED_KEY}"},
        ],
    }
    good_key, good_secret = _user_keys(iam, "owa-reader", allow_all)
    denied_key, denied_secret = _user_keys(iam, "owa-nobody", None)
    _set_auth(endpoint, 0)
    client_kwargs = {"region_name": REGION}
    options = {"endpoint_url": endpoint, "key": good_key, "secret": good_secret, "client_kwargs": client_kwargs}
    denied = {**options, "key": denied_key, "secret": denied_secret}
    return RunningServer(server, thread, S3Server(endpoint, BUCKET, options, denied, counter))


def _set_auth(endpoint: str, no_auth_count: float) -> None:
    """moto's switch: requests after the first ``no_auth_count`` are authenticated (inf: never)."""
    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth",
        data=str(no_auth_count).encode(),
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
