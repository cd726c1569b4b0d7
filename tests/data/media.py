"""Small real clips in every container the decoders read, written with PyAV."""
from pathlib import Path

import av
import numpy as np

# One container and codec PyAV writes for each extension: the decoders (decord, else PyAV) read them all.
CONTAINERS = {".mp4": ("mp4", "libx264"), ".m4v": ("mp4", "libx264"), ".mov": ("mov", "libx264"),
              ".qt": ("mov", "libx264"), ".mkv": ("matroska", "libx264"), ".webm": ("webm", "libvpx-vp9"),
              ".avi": ("avi", "mpeg4"), ".divx": ("avi", "mpeg4"), ".mpg": ("mpeg", "mpeg2video"),
              ".mpeg": ("mpeg", "mpeg1video"), ".vob": ("vob", "mpeg2video"), ".flv": ("flv", "flv"),
              ".f4v": ("f4v", "libx264"), ".wmv": ("asf", "wmv2"), ".asf": ("asf", "wmv2"),
              ".3gp": ("3gp", "libx264"), ".3g2": ("3g2", "libx264"), ".ts": ("mpegts", "libx264"),
              ".mts": ("mpegts", "libx264"), ".m2ts": ("mpegts", "libx264"), ".ogv": ("ogg", "libvpx"),
              ".mxf": ("mxf", "mpeg2video")}


def write_clip(path: Path, *, frames: int = 12, seed: int = 0) -> Path:
    """A small real clip in the container of ``path``'s extension."""
    container_format, codec = CONTAINERS[path.suffix.lower()]
    pixels = np.random.default_rng(seed).integers(0, 255, (frames, 48, 64, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for frame in pixels:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path
