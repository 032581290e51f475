"""Camera frames to small uint8 RGB tensors: decode, resize on the shorter side, center-crop, CHW.

Why decode at a reduced scale: libjpeg can decode at 1/2, 1/4 or 1/8 size for a fraction of the cost of a
full decode, and a 64-pixel target never needs the full 640×480. The largest reduction that still leaves the
shorter side at or above the target is used, then INTER_AREA resizes the rest of the way.
"""

from __future__ import annotations

import cv2
import numpy as np

_REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


def output_shape(height: int, width: int, size: int, crop: bool) -> tuple[int, int]:
    """(H, W) stored for a ``height`` × ``width`` source."""
    if crop:
        return size, size
    scale = size / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def decode_frame(
    data: bytes, src_hw: tuple[int, int], size: int, crop: bool, encoding: str = "jpeg"
) -> np.ndarray | None:
    """(3, H, W) uint8 RGB, or None when the bytes do not decode."""
    buf = np.frombuffer(data, np.uint8)
    shorter = min(src_hw) if src_hw[0] > 0 else 0
    flag = cv2.IMREAD_COLOR
    if encoding == "jpeg" and shorter:
        for factor, reduced in _REDUCED:
            if shorter // factor >= size:
                flag = reduced
                break
    image = cv2.imdecode(buf, flag)
    if image is None:
        return None
    return to_tensor(image, size, crop)


def to_tensor(image: np.ndarray, size: int, crop: bool) -> np.ndarray:
    """BGR (H, W, 3) → resized, cropped RGB (3, h, w) uint8."""
    h, w = image.shape[:2]
    out_h, out_w = output_shape(h, w, size, crop)
    scale = size / min(h, w)
    new_h, new_w = (max(out_h, round(h * scale)), max(out_w, round(w * scale))) if crop else (out_h, out_w)
    if (new_h, new_w) != (h, w):
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        image = cv2.resize(image, (new_w, new_h), interpolation=interp)
    top, left = (new_h - out_h) // 2, (new_w - out_w) // 2
    image = image[top : top + out_h, left : left + out_w]
    return np.ascontiguousarray(image[:, :, ::-1].transpose(2, 0, 1))
