"""Images as the dashboard shows them: decoded as the encoder saw them (upright, 16-bit
scaled), fitted to a square, face box drawn."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw, ImageOps

from daemon.common.imaging import decode

BOX_COLOUR = (0, 220, 90)
BOX_WIDTH = 3


def render(data: bytes, box: tuple[int, int, int, int] | None, side: int, max_pixels: int) -> bytes:
    """JPEG bytes of the image scaled (up or down) to fit a side×side square.

    Both images of a pair come out the same size whatever their originals, so faces can be
    compared. The encoder found its box on the image it decoded: decoded the same way here
    (ImageReadError when the encoder would refuse it too).
    """
    rgb = decode(data, max_pixels)
    w, h = rgb.size
    shown = ImageOps.contain(rgb, (side, side), Image.Resampling.LANCZOS)
    if box is not None and w > 0 and h > 0:
        sx, sy = shown.width / w, shown.height / h
        left, top = max(0, box[0]) * sx, max(0, box[1]) * sy
        right, bottom = min(w, box[2]) * sx - 1, min(h, box[3]) * sy - 1
        if right > left and bottom > top:
            ImageDraw.Draw(shown).rectangle(
                (left, top, right, bottom), outline=BOX_COLOUR, width=BOX_WIDTH
            )
    out = io.BytesIO()
    shown.save(out, "JPEG", quality=88)
    return out.getvalue()


# Margin around the face box on each side, as a share of the box's larger side: enough
# hair, ears and chin to judge a face by, little enough that a bystander stays out.
CROP_MARGIN = 0.35


def crop_box(
    box: tuple[int, int, int, int], width: int, height: int, margin: float = CROP_MARGIN
) -> tuple[int, int, int, int]:
    """The square around a face box plus margin, clipped to the image."""
    left, top, right, bottom = box
    side = max(right - left, bottom - top, 1) * (1 + 2 * margin)
    cx, cy = (left + right) / 2, (top + bottom) / 2
    half = side / 2
    return (
        max(0, int(cx - half)),
        max(0, int(cy - half)),
        min(width, int(cx + half + 0.5)),
        min(height, int(cy + half + 0.5)),
    )


def face_crop(
    data: bytes, box: tuple[int, int, int, int] | None, side: int, max_pixels: int
) -> bytes:
    """JPEG bytes of the face (the stored box with margin) scaled to fit side×side, so a
    face from a full-body shot or a group photo is as large as one from a tight crop.
    Without a box (no face found, whole image used) the whole image is returned."""
    rgb = decode(data, max_pixels)
    if box is not None:
        region = crop_box(box, rgb.width, rgb.height)
        if region[2] > region[0] and region[3] > region[1]:
            rgb = rgb.crop(region)
    shown = ImageOps.contain(rgb, (side, side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    shown.save(out, "JPEG", quality=88)
    return out.getvalue()
