"""What a worker thread does for one item of `zos analyze`: read or fetch, look, describe.

Nothing here touches the database: run.py reads the rows on its own thread, hands a worker
what it needs (a URL, a resolved local path, the model choice), and writes what comes back.
The fetchers are thread-safe; model calls go through the one seam (zos_cli.reflect.llm) via
describe.py. Every function here returns an outcome and never raises for anything a file, a
server or a model does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from zos_cli.analyze.addresses import parse_url
from zos_cli.records import IMAGE_SUFFIXES, IMAGE_TYPES
from zos_cli.reflect.llm import OFFLINE, ModelChoice, RetryPolicy

if TYPE_CHECKING:  # (httpx costs a dry run ~0.17 s of start-up: only real fetches import it)
    from zos_cli.analyze.fetch import Fetcher, FetchResult

# A typical page, for estimates made before a page is read (`--dry-run`, `--max-cost`).
TYPICAL_PAGE_CHARS = 6_000


def typical_page_tokens() -> int:
    from zos_cli.analyze.describe import estimate_tokens_page
    from zos_cli.analyze.links import PageText

    return estimate_tokens_page(PageText("a page title", "a short description of the page",
                                         "words " * (TYPICAL_PAGE_CHARS // 6)))


def looks_like_image(file_name: str | None, content_type: str | None, url: str) -> bool:
    """Worth reading as an image: the stored type says so, or the name (or URL path) ends like
    one. Bytes decide in the end (inspect_image); this only says whether to get them."""
    if content_type and content_type.split(";")[0].strip().lower() in IMAGE_TYPES:
        return True
    names = [file_name or "", url.split("?")[0].split("#")[0]]
    return any(name.lower().endswith(IMAGE_SUFFIXES) for name in names)


@dataclass
class MediaRead:
    """An attachment read: an image (`facts`, and `data` to describe), a file (`file`), or a
    reason it was skipped (`skip`, with `detail` and the fetch's `http_status`)."""

    facts: object | None = None      # images.ImageFacts
    data: bytes | None = None
    file: object | None = None       # files.FileFacts
    skip: str | None = None
    detail: str | None = None
    error: str | None = None         # something broke on our side: the row fails


def read_media(*, url: str, file_name: str | None, content_type: str | None,
               size_bytes: int | None, local_path: Path | None, is_image: bool,
               fetcher: Fetcher, max_bytes: int) -> MediaRead:
    """The bytes of an attachment (a local asset of an export made with `--media`, else its
    URL through the safe fetcher, only when it looks like an image), and what they are. Of a
    file that is no image only the head is read (what its header says), never downloaded."""
    from zos_cli.analyze import images
    from zos_cli.analyze.files import FILE_HEAD_BYTES, file_facts

    try:
        data = None
        if local_path is not None:
            size_bytes = local_path.stat().st_size
            if is_image and size_bytes > max_bytes:
                return MediaRead(skip="too_large", detail=f"{size_bytes} bytes, over {max_bytes}")
            with open(local_path, "rb") as handle:
                data = handle.read(max_bytes if is_image else FILE_HEAD_BYTES)
        elif parse_url(url) is None:
            # Not a web address: an export's asset path whose file is not where it should be.
            return MediaRead(skip="missing_file", detail="the export's asset file is not there")
        elif is_image:
            result = fetcher.fetch(url, accept=images.IMAGE_TYPES, max_bytes=max_bytes)
            if not result.ok:
                return MediaRead(skip=_media_skip(result), detail=_detail(result))
            data = result.body
        facts = images.inspect_image(data) if data and is_image else None
        if facts is not None:
            return MediaRead(facts=facts, data=data)
        return MediaRead(file=file_facts(data, file_name or "", content_type, size_bytes))
    except OSError as error:
        return MediaRead(skip="missing_file", detail=f"{local_path}: {error.strerror or error}")
    except Exception as error:  # a decoder's bug must not end the run: this row fails
        return MediaRead(error=f"reading the attachment failed: {type(error).__name__}: {error}")


def _media_skip(result: FetchResult) -> str:
    # `not_text` is the fetcher's word for "not a type we accept": here, not an image.
    return "not_image" if result.status == "not_text" else result.status


def _detail(result: FetchResult) -> str:
    code = f" {result.http_status}" if result.http_status else ""
    return f"{result.status}{code}: {result.detail}" if result.detail else f"{result.status}{code}"


def describe(choice: ModelChoice, data: bytes, *, policy: RetryPolicy):
    """The model's description of an image, downscaled first (describe.AnalysisOutcome)."""
    from zos_cli.analyze.describe import AnalysisOutcome, describe_image
    from zos_cli.analyze.images import downscale_for_model

    try:
        small, mime = downscale_for_model(data)
    except Exception as error:
        return AnalysisOutcome(None, [], f"downscaling failed: {type(error).__name__}: {error}")
    try:
        return describe_image(choice, small, mime, policy=policy)
    except Exception as error:  # a bug in the seam must not end the run: this row fails
        return AnalysisOutcome(None, [], f"describing failed: {type(error).__name__}: {error}")


@dataclass
class LinkRead:
    """A link fetched once (shared by every row of its URL): the fetch, what the page says,
    its summary (model or offline), and the model's calls."""

    fetch: FetchResult
    title: str | None = None
    description: str | None = None
    summary: str | None = None
    analyzer: str | None = None
    calls: list | None = None
    tokens: int = 0
    cost_usd: float = 0.0
    error: str | None = None  # the summary failed (the page was read)


def read_link(url: str, *, fetcher: Fetcher, choice: ModelChoice,
              policy: RetryPolicy) -> LinkRead:
    result = fetcher.fetch(url)
    if not result.ok:
        return LinkRead(result)
    from zos_cli.analyze.links import extract_page, offline_link_summary

    try:
        page = extract_page(result.text or "", result.content_type or "", result.final_url or url)
    except Exception as error:
        return LinkRead(result, error=f"reading the page failed: {type(error).__name__}: {error}")
    read = LinkRead(result, title=page.title, description=page.description)
    if choice.offline:
        read.summary, read.analyzer = offline_link_summary(page), OFFLINE
        return read
    from zos_cli.analyze.describe import summarize_page

    try:
        outcome = summarize_page(choice, page, policy=policy)
    except Exception as error:
        read.error = f"summarising failed: {type(error).__name__}: {error}"
        return read
    read.summary, read.analyzer, read.calls = outcome.text, choice.label, outcome.calls
    read.tokens, read.cost_usd, read.error = outcome.tokens, outcome.cost_usd, outcome.error
    return read
