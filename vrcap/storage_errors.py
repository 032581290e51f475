"""One line for an object store that cannot be used: no credentials, an endpoint that does not answer.

Why here and by name: fsspec's backends (s3fs on botocore, gcsfs on google-auth) turn most failures into
OSError, which the CLI already words, but credential and connection failures escape as the client library's
own exceptions. Those are the user's set-up, not a bug in vrcap, so they must not read "internal error". The
classes are recognised by module and name, so neither library has to be installed (or imported) for the check.
Credentials stay the storage library's business (replay/storage.py): the hint names where it looks for them.
"""

from __future__ import annotations

_CREDENTIALS = (
    "set them where the storage library looks: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, "
    "~/.aws/credentials) for s3://, GOOGLE_APPLICATION_CREDENTIALS for gs://"
)
_NO_CREDENTIALS = {
    "NoCredentialsError",
    "PartialCredentialsError",
    "CredentialRetrievalError",
    "DefaultCredentialsError",
    "RefreshError",
}
_UNREACHABLE = {"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError"}


def storage_error_message(exc: BaseException) -> str | None:
    """The one-line message for an object-store client failure, or None when ``exc`` is something else."""
    module, name = type(exc).__module__ or "", type(exc).__name__
    if not module.startswith(("botocore", "boto3", "aiobotocore", "google.auth", "gcsfs")):
        return None
    if name in _NO_CREDENTIALS:
        return f"the object store needs credentials and found none ({exc}); {_CREDENTIALS}"
    if name in _UNREACHABLE:
        return (
            f"the object store does not answer ({exc}); check the URL, AWS_ENDPOINT_URL (for an S3-compatible "
            "server) and the network"
        )
    return f"the object store refused the request ({name}: {exc}); check the URL and the credentials"
