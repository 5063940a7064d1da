"""Image files decoded the way the encoder sees them, for the encoder and the dashboard.

One decoder for both, so the dashboard shows what was encoded: upright per EXIF, any
mode as 8-bit RGB (16-bit pixels scaled, not clipped), a pixel limit against
decompression bombs, and every failure a scraped data set has as one ImageReadError.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from store.vocab import Status


class ImageReadError(Exception):
    """The file cannot be used as an image; `status` says how it failed."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def load_rgb(path: Path, max_pixels: int) -> np.ndarray:
    """The image as an H×W×3 uint8 array, upright per its EXIF orientation."""
    return np.ascontiguousarray(np.asarray(decode(path, max_pixels), dtype=np.uint8))


def decode(source: Path | bytes, max_pixels: int) -> Image.Image:
    """A file (or its bytes, as the dashboard reads them) as an upright RGB image."""
    if isinstance(source, bytes):
        size, opened = len(source), io.BytesIO(source)
    else:
        try:
            size = source.stat().st_size
        except FileNotFoundError:
            # Gone between listing and encoding: not a property of the content, so the
            # caller must not record it against the file's hash.
            raise ImageReadError(Status.MISSING, "file disappeared before it was read") from None
        except OSError as exc:
            raise ImageReadError(
                Status.UNREADABLE, f"cannot read file: {exc.strerror or exc}"
            ) from exc
        opened = source
    if size == 0:
        raise ImageReadError(Status.UNREADABLE, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Pillow warns before it refuses; we want one clear refusal, not a warning.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(opened) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise ImageReadError(
                        Status.UNREADABLE,
                        f"image is {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,}",
                    )
                im.load()
                im = ImageOps.exif_transpose(im)
                return to_rgb(im)
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(Status.UNREADABLE, "not an image Pillow can identify") from None
    except FileNotFoundError:
        raise ImageReadError(Status.MISSING, "file disappeared before it was read") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageReadError(Status.UNREADABLE, f"decompression bomb refused: {exc}") from None
    except OSError as exc:
        # Truncated or corrupt data surfaces as OSError from im.load().
        raise ImageReadError(Status.UNREADABLE, f"cannot decode image: {exc}") from None
    except (ValueError, SyntaxError) as exc:
        raise ImageReadError(Status.UNREADABLE, f"cannot decode image: {exc}") from None


def to_rgb(im: Image.Image) -> Image.Image:
    """Any mode as 8-bit RGB.

    Pillow's convert("RGB") clips 16- and 32-bit integer pixels at 255 instead of scaling
    them, so a 16-bit grayscale PNG comes out all white: scale those by hand.
    """
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        data = np.asarray(im).astype(np.float64)
        if im.mode == "F" and data.size and np.nanmax(data) <= 1.0:
            data = data * 255.0
        elif im.mode != "F" and (im.mode.startswith("I;16") or data.max(initial=0) > 255):
            data = data / 257.0  # 0..65535 onto 0..255
        gray = np.clip(np.nan_to_num(data), 0, 255).round().astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    return im.convert("RGB")
