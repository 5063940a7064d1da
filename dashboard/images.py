"""Images as the dashboard shows them: upright, fitted to a square, face box drawn."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw, ImageOps

BOX_COLOUR = (0, 220, 90)
BOX_WIDTH = 3


def render(data: bytes, box: tuple[int, int, int, int] | None, side: int) -> bytes:
    """JPEG bytes of the image scaled (up or down) to fit a side×side square.

    Both images of a pair come out the same size whatever their originals, so faces can be
    compared. The encoder found its box on the EXIF-upright image: same transpose here.
    """
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        rgb = ImageOps.exif_transpose(im).convert("RGB")
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
