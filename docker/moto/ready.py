#!/usr/bin/env python3
"""Readiness probe of the moto container: the compose health check, in LocalStack's init/ready
place. Healthy only once S3, SQS and DynamoDB each answer a real API call through the endpoint
every service uses, as LocalStack's ready.d hook requires of those three services; until then
`provision` (and through it the whole stack) waits. Exit 0 ready, 1 not yet."""

import sys

import boto3
from botocore.config import Config

ENDPOINT = "http://localhost:4566"


def main() -> int:
    session = boto3.session.Session(
        aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    )
    config = Config(connect_timeout=2, read_timeout=3, retries={"max_attempts": 1})
    try:
        session.client("s3", endpoint_url=ENDPOINT, config=config).list_buckets()
        session.client("sqs", endpoint_url=ENDPOINT, config=config).list_queues()
        session.client("dynamodb", endpoint_url=ENDPOINT, config=config).list_tables()
    except Exception as error:  # any failure means "not ready yet"; the probe retries
        print(f"moto not ready: {error}", file=sys.stderr)
        return 1
    print("moto ready: s3, sqs, dynamodb answer")
    return 0


if __name__ == "__main__":
    sys.exit(main())
