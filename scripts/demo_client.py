"""The user's side of the demo: upload a video, follow its job, fetch the results.

Talks to whatever AWS endpoint the environment names (AWS_ENDPOINT_URL), with the resource
names the services use (FRAMEFLEET__RESOURCES__* or their defaults). Prints progress to stderr
and one JSON summary line to stdout; exits 0 only for a COMPLETE job.
"""

import argparse
import json
import os
import re
import sys
import time

import boto3
from boto3.dynamodb.conditions import Attr


def resource(name, default):
    return os.environ.get(f"FRAMEFLEET__RESOURCES__{name.upper()}", default)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--video", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--logs", default="")
    parser.add_argument("--timeout", type=float, default=float(os.environ.get("FRAMEFLEET_DEMO_TIMEOUT", 3600)))
    args = parser.parse_args()

    ingress = resource("ingress_bucket", "framefleet-ingress")
    processed = resource("processed_bucket", "framefleet-processed")
    table_name = resource("jobs_table", "framefleet-jobs")
    s3 = boto3.client("s3")
    table = boto3.resource("dynamodb").Table(table_name)

    # moto, enforcing IAM, cannot verify the signature of a key with characters the SDK
    # percent-encodes other than spaces (+, parentheses, non-ASCII…): upload under a plain name.
    key = re.sub(r"[^A-Za-z0-9._ -]", "-", os.path.basename(args.video))
    started = time.monotonic()
    print(f"demo: uploading {args.video} to s3://{ingress}/{key}", file=sys.stderr)
    s3.upload_file(args.video, ingress, key)
    etag = s3.head_object(Bucket=ingress, Key=key)["ETag"].strip('"')

    job, last_line = None, ""
    deadline = started + args.timeout
    while time.monotonic() < deadline:
        items = table.scan(
            FilterExpression=Attr("sk").eq("job") & Attr("source_key").eq(key) & Attr("source_etag").eq(etag),
            ConsistentRead=True,
        ).get("Items", [])
        if items:
            job = items[0]
            line = (
                f"demo: {job['pk']} {job['status']}"
                f" capture {int(job.get('capture_progress', 0))}%"
                f" frames {int(job.get('processed_frames', 0)) + int(job.get('failed_frames', 0))}"
                f"/{int(job['total_frames']) if 'total_frames' in job else '?'}"
            )
            if line != last_line:
                print(line, file=sys.stderr)
                last_line = line
            if job["status"] in ("COMPLETE", "FAILED"):
                break
        time.sleep(0.5)

    elapsed = round(time.monotonic() - started, 2)
    if job is None or job["status"] not in ("COMPLETE", "FAILED"):
        summary = {
            "video_id": job["pk"] if job else None,
            "status": "TIMEOUT",
            "error": f"the job did not finish within {args.timeout:.0f} s; see {args.logs}",
            "elapsed_s": elapsed,
        }
        print(json.dumps(summary, separators=(",", ":")))
        return 1

    video_id = job["pk"]
    out_dir = os.path.join(args.out, video_id)
    summary = {
        "video_id": video_id,
        "status": job["status"],
        "total_frames": int(job.get("total_frames", 0)),
        "processed_frames": int(job.get("processed_frames", 0)),
        "failed_frames": int(job.get("failed_frames", 0)),
        "output_dir": out_dir,
        "elapsed_s": None,
    }
    if job["status"] == "COMPLETE":
        os.makedirs(out_dir, exist_ok=True)
        paginator = s3.get_paginator("list_objects_v2")
        count = 0
        # A prefix without the slash: moto misverifies signatures of encoded query values.
        for page in paginator.paginate(Bucket=processed, Prefix=video_id):
            for obj in page.get("Contents", []):
                if not obj["Key"].startswith(f"{video_id}/"):
                    continue
                name = obj["Key"][len(video_id) + 1:]
                s3.download_file(processed, obj["Key"], os.path.join(out_dir, name))
                count += 1
        print(f"demo: downloaded {count} objects to {out_dir}", file=sys.stderr)
    else:
        summary["error"] = job.get("last_error", "unknown")
    summary["elapsed_s"] = round(time.monotonic() - started, 2)
    print(json.dumps(summary, ensure_ascii=False, separators=(",", ":")))
    return 0 if job["status"] == "COMPLETE" else 1


if __name__ == "__main__":
    sys.exit(main())
