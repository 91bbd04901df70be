"""What zos can tell about a shared attachment by itself, before (or instead of) any model.

- `resolve_local_path`: where an export made with DiscordChatExporter's `--media` keeps the file;
  the asset path in the export is untrusted text, so it may only name a file inside the export's
  own folder.
- `inspect_image` / `examine_image`: type, displayed size and sha256 of image bytes, read only by
  Pillow's PNG, JPEG, GIF and WebP decoders, with the decompression-bomb guard on.
- `downscale_for_model`: the copy a vision model gets: upright, at most 1024 px on the long side,
  re-encoded without any metadata (EXIF GPS included).
- `offline_image_description`, `file_facts`, `offline_file_description`: what is said without a
  model, for images and for every other file.

Nothing here keeps bytes: callers hold them for one item and drop them.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from urllib.parse import unquote

from PIL import Image, ImageOps, UnidentifiedImageError

from zos_cli.analyze.files import (
    FILE_HEAD_BYTES,
    FileFacts,
    file_facts,
    human_size,
    offline_file_description,
    one_line,
)
from zos_cli.records import IMAGE_TYPES

__all__ = [
    "DAMAGED_IMAGE", "FILE_HEAD_BYTES", "IMAGE_TYPES", "MODEL_MAX_SIDE", "NOT_AN_IMAGE",
    "TOO_MANY_PIXELS", "FileFacts", "ImageFacts", "UnreadableImage", "downscale_for_model",
    "examine_image", "file_facts", "human_size", "inspect_image", "offline_file_description",
    "offline_image_description", "resolve_local_path",
]

MODEL_MAX_SIDE = 1024  # a 12 MP photo costs many times the tokens of a 1024 px one, says no more
JPEG_QUALITY = 85
# Pillow may read only these: its other decoders (EPS hands files to Ghostscript, and dozens of
# rarely used formats) never see untrusted bytes. Many phones' JPEGs open as "MPO" (Pillow's
# JPEG opener hands them over; MPO is not an opener of its own).
_PILLOW_FORMATS = ("PNG", "JPEG", "GIF", "WEBP")
_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "MPO": "image/jpeg", "GIF": "image/gif",
         "WEBP": "image/webp"}
_LABEL = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/webp": "WebP"}
# Pillow's own default, used if Image.MAX_IMAGE_PIXELS was switched off (None) somewhere.
_FALLBACK_MAX_PIXELS = 89_478_485
_ORIENTATION = 0x0112  # EXIF tag; values 5-8 turn the picture a quarter: width and height swap

# Why image bytes were not read (UnreadableImage.reason; the run stores it as the skip reason).
NOT_AN_IMAGE = "not_an_image"  # not PNG/JPEG/GIF/WebP at all (whatever the name or type says)
TOO_MANY_PIXELS = "too_many_pixels"  # over Image.MAX_IMAGE_PIXELS: a decompression bomb
DAMAGED_IMAGE = "damaged_image"  # a known format, but truncated or corrupt


@dataclass(frozen=True)
class ImageFacts:
    content_type: str  # from the bytes, not from the name or the declared type
    width: int  # as displayed: EXIF orientation applied
    height: int
    sha256: str  # of the original bytes, as posted
    size_bytes: int
    animated: bool = False  # more than one frame (only the first is ever decoded or sent)


class UnreadableImage(ValueError):
    """Bytes that are not an image zos reads; `reason` is NOT_AN_IMAGE, TOO_MANY_PIXELS or
    DAMAGED_IMAGE, `detail` a short why in zos's words."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


# -- reading images ----------------------------------------------------------------------------


def _max_pixels() -> int:
    return Image.MAX_IMAGE_PIXELS or _FALLBACK_MAX_PIXELS


