#!/usr/bin/env python3
"""OpenCV baseline for `worker bench`: the same edge pipeline, single-threaded.

Usage: bench_opencv.py --frames DIR [--passes N]
Prints one JSON line per pipeline, in the schema `worker bench --json` uses:
  opencv             imdecode (colour), GaussianBlur, cvtColor, two 3x3 Sobel (CV_32F),
                     magnitude, convertScaleAbs, imencode JPEG q90
  opencv-codec-floor imdecode (IMREAD_GRAYSCALE: libjpeg luma-only) + imencode grey q90
Every frame is loaded into memory first; the fastest of N passes is reported.
With --merge FILE (the `worker bench --json` output) it prints the ratio table instead.
"""
import argparse
import json
import os
import sys
import time


def load_frames(folder):
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith((".jpg", ".jpeg")))
    if not names:
        sys.exit(f"no .jpg/.jpeg files in {folder}")
    frames = []
    for name in names:
        with open(os.path.join(folder, name), "rb") as f:
            frames.append(f.read())
    return frames


def bench(frames, passes):
    import cv2
    import numpy as np

    cv2.setNumThreads(1)
    cv2.setUseOptimized(True)
    bufs = [np.frombuffer(f, dtype=np.uint8) for f in frames]
    first = cv2.imdecode(bufs[0], cv2.IMREAD_GRAYSCALE)
    height, width = first.shape
    q90 = [cv2.IMWRITE_JPEG_QUALITY, 90]

    def edges(buf):
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        h, w = img.shape[:2]
        sigma = w * h / 3_630_000.0  # Edgy's rule, modifier 1
        blurred = cv2.GaussianBlur(img, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
        gray = cv2.cvtColor(blurred, cv2.COLOR_BGR2GRAY)
        gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE)
        gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE)
        mag = cv2.convertScaleAbs(cv2.magnitude(gx, gy))
        return cv2.imencode(".jpg", mag, q90)[1]

    def codec_floor(buf):
        gray = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
        return cv2.imencode(".jpg", gray, q90)[1]

    for name, fn in (("opencv", edges), ("opencv-codec-floor", codec_floor)):
        fn(bufs[0])  # warm-up
        best = float("inf")
        for _ in range(passes):
            t = time.perf_counter()
            for b in bufs:
                fn(b)
            best = min(best, time.perf_counter() - t)
        ms = best * 1000.0 / len(bufs)
        print(json.dumps({
            "pipeline": name, "frames": len(bufs), "width": width, "height": height,
            "threads": 1, "ms_per_frame": round(ms, 3), "fps": round(len(bufs) / best, 3),
        }), flush=True)


def table(lines):
    rows = {r["pipeline"]: r for r in (json.loads(l) for l in lines if l.strip().startswith("{"))}
    ms = lambda name: rows[name]["ms_per_frame"] if name in rows else None
    any_row = next(iter(rows.values()))
    print(f"\n{any_row['frames']} frames, {any_row['width']}x{any_row['height']}")
    print(f"{'pipeline':<20} {'threads':>7} {'ms/frame':>9} {'fps':>8}")
    for r in rows.values():
        print(f"{r['pipeline']:<20} {r['threads']:>7} {r['ms_per_frame']:>9.3f} {r['fps']:>8.1f}")
    ratios = [
        ("edge vs seed (speed-up)", "seed", "edge", False),
        ("edge / codec-floor (time)", "edge", "codec-floor", False),
        ("edge / codec-floor-edges (time: kernel share)", "edge", "codec-floor-edges", False),
        ("codec-floor-edges / codec-floor (time: free kernel)", "codec-floor-edges", "codec-floor", False),
        ("edge-parallel vs edge (speed-up)", "edge", "edge-parallel", True),
        ("edge vs opencv, per core (speed-up)", "opencv", "edge", False),
        ("ceiling: opencv / opencv-codec-floor", "opencv", "opencv-codec-floor", False),
    ]
    print()
    for label, num, den, parallel in ratios:
        if ms(num) is not None and ms(den) is not None:
            value = ms(num) / ms(den)
            if parallel:
                label += f" on {rows['edge-parallel']['threads']} threads"
            print(f"{label:<52} {value:6.2f}x")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames")
    p.add_argument("--passes", type=int, default=3)
    p.add_argument("--merge", help="JSON lines to turn into a ratio table")
    a = p.parse_args()
    if a.merge:
        with open(a.merge) as f:
            table(f.readlines())
    else:
        if not a.frames:
            p.error("--frames is required")
        bench(load_frames(a.frames), a.passes)


if __name__ == "__main__":
    main()
