#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpus: real files, made here rather than kept as blobs.

Usage: fuzz/make-seeds.py OUT_DIR   (one folder per target under OUT_DIR)

- container_probe: tiny videos from ffmpeg: MP4 with the index at the end and at the start
  (faststart), with and without sound, 29.97 fps, QuickTime MOV, Matroska, WebM; and what
  segmented capture reads: B-frames (an edit list and `ctts`), variable frame rate, a QuickTime
  timecode track, an edit list that starts late and an empty edit.
- s3_notification: the bodies a real S3 event notification sends to SQS (moto_server in
  process: a bucket notifying a queue, then an upload with a key that needs encoding),
  including the s3:TestEvent sent when the notification is configured.
- mediaconvert_event: job state change events in the shape of the MediaConvert User Guide's
  examples (no MediaConvert here to send them).
- frame_batch: a batch body as the dispatcher writes it.
- edge_probe / edge_process: JPEG and PNG frames from ffmpeg (edge_process inputs start with
  the byte that picks output format and downscale, then the frame).
"""

import json
import pathlib
import subprocess
import sys
import tempfile


def ffmpeg(*args):
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True
    )


def videos(out, tmp):
    src = ["-f", "lavfi", "-i", "testsrc=size=32x24:rate=25"]
    ntsc = ["-f", "lavfi", "-i", "testsrc=size=32x24:rate=30000/1001"]
    sound = ["-f", "lavfi", "-i", "sine=frequency=440:duration=0.12"]
    h264 = ["-frames:v", "3", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    made = {
        "index_at_end.mp4": [*src, *h264],
        "faststart.mp4": [*src, *h264, "-movflags", "+faststart"],
        "ntsc_faststart.mp4": [*ntsc, *h264, "-movflags", "+faststart"],
        "sound.mp4": [*src, *sound, *h264, "-c:a", "aac", "-b:a", "16k"],
        "quicktime.mov": [*src, *h264],
        "matroska.mkv": [*src, *h264],
        "sound.mkv": [*src, *sound, *h264, "-c:a", "libopus", "-b:a", "8k"],
        "webm.webm": [*src, "-frames:v", "3", "-c:v", "libvpx", "-b:v", "20k"],
    }
    bframes = ["-frames:v", "6", "-c:v", "libx264", "-bf", "2", "-pix_fmt", "yuv420p"]
    made.update(
        {
            "bframes.mp4": [*src, *bframes],
            "vfr.mp4": [
                *src,
                "-vf",
                "setpts='if(lt(N,2),N*2,2+N)/25/TB'",
                "-fps_mode",
                "vfr",
                *h264,
                "-frames:v",
                "6",
            ],
            "timecode.mov": [*ntsc, *h264, "-timecode", "01:00:00;00"],
        }
    )
    for name, args in made.items():
        ffmpeg(*args, str(out / name))
    # Edit lists made by stream copy of the B-frame seed: from a later start, and delayed.
    bframes_path = str(out / "bframes.mp4")
    ffmpeg("-ss", "0.1", "-i", bframes_path, "-c", "copy", str(out / "late_edit.mp4"))
    ffmpeg("-itsoffset", "0.1", "-i", bframes_path, "-c", "copy", str(out / "empty_edit.mp4"))


def notifications(out):
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        kwargs = dict(
            endpoint_url=f"http://{host}:{port}",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        s3 = boto3.client("s3", **kwargs)
        sqs = boto3.client("sqs", **kwargs)
        queue = sqs.create_queue(QueueName="ingress")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        s3.create_bucket(Bucket="uploads")
        s3.put_bucket_notification_configuration(
            Bucket="uploads",
            NotificationConfiguration={
                "QueueConfigurations": [
                    {"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}
                ]
            },
        )
        s3.put_object(Bucket="uploads", Key="in/My Holiday+Clip é.mp4", Body=b"\0" * 64)
        bodies = []
        while True:
            got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)
            messages = got.get("Messages", [])
            if not messages:
                break
            bodies.extend(m["Body"] for m in messages)
        for i, body in enumerate(bodies):
            (out / f"moto_{i}.json").write_text(body)
    finally:
        server.stop()


EVENT = {
    "version": "0",
    "id": "1234abcd-12ab-34cd-56ef-1234567890ab",
    "detail-type": "MediaConvert Job State Change",
    "source": "aws.mediaconvert",
    "account": "111122223333",
    "time": "2022-12-19T19:07:12Z",
    "region": "us-west-2",
    "resources": ["arn:aws:mediaconvert:us-west-2:111122223333:jobs/1671476818694-phptj0"],
}


def events(out):
    # The MediaConvert User Guide, "File group with a frame capture output":
    # https://docs.aws.amazon.com/mediaconvert/latest/ug/file-group-with-frame-capture-output.html
    base = {
        "timestamp": 1536964380391,
        "accountId": "111122223333",
        "queue": "arn:aws:mediaconvert:us-west-2:111122223333:queues/Default",
        "jobId": "1671476818694-phptj0",
        "userMetadata": {"application": "framefleet", "video_id": "v-1"},
    }
    details = {
        "complete": {
            "status": "COMPLETE",
            "outputGroupDetails": [
                {
                    "outputDetails": [
                        {
                            "outputFilePaths": ["s3://frames/v-1/file.0000036.jpg"],
                            "durationInMs": 185000,
                            "videoDetails": {"widthInPx": 1280, "heightInPx": 720},
                        }
                    ],
                    "type": "FILE_GROUP",
                },
                {
                    "outputDetails": [
                        {
                            "outputFilePaths": ["s3://out/v-1/preview.mp4"],
                            "durationInMs": 180041,
                        }
                    ],
                    "type": "FILE_GROUP",
                },
            ],
        },
        "error": {
            "status": "ERROR",
            "errorCode": 1010,
            "errorMessage": "Unable to open input file",
        },
        "progressing": {"status": "PROGRESSING"},
        "status_update": {
            "status": "STATUS_UPDATE",
            "framesDecoded": 120,
            "jobProgress": {"phaseProgress": {}, "jobPercentComplete": 40},
        },
    }
    for name, detail in details.items():
        (out / f"{name}.json").write_text(json.dumps({**EVENT, "detail": {**base, **detail}}))


def frame_batch(out):
    batch = {
        "version": 1,
        "video_id": "my-holiday-clip-0f3a9c2b",
        "batch_index": 3,
        "frames_bucket": "framefleet-frames",
        "frame_keys": [
            "my-holiday-clip-0f3a9c2b/clip.0000031.jpg",
            "my-holiday-clip-0f3a9c2b/clip.0000032.jpg",
        ],
        "params": {
            "blur": {"modifier": 1.0},
            "format": "jpeg",
            "quality": 90,
            "max_width": None,
            "max_height": None,
            "max_pixels": 64000000,
        },
    }
    (out / "batch.json").write_text(json.dumps(batch, separators=(",", ":")))
    batch["params"] = {"blur": {"sigma": 0.0}, "format": "png", "max_width": 320}
    (out / "png_sigma.json").write_text(json.dumps(batch, separators=(",", ":")))


def frames(probe_out, process_out, tmp):
    made = {
        "frame.jpg": ["-pix_fmt", "yuvj420p"],
        "gray.jpg": ["-pix_fmt", "gray"],
        "frame444.jpg": ["-pix_fmt", "yuvj444p"],
        "frame.png": ["-pix_fmt", "rgb24"],
        "gray16.png": ["-pix_fmt", "gray16be"],
        "rgba.png": ["-pix_fmt", "rgba"],
    }
    for i, (name, args) in enumerate(made.items()):
        path = tmp / name
        ffmpeg("-f", "lavfi", "-i", "testsrc=size=24x16", "-frames:v", "1", *args, str(path))
        data = path.read_bytes()
        (probe_out / name).write_bytes(data)
        # Choice bytes: JPEG out, PNG out, PNG out downscaled to 4 px wide.
        (process_out / name).write_bytes(bytes([(0, 1, 0b10011)[i % 3]]) + data)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    root = pathlib.Path(sys.argv[1])
    dirs = {}
    for target in [
        "container_probe",
        "s3_notification",
        "mediaconvert_event",
        "frame_batch",
        "edge_probe",
        "edge_process",
    ]:
        dirs[target] = root / target
        dirs[target].mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        videos(dirs["container_probe"], tmp)
        notifications(dirs["s3_notification"])
        events(dirs["mediaconvert_event"])
        frame_batch(dirs["frame_batch"])
        frames(dirs["edge_probe"], dirs["edge_process"], tmp)


if __name__ == "__main__":
    main()
