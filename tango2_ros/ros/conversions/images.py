"""sensor_msgs/Image and numpy arrays."""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import Image

CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1}


def image_from_ros(message: Image) -> np.ndarray:
    """An HxWx3 uint8 RGB array, or ValueError naming what is wrong with the message."""
    channels = CHANNELS.get(message.encoding)
    if channels is None:
        raise ValueError(f"encoding {message.encoding!r} is not one of {', '.join(CHANNELS)}")
    if message.width == 0 or message.height == 0:
        raise ValueError("the image is empty")
    row = message.width * channels
    if message.step < row or len(message.data) < message.step * message.height:
        raise ValueError(f"{len(message.data)} bytes do not hold {message.height} rows of {message.width} x {channels} "
                         f"(step {message.step})")
    # a view of the message's own buffer: a 640x480 frame is not copied again before the resize
    pixels = np.frombuffer(message.data, dtype=np.uint8)[: message.step * message.height]
    pixels = pixels.reshape(message.height, message.step)[:, :row].reshape(message.height, message.width, channels)
    if message.encoding == "bgr8":
        return pixels[:, :, ::-1]
    if message.encoding == "mono8":
        return np.repeat(pixels, 3, axis=2)
    return pixels


def image_to_ros(rgb: np.ndarray, encoding: str = "rgb8") -> Image:
    """An HxWx3 uint8 RGB array as an rgb8 or bgr8 Image (unstamped)."""
    pixels = rgb if encoding == "rgb8" else rgb[:, :, ::-1]
    height, width = rgb.shape[:2]
    return Image(height=height, width=width, encoding=encoding, is_bigendian=0, step=width * 3,
                 data=np.ascontiguousarray(pixels).tobytes())
