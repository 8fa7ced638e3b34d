#!/usr/bin/env python3
"""The checks scripts/compose-e2e makes against the compose stack's AWS endpoint (boto3, the
endpoint and credentials from the environment) and against a stopped worker's log.

    compose_e2e_checks.py progress
        one line: <video id> <status> <total frames> <processed + failed frames> of the only job
    compose_e2e_checks.py stopped-worker <log file>
        the worker took SIGTERM, drained and stopped, and finished or handed back at least one
        batch while stopping
    compose_e2e_checks.py verify <video id> <frames> <clip> <worker binary> <work dir>
        exact counts, one manifest, one edge map per frame equal to the offline kernel's output,
        every queue and DLQ empty

Exit 0 on success; on failure a message on stderr and exit 1.
"""

import json
import os
import re
import subprocess
import sys
import time

import boto3

TABLE = "framefleet-jobs"
FRAMES_BUCKET = "framefleet-frames"
PROCESSED_BUCKET = "framefleet-processed"
FRAME_NAME = re.compile(r"\.(\d{7})\.(jpg|png)$")


def fail(message):
    print(f"compose-e2e: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def client(service):
    return boto3.client(service, endpoint_url=os.environ["AWS_ENDPOINT_URL"])


def number(item, name):
    value = item.get(name)
    return int(value["N"]) if value else 0


def jobs():
    pages = client("dynamodb").get_paginator("scan").paginate(
        TableName=TABLE,
        FilterExpression="sk = :job",
        ExpressionAttributeValues={":job": {"S": "job"}},
    )
    return [item for page in pages for item in page["Items"]]


def progress():
    items = jobs()
    if not items:
        print("- NONE 0 0")
        return
    if len(items) > 1:
        fail(f"{len(items)} jobs for one upload: {[i['pk']['S'] for i in items]}")
    item = items[0]
    done = number(item, "processed_frames") + number(item, "failed_frames")
    print(item["pk"]["S"], item["status"]["S"], number(item, "total_frames"), done)


def log_events(path):
    """The worker's JSON log lines as (message, the whole line) pairs."""
    events = []
    with open(path, encoding="utf-8", errors="replace") as log:
        for line in log:
            start = line.find("{")
            if start < 0:
                continue
            try:
                event = json.loads(line[start:])
            except json.JSONDecodeError:
                continue
            fields = event.get("fields", event)
            events.append((str(fields.get("message", "")), line))
    return events


def stopped_worker(path):
    events = log_events(path)
    messages = [message for message, _ in events]
    if not any("shutdown signal received" in m for m in messages):
        fail(f"{path}: no 'shutdown signal received' line: the worker did not see SIGTERM")
    if any("drain timed out" in m for m in messages):
        fail(f"{path}: the drain timed out")
    stopped = [line for message, line in events if message == "worker stopped"]
    if not stopped:
        fail(f"{path}: no 'worker stopped' line: the worker did not drain and stop")
    counts = {k: int(v) for k, v in re.findall(r"(\w+): (\d+)", stopped[-1])}
    held = sum(counts.get(k, 0) for k in ("drained", "released", "abandoned"))
    if held < 1:
        fail(f"the stopped worker held no batch when SIGTERM came: {counts}")
    handed_back = [line for message, line in events if "handed back" in message]
    print(
        f"compose-e2e: stopped worker: {counts}"
        f"{'; ' + str(len(handed_back)) + ' hand-back line(s)' if handed_back else ''}",
        file=sys.stderr,
    )


def keys(s3, bucket, prefix):
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def wait_for_empty_queues(sqs):
    """Every queue (the three work queues and their DLQs) ends empty: nothing lost in flight,
    nothing dead-lettered. The last batch's message is deleted just after COMPLETE, so wait
    for that, within its visibility timeout."""
    urls = sqs.list_queues().get("QueueUrls", [])
    if len(urls) < 3:
        fail(f"expected the framefleet queues, found {urls}")
    deadline = time.monotonic() + 120
    while True:
        left = {}
        for url in urls:
            attributes = sqs.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )["Attributes"]
            count = sum(int(v) for v in attributes.values())
            if count:
                left[url.rsplit("/", 1)[-1]] = count
        if not left:
            return len(urls)
        if time.monotonic() > deadline:
            fail(f"messages left in queues after the job: {left}")
        time.sleep(1)


