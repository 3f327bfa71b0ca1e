"""Decoding speed: vosseg's reader (PyAV, in-process) against an ffmpeg subprocess pipe (the reader
before issue 10), on the same video; frames per second of RGB arrays delivered, best of N rounds.

    python tools/decode_speed.py VIDEO [ROUNDS]

The pipe side needs the test extra's imageio-ffmpeg (its ffmpeg binary); docs/RESULTS.md.
"""
import json
import sys
import time

import imageio_ffmpeg

from vossegcli.io.video import open_frames

video, rounds = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2


def ours() -> int:
    with open_frames(video) as reader:
        return sum(1 for _ in reader)


def pipe() -> int:
    frames = imageio_ffmpeg.read_frames(video, pix_fmt="rgb24")
    next(frames)  # the meta dict
    return sum(1 for _ in frames)


result = {"video": video}
for name, fn in (("pyav", ours), ("ffmpeg_pipe", pipe)) * rounds:
    t = time.perf_counter()
    n = fn()
    fps = n / (time.perf_counter() - t)
    entry = result.setdefault(name, {"frames": n, "fps": []})
    entry["fps"].append(round(fps, 1))
print(json.dumps(result))