@contextmanager
def _opened(data: bytes) -> Iterator[Image.Image]:
    """The image, opened lazily (only the header is read) by the four allowed decoders, refused
    before any pixel is decoded if it has more than Image.MAX_IMAGE_PIXELS pixels. Pillow raises
    DecompressionBombError over twice that and only *warns* in between; the warning is made an
    error here, and Pillow's other warnings (odd EXIF, palette notes) are silenced: a library
    module never prints. (catch_warnings swaps process-wide filters; if two threads race, the
    worst case is that the bomb filter outlives the block -- stricter, not looser -- and the
    explicit size check below holds either way.)"""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=_PILLOW_FORMATS)
        except UnidentifiedImageError:
            raise UnreadableImage(NOT_AN_IMAGE, "not a PNG, JPEG, GIF or WebP image") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise UnreadableImage(TOO_MANY_PIXELS, str(error).split(" pixels")[0]
                                  + " pixels, over the decompression-bomb limit") from None
        except MemoryError:
            raise UnreadableImage(TOO_MANY_PIXELS, "too large to open") from None
        except Exception as error:  # noqa: BLE001 - any decoder failure on untrusted bytes
            raise UnreadableImage(DAMAGED_IMAGE, _why(error)) from None
        with image:
            width, height = image.size
            if width * height > _max_pixels():
                raise UnreadableImage(TOO_MANY_PIXELS, f"{width}×{height} is {width * height} "
                                      f"pixels, over the limit of {_max_pixels()}")
            if width < 1 or height < 1:
                raise UnreadableImage(DAMAGED_IMAGE, f"{width}×{height} pixels")
            try:
                yield image
            except (Image.DecompressionBombError, Image.DecompressionBombWarning, MemoryError):
                raise UnreadableImage(TOO_MANY_PIXELS, "too large to decode") from None
            except UnreadableImage:
                raise
            except Exception as error:  # noqa: BLE001 - truncated data, bad chunks, bad EXIF...
                raise UnreadableImage(DAMAGED_IMAGE, _why(error)) from None


def _why(error: Exception) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}"[:200] if text else type(error).__name__


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - broken EXIF only loses the orientation
        return 1


def examine_image(data: bytes) -> ImageFacts:
    """What the bytes are, or UnreadableImage saying why not. The first frame is decoded in
    full (at a reduced scale for JPEG), so truncated and corrupt files are caught here rather
    than when the model copy is made."""
    with _opened(data) as image:
        image.verify()  # PNG: every chunk's CRC; other formats: nothing, hence the load below
    with _opened(data) as image:  # verify() leaves the image unusable: open it again
        width, height = image.size
        content_type = _MIME[image.format or ""]
        if _orientation(image) in (5, 6, 7, 8):
            width, height = height, width
        image.draft("RGB", (MODEL_MAX_SIDE, MODEL_MAX_SIDE))  # JPEG decodes at 1/2..1/8 scale
        image.load()  # the first frame
        # An MPO's extra frames are a phone's depth or preview pictures, not an animation.
        animated = image.format != "MPO" and bool(getattr(image, "is_animated", False))
    return ImageFacts(content_type, width, height, hashlib.sha256(data).hexdigest(), len(data),
                      animated)


def inspect_image(data: bytes) -> ImageFacts | None:
    """ImageFacts, or None when the bytes are not an image zos reads (examine_image says why)."""
    try:
        return examine_image(data)
    except UnreadableImage:
        return None


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def downscale_for_model(data: bytes) -> tuple[bytes, str]:
    """(bytes, MIME type) of the copy a model gets: the first frame, turned upright by its EXIF
    orientation, at most MODEL_MAX_SIDE px on the long side (never enlarged), re-encoded with
    no metadata at all -- no EXIF (so no GPS position), no ICC profile, no comments. PNG for
    images with transparency or a palette (drawings, screenshots, GIFs stay crisp), JPEG at
    quality 85 for the rest. Raises UnreadableImage for bytes examine_image would refuse."""
    with _opened(data) as image:
        image.draft("RGB", (MODEL_MAX_SIDE, MODEL_MAX_SIDE))  # JPEG: cheap decode of big photos
        alpha = _has_alpha(image)
        palette = image.mode in ("P", "1")
        try:
            frame = ImageOps.exif_transpose(image)
        except Exception:  # noqa: BLE001 - unreadable EXIF: send it as stored
            frame = image.copy()
        if frame is None:  # very old Pillow transposed in place
            frame = image
        frame.load()
        fits = max(frame.size) <= MODEL_MAX_SIDE
        out = io.BytesIO()
        if palette and not alpha and fits:
            frame = frame.convert("P" if frame.mode == "P" else "L")
            frame.info = {}  # PNG writes an ICC profile (and more) from info unless cleared
            frame.save(out, "PNG")
            return out.getvalue(), "image/png"
        if frame.mode.startswith("I;16"):  # 16-bit grey PNG: scale to 8 bits, do not clip
            frame = frame.convert("I").point(lambda value: value / 256).convert("L")
        if alpha or palette:
            frame = frame.convert("RGBA" if alpha else "RGB")
        elif frame.mode not in ("RGB", "L"):
            frame = frame.convert("RGB")  # CMYK, YCbCr, ...
        frame.thumbnail((MODEL_MAX_SIDE, MODEL_MAX_SIDE), Image.Resampling.LANCZOS)
        frame.info = {}
        if alpha or palette:
            frame.save(out, "PNG")
            return out.getvalue(), "image/png"
        frame.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
        return out.getvalue(), "image/jpeg"


