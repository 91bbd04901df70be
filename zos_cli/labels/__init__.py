"""Names everywhere a person reads: topic labels and topic references (docs/labels.md).

The public API, for commands and for any stage the import rule lets in:

- `topic_labels(db, keys, *, config=None) -> dict[key, label]`: a label for each topic key,
  made from the newest names (`Theo (Tidepool Makers)`, `#general (Tidepool Makers)`,
  `Theo ↔ Jun (Tidepool Makers)`, `Theo in #general`, `:tidepool:`,
  `subject kiln (Tidepool Makers)`, `Theo (everywhere)`), in a few queries whatever the
  number of keys. Users without the privacy-gate role and erased users are `<chat_N>`, as in
  a reflection prompt. Never raises on a key: a malformed one is its own label.
- `label_rows(db, rows, *, config=None, key="topic_key", field_name="label", topic_of=None,
  labeler=None) -> Iterator[dict]`: the rows, each with `label` right after its key field
  (`topic_of` turns a field that is no key, such as a user id, into one); streams, a batch
  at a time.
- `Labeler(db, config=None)`: what both use; one Labeler per listing keeps each `<chat_N>`
  the same person across several calls of `.labels(keys)`; `.readable(text)` names the
  topic keys inside a text (a ledger reason) by their labels.
- `resolve_reference(db, ref, *, config=None, server=None, global_=False) -> topic_key`:
  `@name`, `@name --global`, `#channel`, `channel:name`, `@a+@b`, `subject:name`, or a key
  (returned as it is when well-formed). Raises zos's UsageProblem (exit 2) when the
  reference matches several topics (listing them) or none (naming the closest);
  topics.InvalidTopicKey (also exit 2) for a malformed key.
- `resolve_server(db, server) -> server_id`: `--server ID|NAME`.
- `server_place(db, server_id) -> str`: what a label puts in its parentheses for a server.
- `is_reference(text)`, `REFERENCE_HELP`: for help texts and argument checks.

`config` is a zos.toml Config (for its privacy-gate roles) or None: then the gate roles stored
on the servers apply, and nothing imports pydantic.

`labels/names.py` holds the naming rule itself (also used by reflection's prompts).
"""

from zos_cli.labels.references import (
    REFERENCE_HELP,
    is_reference,
    resolve_reference,
    resolve_server,
)
from zos_cli.labels.labeler import Labeler, label_rows, server_place, topic_labels

__all__ = [
    "REFERENCE_HELP",
    "Labeler",
    "is_reference",
    "label_rows",
    "resolve_reference",
    "resolve_server",
    "server_place",
    "topic_labels",
]
