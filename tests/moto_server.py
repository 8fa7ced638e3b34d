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
cannot parse). See "CopyObject", "UploadPartCopy" and "CompleteMultipartUpload" in the Amazon S3
API Reference:
https://docs.aws.amazon.com/AmazonS3/latest/API/API_CopyObject.html
https://docs.aws.amazon.com/AmazonS3/latest/API/API_UploadPartCopy.html
https://docs.aws.amazon.com/AmazonS3/latest/API/API_CompleteMultipartUpload.html

Arguments are moto_server's (-H HOST -p PORT).
"""

import functools
import sys
import threading
from urllib.parse import parse_qs, unquote, urlparse

from moto.dynamodb.models import DynamoDBBackend
from moto.s3.exceptions import MissingKey, PreconditionFailed
from moto.s3.responses import S3Response
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
            wanted = self.headers.get("x-amz-copy-source-if-match")
            if wanted is not None and wanted.strip('"') != found.etag.strip('"'):
                raise PreconditionFailed(failed_condition="x-amz-copy-source-If-Match")
        return method(self, *args, **kwargs)

    return call


S3Response.copy_object = _copy_source_if_match(S3Response.copy_object)
S3Response.upload_part_copy = _copy_source_if_match(S3Response.upload_part_copy)


def _complete_multipart_result(method):
    """Names CompleteMultipartUpload's XML root as S3 does (`CompleteMultipartUploadResult`);
    moto 5.2.1 writes `CompleteMultipartUploadResponse`, which the AWS SDK for Rust refuses."""

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        status, headers, body = method(self, *args, **kwargs)
        wrong, right = "CompleteMultipartUploadResponse", "CompleteMultipartUploadResult"
        if isinstance(body, bytes):
            body = body.replace(wrong.encode(), right.encode())
        elif isinstance(body, str):
            body = body.replace(wrong, right)
        if "content-length" in headers:
            headers["content-length"] = str(len(body if isinstance(body, bytes) else body.encode()))
        return status, headers, body

    return call


S3Response._key_response_post = _complete_multipart_result(S3Response._key_response_post)

if __name__ == "__main__":
    sys.exit(main())