def offline_image_description(facts: ImageFacts, file_name: str) -> str:
    """What is said of an image without a model: "PNG image, 1600×1200, 240 KB: name.png".
    The file name is the poster's text, shown as given (it is data, never an instruction);
    only control characters become spaces, so it stays on one line, and it is cut at 255."""
    kind = _LABEL.get(facts.content_type, facts.content_type)
    animated = " (animated)" if facts.animated else ""
    text = (f"{kind} image{animated}, {facts.width}×{facts.height}, "
            f"{human_size(facts.size_bytes)}")
    name = one_line(file_name)
    return f"{text}: {name}" if name else text


# -- where a --media export keeps the file --------------------------------------------------------


def resolve_local_path(db, message_id: str, url: str) -> Path | None:
    """The file an export's asset path names, or None.

    DiscordChatExporter's `--media` writes each attachment next to the export
    (`<export>.json_Files/<name>`) and puts that path, relative to the export's folder, where
    the URL would be. The export file that named the message is found through
    message_sources → ingest_log.path (as given at ingest: a relative path is taken from the
    current folder). Each export that carried the message is tried, newest first.

    The path is untrusted text: absolute paths, drive letters, `..` anywhere, NUL, and anything
    that resolves (through symlinks too) outside the export's folder are refused -- None, as for
    a missing file. Web URLs are None too: those are fetched, not looked up here."""
    candidates = _relative_candidates(url)
    if not candidates:
        return None
    rows = db.execute(
        "SELECT l.path FROM message_sources s JOIN ingest_log l ON l.id = s.source_id "
        "WHERE s.message_id = ? AND s.source_type = 'export' AND l.kind = 'export' "
        "ORDER BY s.last_seen_at DESC, l.started_at DESC", [message_id]).fetchall()
    for (export_path,) in rows:
        if not export_path or export_path == "-":  # read from stdin: no folder to look in
            continue
        for relative in candidates:
            found = file_inside(Path(export_path).parent, relative)
            if found is not None:
                return found
    return None


def _relative_candidates(url: str) -> list[str]:
    """The ways an exporter may have written the relative path: as is, with Windows
    separators turned into '/', percent-decoded. Each is checked the same way."""
    if not url or "://" in url or url[:5].lower() in ("file:", "data:"):
        return []
    forms = [url, url.replace("\\", "/")]
    forms += [unquote(form) for form in forms if "%" in form]
    return [form for i, form in enumerate(forms) if form not in forms[:i] and _safe_relative(form)]


def _safe_relative(path: str) -> bool:
    if "\0" in path or not path.strip():
        return False
    if PurePosixPath(path).is_absolute() or path.startswith(("/", "\\")):
        return False
    windows = PureWindowsPath(path)
    if windows.drive or windows.is_absolute():
        return False
    return ".." not in PurePosixPath(path).parts and ".." not in windows.parts


def file_inside(folder: Path, relative: str) -> Path | None:
    """`folder/relative` resolved (symlinks followed) if it is a regular file still inside
    `folder`, else None."""
    try:
        root = folder.resolve(strict=True)
        real = (root / relative).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):  # missing, a symlink loop, an odd name
        return None
    if not real.is_relative_to(root) or real == root:
        return None
    try:
        return real if real.is_file() else None
    except OSError:
        return None