def verify(video, frames, clip, worker, work):
    frames = int(frames)
    items = [i for i in jobs() if i["pk"]["S"] == video]
    if len(items) != 1:
        fail(f"job {video}: {len(items)} records")
    item = items[0]
    status = item["status"]["S"]
    total = number(item, "total_frames")
    processed = number(item, "processed_frames")
    failed = number(item, "failed_frames")
    if (status, total, processed, failed) != ("COMPLETE", frames, frames, 0):
        fail(
            f"job {video}: {status} total {total} processed {processed} failed {failed}, "
            f"expected COMPLETE with {frames} processed and 0 failed"
        )

    s3 = client("s3")
    processed_keys = keys(s3, PROCESSED_BUCKET, f"{video}/")
    edge_maps = {}
    for key in processed_keys:
        match = FRAME_NAME.search(key)
        if match:
            index = int(match.group(1))
            if index in edge_maps:
                fail(f"two edge maps for frame {index}: {edge_maps[index]}, {key}")
            edge_maps[index] = key
    if sorted(edge_maps) != list(range(frames)):
        missing = sorted(set(range(frames)) - set(edge_maps))[:10]
        fail(f"{len(edge_maps)} edge maps for {frames} frames (missing e.g. {missing})")

    manifest_key = f"{video}/manifest.json"
    versions = s3.list_object_versions(Bucket=PROCESSED_BUCKET, Prefix=manifest_key)
    written = [v for v in versions.get("Versions", []) if v["Key"] == manifest_key]
    if len(written) != 1:
        fail(f"{manifest_key} written {len(written)} times, expected once")
    manifest = json.loads(s3.get_object(Bucket=PROCESSED_BUCKET, Key=manifest_key)["Body"].read())
    if manifest.get("video_id") != video or manifest.get("status") != "COMPLETE":
        fail(f"manifest names {manifest.get('video_id')} {manifest.get('status')}")
    counts = manifest.get("counts", {})
    for name, value in counts.items():
        if name in ("total", "processed", "total_frames", "processed_frames") and value != frames:
            fail(f"manifest counts {counts}, expected {frames}")
        if name in ("failed", "failed_frames") and value != 0:
            fail(f"manifest counts {counts}, expected none failed")

    # Edge maps are the kernel's output for the captured frame: the first, a middle and the last
    # frame, against the same kernel run offline on the host (`worker edges`, the dispatcher's
    # parameters: blur modifier 1, JPEG quality 90).
    frame_keys = {}
    for key in keys(s3, FRAMES_BUCKET, ""):
        match = FRAME_NAME.search(key)
        if match and video in key:
            frame_keys[int(match.group(1))] = key
    for index in sorted({0, frames // 2, frames - 1}):
        if index not in frame_keys:
            fail(f"captured frame {index} not found in {FRAMES_BUCKET}")
        name = os.path.basename(frame_keys[index])
        source = os.path.join(work, "frames", name)
        os.makedirs(os.path.dirname(source), exist_ok=True)
        s3.download_file(FRAMES_BUCKET, frame_keys[index], source)
        out = os.path.join(work, "offline", str(index))
        subprocess.run(
            [worker, "edges", "--out", out, source],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        offline = os.listdir(out)
        if len(offline) != 1:
            fail(f"worker edges wrote {os.listdir(out)} for {name}")
        with open(os.path.join(out, offline[0]), "rb") as expected:
            expected = expected.read()
        actual = s3.get_object(Bucket=PROCESSED_BUCKET, Key=edge_maps[index])["Body"].read()
        if actual != expected:
            fail(
                f"edge map {edge_maps[index]} ({len(actual)} bytes) differs from the offline "
                f"kernel's output for {frame_keys[index]} ({len(expected)} bytes)"
            )

    queues = wait_for_empty_queues(client("sqs"))
    print(
        f"compose-e2e: job {video}: COMPLETE, {processed} of {total} frames, 0 failed; "
        f"{len(edge_maps)} edge maps, 1 manifest; frames 0, {frames // 2}, {frames - 1} equal the "
        f"offline kernel's; {queues} queues empty",
        file=sys.stderr,
    )


def main(argv):
    commands = {"progress": progress, "stopped-worker": stopped_worker, "verify": verify}
    if len(argv) < 2 or argv[1] not in commands:
        fail(f"usage: {argv[0]} {'|'.join(commands)} …")
    commands[argv[1]](*argv[2:])


if __name__ == "__main__":
    main(sys.argv)
