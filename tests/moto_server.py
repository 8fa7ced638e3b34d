"""moto_server with DynamoDB requests serialised and S3's copy-source eTag condition enforced.

moto's TransactWriteItems deep-copies the whole table first and, when the transaction is
cancelled, puts that copy back, which erases every write other requests made in the meantime.
The threaded server runs requests concurrently, so a cancelled transaction (a redelivered
batch, exactly what framefleet relies on cancellations for) can undo a concurrent batch's count
or the job's completion. DynamoDB itself isolates transactions. This launcher takes one lock
around every DynamoDB backend call, which restores that isolation; everything else (S3, SQS
long polls) stays concurrent.

moto 5.2.1 ignores `x-amz-copy-source-if-match` on CopyObject and UploadPartCopy (it checks
only `-if-none-match`), and answers an UploadPartCopy of a missing source with an empty 404.
framefleet pins an upload's content with exactly that condition, so this launcher enforces it
as S3 does: 412 PreconditionFailed (Condition `x-amz-copy-source-If-Match`) when the source's
eTag differs, NoSuchKey when the source is gone. It also names CompleteMultipartUpload's result
`CompleteMultipartUploadResult`, as S3 does (moto answers `...Response`, which the Rust SDK
cannot parse). moto 5.2.1 also leaves `versionId` out of the S3 event notifications of a versioned bucket; S3
puts the new object's version there ("Event message structure", Amazon S3 User Guide:
https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html),
and the dispatcher derives the video id from it, so this launcher adds it. See "CopyObject",
"UploadPartCopy" and "CompleteMultipartUpload" in the Amazon S3 API Reference:
https://docs.aws.amazon.com/AmazonS3/latest/API/API_CopyObject.html
https://docs.aws.amazon.com/AmazonS3/latest/API/API_UploadPartCopy.html
https://docs.aws.amazon.com/AmazonS3/latest/API/API_CompleteMultipartUpload.html

CopyObject reads its source as S3 authorises it: `s3:GetObject` on the source, or
`s3:GetObjectVersion` when the copy source names a version, and, when the tagging directive is
COPY (the default) and the source has tags, `s3:GetObjectTagging` (`s3:GetObjectVersionTagging`)
on the source and `s3:PutObjectTagging` on the target ("CopyObject", Permissions, Amazon S3 API
Reference; "Categorizing your storage using tags", Amazon S3 User Guide,
https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-tagging.html). moto checks only
`s3:PutObject` on the target, so a role missing any of these passed locally and was refused on
AWS; while IAM is enforced this launcher checks them with moto's own policy evaluation.
UploadPartCopy is checked for its source read the same way (it copies no tags).

moto authorises TransactWriteItems as one action of its own (`dynamodb:TransactWriteItems`,
which the provisioner grants locally to a statement allowing both PutItem and UpdateItem),
where AWS authorises each item of the transaction as the action it is: Put as
`dynamodb:PutItem`, Update as `dynamodb:UpdateItem`, Delete as `dynamodb:DeleteItem`,
ConditionCheck as `dynamodb:ConditionCheckItem` ("Using IAM with DynamoDB transactions",
Amazon DynamoDB Developer Guide,
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis-iam.html).
While IAM is enforced this launcher checks every item's action on its table with moto's own
policy evaluation, so a role that lacks ConditionCheckItem is refused here as on AWS.

Arguments are moto_server's (-H HOST -p PORT).
"""

import functools
import sys
import threading
from urllib.parse import parse_qs, unquote, urlparse

from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.responses import DynamoHandler
from moto.s3 import notifications as s3_notifications
from moto.s3.exceptions import MissingKey, PreconditionFailed
from moto.s3.responses import S3Response
from moto import settings as moto_settings
from moto.core.authorization import ActionAuthenticatorMixin
from moto.core.responses import BaseResponse
from moto.iam.access_control import IAMRequest, S3IAMRequest
from moto.s3 import notifications as s3_notifications
from moto.server import main

_LOCK = threading.RLock()


def _serialised(method):
    @functools.wraps(method)
    def call(*args, **kwargs):
        with _LOCK:
            return method(*args, **kwargs)

    return call


for _name, _member in list(vars(DynamoDBBackend).items()):
    if callable(_member) and not _name.startswith("_"):
        setattr(DynamoDBBackend, _name, _serialised(_member))


def _iam_enforced():
    return (
        ActionAuthenticatorMixin.request_count
        >= moto_settings.INITIAL_NO_AUTH_ACTION_COUNT
    )


def _authorize_copy(response, bucket, key, version_id, found):
    """Checks the permissions a copy needs beyond moto's s3:PutObject on the target."""
    if not _iam_enforced():
        return
    source = f"arn:aws:s3:::{bucket}/{key}"
    target = f"arn:aws:s3:::{response.bucket_name}/{response.parse_key_name()}"
    needed = [("GetObjectVersion" if version_id else "GetObject", source)]
    is_part = "uploadId" in response.querystring or "partNumber" in response.querystring
    directive = (response.headers.get("x-amz-tagging-directive") or "COPY").upper()
    if not is_part and directive == "COPY":
        tags = response.backend.get_object_tagging(found).get("Tags") or []
        if tags:
            needed.append(
                ("GetObjectVersionTagging" if version_id else "GetObjectTagging", source)
            )
            needed.append(("PutObjectTagging", target))
    for action, resource in needed:
        request = S3IAMRequest(
            account_id=response.current_account,
            method=response.method,
            path=urlparse(response.uri).path,
            data=response.data,
            body=response.raw_body,
            headers=response.headers,
            action=action,
        )
        request.check_action_permitted(resource)


