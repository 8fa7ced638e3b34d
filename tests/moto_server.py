"""moto_server with DynamoDB requests serialised.

moto's TransactWriteItems deep-copies the whole table first and, when the transaction is
cancelled, puts that copy back, which erases every write other requests made in the meantime.
The threaded server runs requests concurrently, so a cancelled transaction (a redelivered
batch, exactly what framefleet relies on cancellations for) can undo a concurrent batch's count
or the job's completion. DynamoDB itself isolates transactions. This launcher takes one lock
around every DynamoDB backend call, which restores that isolation; everything else (S3, SQS
long polls) stays concurrent. Arguments are moto_server's (-H HOST -p PORT).
"""

import functools
import sys
import threading

from moto.dynamodb.models import DynamoDBBackend
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

if __name__ == "__main__":
    sys.exit(main())
