"""What zos says about a shared file that is not an image it reads (audio, video, PDFs, archives,
models, HEIC photos, ...): its type, size and name, and for WAV audio its length. No model ever
sees these; the row is complete with analyzer "offline". images.py re-exports all of it.
"""

from __future__ import annotations

import io
import struct
import wave
from dataclasses import dataclass
from pathlib import PurePosixPath

# Enough of a file's start for every header read here: a caller may pass just this much of a
# large local file (with its real size) instead of reading it all.
FILE_HEAD_BYTES = 64 * 1024

_ALIASES = {"audio/x-wav": "audio/wav", "audio/wave": "audio/wav", "audio/vnd.wave": "audio/wav",
            "audio/mp3": "audio/mpeg", "audio/x-m4a": "audio/mp4", "audio/x-flac": "audio/flac",
            "application/x-zip-compressed": "application/zip", "image/jpg": "image/jpeg",
            "application/sla": "model/stl", "model/x.stl-binary": "model/stl"}

# By extension, when neither the bytes nor the declared type tell (the standard library's table
# varies with the machine's /etc/mime.types, so zos keeps its own).
_BY_EXTENSION = {
    "wav": "audio/wav", "mp3": "audio/mpeg", "ogg": "audio/ogg", "oga": "audio/ogg",
    "opus": "audio/opus", "flac": "audio/flac", "m4a": "audio/mp4", "aac": "audio/aac",
    "mp4": "video/mp4", "m4v": "video/mp4", "mov": "video/quicktime", "webm": "video/webm",
    "mkv": "video/x-matroska", "avi": "video/x-msvideo", "pdf": "application/pdf",
    "zip": "application/zip", "7z": "application/x-7z-compressed", "gz": "application/gzip",
    "tar": "application/x-tar", "rar": "application/vnd.rar", "txt": "text/plain",
    "md": "text/markdown", "csv": "text/csv", "json": "application/json", "stl": "model/stl",
    "obj": "model/obj", "3mf": "model/3mf", "svg": "image/svg+xml", "heic": "image/heic",
    "bmp": "image/bmp", "tif": "image/tiff", "tiff": "image/tiff", "png": "image/png",
    "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}

_LABELS = {
    "audio/wav": "WAV audio", "audio/mpeg": "MP3 audio", "audio/ogg": "Ogg audio",
    "audio/opus": "Opus audio", "audio/flac": "FLAC audio", "audio/mp4": "M4A audio",
    "audio/aac": "AAC audio", "video/mp4": "MP4 video", "video/quicktime": "QuickTime video",
    "video/webm": "WebM video", "video/x-matroska": "Matroska video", "video/x-msvideo":
    "AVI video", "application/pdf": "PDF document", "application/zip": "ZIP archive",
    "application/x-7z-compressed": "7-Zip archive", "application/gzip": "gzip archive",
    "application/x-tar": "tar archive", "application/vnd.rar": "RAR archive",
    "text/plain": "text file", "text/markdown": "Markdown text", "text/csv": "CSV table",
    "application/json": "JSON file", "model/stl": "STL model", "model/obj": "OBJ model",
    "model/3mf": "3MF model", "image/svg+xml": "SVG image", "image/heic": "HEIC image",
    "image/bmp": "BMP image", "image/tiff": "TIFF image", "image/png": "PNG image",
    "image/jpeg": "JPEG image", "image/gif": "GIF image", "image/webp": "WebP image",
    _BY_EXTENSION["docx"]: "Word document", _BY_EXTENSION["xlsx"]: "Excel spreadsheet",
}


@dataclass(frozen=True)
class FileFacts:
    file_name: str  # as given: the poster's text
    content_type: str | None  # from the bytes, else the declared type, else the extension
    kind: str  # what to call it: "WAV audio", "PDF document", "file"
    size_bytes: int | None
    duration_seconds: float | None = None  # WAV only; MP3, Ogg, video: None (see file_facts)


def file_facts(data: bytes | None, file_name: str, content_type: str | None,
               size_bytes: int | None) -> FileFacts:
    """Type, size, name and -- where the header says it cheaply -- duration of a non-image file.

    `data` may be the whole file, its first FILE_HEAD_BYTES, or None (nothing read: the type
    then comes from the declared content type or the name). `size_bytes` is the real size
    (len(data) when None). Duration: WAV through the standard `wave` module (PCM; Python 3.11's
    `wave` refuses float and "extensible" WAV, which get None). MP3, Ogg/Opus and video are not
    timed: their length is not in a fixed header (MP3 needs its frames scanned, Ogg its last
    page) and no extra library is taken on for it."""
    sniffed = _sniff(data) if data else None
    declared = _clean_type(content_type)
    extension = PurePosixPath(file_name or "").suffix.lower().lstrip(".")
    mime = sniffed or declared or _BY_EXTENSION.get(extension)
    size = size_bytes if size_bytes is not None else (len(data) if data is not None else None)
    duration = _wav_seconds(data, size) if data and mime == "audio/wav" else None
    return FileFacts(file_name, mime, _kind(mime), size, duration)


def offline_file_description(facts: FileFacts) -> str:
    """"WAV audio, 0:42, 3.4 MB: voice-note.wav" (the parts that are known)."""
    parts = [facts.kind]
    if facts.duration_seconds is not None:
        parts.append(human_duration(facts.duration_seconds))
    if facts.size_bytes is not None:
        parts.append(human_size(facts.size_bytes))
    name = one_line(facts.file_name)
    return ", ".join(parts) + (f": {name}" if name else "")


def human_size(size: int) -> str:
    """1024-based, as Discord shows sizes: "512 bytes", "7 KB", "3.4 MB"."""
    if size < 1024:
        return "1 byte" if size == 1 else f"{size} bytes"
    if round(size / 1024) < 1024:
        return f"{round(size / 1024)} KB"
    if size < 1024**3:
        return f"{size / 1024**2:.1f} MB"
    return f"{size / 1024**3:.1f} GB"


def human_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def one_line(text: str | None, limit: int = 255) -> str:
    """A poster's text (a file name) on one line: control characters become spaces, runs of
    spaces one, and it is cut at `limit`. Nothing else changes: it is data, shown as given."""
    cleaned = "".join(" " if ord(c) < 32 or 127 <= ord(c) < 160 else c for c in text or "")
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def _clean_type(content_type: str | None) -> str | None:
    """The declared type, lower-case, without parameters; "application/octet-stream" says
    nothing (uploaders send it for anything), so it counts as no type at all."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media in ("", "application/octet-stream", "binary/octet-stream"):
        return None
    return _ALIASES.get(media, media)


def _kind(mime: str | None) -> str:
    if mime in _LABELS:
        return _LABELS[mime]
    major = (mime or "").split("/")[0]
    return f"{major} file" if major in ("audio", "video", "image", "text") else "file"


def _sniff(data: bytes) -> str | None:
    """The type the first bytes prove, for the formats zos names; None otherwise."""
    head = data[:16]
    if head[:4] == b"RIFF" and head[8:12] in (b"WAVE", b"WEBP", b"AVI "):
        return {b"WAVE": "audio/wav", b"WEBP": "image/webp", b"AVI ": "video/x-msvideo"}[head[8:12]]
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"M4A ", b"M4B "):
            return "audio/mp4"
        if brand in (b"heic", b"heix", b"mif1", b"msf1"):
            return "image/heic"
        return "video/quicktime" if brand == b"qt  " else "video/mp4"
    for magic, mime in ((b"%PDF-", "application/pdf"), (b"PK\x03\x04", "application/zip"),
                        (b"OggS", "audio/ogg"), (b"fLaC", "audio/flac"), (b"ID3", "audio/mpeg"),
                        (b"\x1aE\xdf\xa3", "video/webm"), (b"\x89PNG\r\n\x1a\n", "image/png"),
                        (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"),
                        (b"\x1f\x8b", "application/gzip"), (b"7z\xbc\xaf\x27\x1c",
                                                            "application/x-7z-compressed")):
        if head.startswith(magic):
            return mime
    if len(head) >= 2 and head[0] == 0xFF and head[1] in (0xFB, 0xF3, 0xF2, 0xFA):
        return "audio/mpeg"  # an MP3 frame header without an ID3 tag
    return None


def _wav_seconds(data: bytes, size: int | None) -> float | None:
    """Frames ÷ rate from the WAV header. The header's frame count is the poster's claim: it is
    capped by what the file's real size can hold."""
    try:
        with wave.open(io.BytesIO(data)) as wav:
            rate, frames = wav.getframerate(), wav.getnframes()
            frame_bytes = wav.getsampwidth() * wav.getnchannels()
    except (wave.Error, EOFError, ValueError, struct.error, OSError):
        return None
    if rate <= 0:
        return None
    if size is not None and frame_bytes > 0:
        frames = min(frames, size // frame_bytes)
    return round(frames / rate, 3)