def _copy_source_if_match(method):
    """Runs `method` (a copy handler) only when the copy source exists and, if the request
    carries `x-amz-copy-source-if-match`, its eTag is the one named."""

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        source = self.headers.get("x-amz-copy-source")
        if isinstance(source, bytes):
            source = source.decode("utf-8")
        if source:
            parsed = urlparse(source)
            bucket, key = unquote(parsed.path).lstrip("/").split("/", 1)
            version_id = parse_qs(parsed.query).get("versionId", [None])[0]
            found = self.backend.get_object(bucket, key, version_id=version_id)
            if found is None:
                raise MissingKey(key=key)
            _authorize_copy(self, bucket, key, version_id, found)
            wanted = self.headers.get("x-amz-copy-source-if-match")
            if wanted is not None and wanted.strip('"') != found.etag.strip('"'):
                raise PreconditionFailed(failed_condition="x-amz-copy-source-If-Match")
        return method(self, *args, **kwargs)

    return call


_TRANSACT_ITEM_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


def _authorize_transact_items(method):
    """Checks each item of a TransactWriteItems as the action AWS authorises it as."""

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        if _iam_enforced():
            for item in self.body.get("TransactItems", []):
                for kind, part in item.items():
                    action = _TRANSACT_ITEM_ACTIONS.get(kind)
                    if action is None:
                        continue
                    request = IAMRequest(
                        account_id=self.current_account,
                        method=self.method,
                        path=urlparse(self.uri).path,
                        data=self.data,
                        body=self.raw_body,
                        headers=self.headers,
                        action=action,
                    )
                    table = part.get("TableName", "*")
                    request.check_action_permitted(
                        f"arn:aws:dynamodb:{self.region}:{self.current_account}:table/{table}"
                    )
        return method(self, *args, **kwargs)

    return call


DynamoHandler.transact_write_items = _authorize_transact_items(
    DynamoHandler.transact_write_items
)

S3Response.copy_object = _copy_source_if_match(S3Response.copy_object)
S3Response.upload_part_copy = _copy_source_if_match(S3Response.upload_part_copy)


def _renamed_root(method, wrong, right):
    """Names an answer's XML root `right` as S3 does where moto 5.2.1 writes `wrong`, which
    the AWS SDK for Rust refuses: `CompleteMultipartUploadResult` and, for
    GetBucketVersioning, `VersioningConfiguration`."""

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        status, headers, body = method(self, *args, **kwargs)
        if isinstance(body, bytes):
            body = body.replace(wrong.encode(), right.encode())
        elif isinstance(body, str):
            body = body.replace(wrong, right)
        if "content-length" in headers:
            headers["content-length"] = str(len(body if isinstance(body, bytes) else body.encode()))
        return status, headers, body

    return call


S3Response._key_response_post = _renamed_root(
    S3Response._key_response_post,
    "CompleteMultipartUploadResponse",
    "CompleteMultipartUploadResult",
)
S3Response.get_bucket_versioning = _renamed_root(
    S3Response.get_bucket_versioning, "GetBucketVersioningResponse", "VersioningConfiguration"
)


def _with_version_id(build):
    """Adds the object's `versionId` to an S3 event of a versioning-enabled bucket, as S3 does."""

    @functools.wraps(build)
    def call(event_name, bucket, key, notification_id):
        event = build(event_name, bucket, key, notification_id)
        if getattr(bucket, "is_versioned", False) and key.version_id not in (None, "null"):
            for record in event.get("Records", []):
                record["s3"]["object"]["versionId"] = key.version_id
        return event

    return call


s3_notifications._get_s3_event = _with_version_id(s3_notifications._get_s3_event)


def _remember_raw_uri(method):
    """Keeps the request line's path and query exactly as the client sent them (werkzeug's
    RAW_URI), for the signature check below."""

    @functools.wraps(method)
    def call(self, request, *args, **kwargs):
        result = method(self, request, *args, **kwargs)
        environ = getattr(request, "environ", None) or {}
        self._framefleet_raw_uri = environ.get("RAW_URI") or environ.get("REQUEST_URI")
        return result

    return call


def _verify_against_raw_uri(method):
    """Checks SigV4 signatures against the path and query the client signed.

    moto 5.2.1 rebuilds the URL from its decoded form before computing the expected signature,
    so a key or query value an SDK percent-encodes (`+`, `(`, `%`, non-ASCII, a `/` in
    `prefix=`) never verifies and AWS-valid requests get SignatureDoesNotMatch. The signature
    covers the URI as sent (SigV4, "Create a canonical request",
    https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html), which is what
    this hands moto's check.
    """

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        raw = getattr(self, "_framefleet_raw_uri", None)
        if not raw:
            return method(self, *args, **kwargs)
        decoded = self.uri
        parsed = urlparse(decoded)
        self.uri = f"{parsed.scheme}://{parsed.netloc}{raw}"
        try:
            return method(self, *args, **kwargs)
        finally:
            self.uri = decoded

    return call


BaseResponse.setup_class = _remember_raw_uri(BaseResponse.setup_class)
BaseResponse._authenticate_and_authorize_action = _verify_against_raw_uri(
    BaseResponse._authenticate_and_authorize_action
)

if __name__ == "__main__":
    sys.exit(main())
