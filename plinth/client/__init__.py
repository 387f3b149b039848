"""Plinth's Python SDK: every REST endpoint as a typed method over one shared httpx client.

    from plinth.client import Client
    with Client() as plinth:                 # PLINTH_URL, PLINTH_TOKEN
        info = plinth.files.upload("examples/hello")
        job = plinth.jobs.submit({..., "code": {"file": info["sha256"]}})
        for line in plinth.jobs.follow_logs(job["id"]):
            print(f"[{line.role}-{line.replica}] {line.text}")
        print(plinth.jobs.wait(job["id"])["state"])

Exceptions — catch ``PlinthError`` for all of them::

    PlinthError                  root; also bad local input (e.g. a directory to upload)
    ├── InvalidInputError        an unusable argument (empty id, malformed URL or token)
    ├── ConnectionError          no server answered at the URL (refused, unreachable, timeout)
    ├── WaitTimeoutError         jobs.wait / follow_logs gave up; the job keeps running
    └── APIError(status, detail) the server answered with an error status (5xx lands here)
        ├── AuthError            401 missing/invalid token, 403 not allowed
        ├── NotFoundError        404 no such resource (or not visible to this token)
        ├── ConflictError        409 duplicate name, resource in use
        └── ValidationError      other 4xx: invalid request (400, 413, 422)

The modules with a leading underscore are private; this module's ``__all__``
is the public surface and a test pins it.
"""

from plinth.client._client import Client
from plinth.client._errors import (
    APIError,
    AuthError,
    ConflictError,
    ConnectionError,
    InvalidInputError,
    NotFoundError,
    PlinthError,
    ValidationError,
)
from plinth.client._http import DEFAULT_URL
from plinth.client._jobs import WaitTimeoutError
from plinth.client._types import (
    TERMINAL_STATES,
    CreatedUser,
    Event,
    FileInfo,
    Group,
    Job,
    LogChunk,
    LogLine,
    Node,
    Replica,
    Resources,
    User,
)

__all__ = [
    "DEFAULT_URL",
    "TERMINAL_STATES",
    "APIError",
    "AuthError",
    "Client",
    "ConflictError",
    "ConnectionError",
    "CreatedUser",
    "Event",
    "FileInfo",
    "Group",
    "InvalidInputError",
    "Job",
    "LogChunk",
    "LogLine",
    "Node",
    "NotFoundError",
    "PlinthError",
    "Replica",
    "Resources",
    "User",
    "ValidationError",
    "WaitTimeoutError",
]
