"""ingest_log.channel_id: the channel an export file held.

Why: a DM channel may arrive in several export files over several runs (an export split by
date), and the consent gate must count everyone seen in any of them, not only in the files of
the current run: a group DM whose first part was refused for one participant must not be
stored from a later part that participant does not speak in. The participant ids of each
file are already in `dm_participant_ids`; this names the channel they belong to.

Rows written before this migration that hold a DM (`dm_participant_ids` set) get the id from
DiscordChatExporter's file name (`… [<channel id>].json`); a wrong guess could only add
participants to a channel (a stricter gate, never a looser one). Other rows stay NULL.
"""

import re

_CHANNEL_IN_NAME = re.compile(r"\[(\d{1,20})\]\.json$")


def upgrade(conn):
    conn.execute("ALTER TABLE ingest_log ADD COLUMN channel_id TEXT")
    conn.execute("CREATE INDEX idx_ingest_log_channel ON ingest_log (channel_id)")
    rows = conn.execute(
        "SELECT id, path FROM ingest_log WHERE dm_participant_ids IS NOT NULL").fetchall()
    for row_id, path in rows:
        found = _CHANNEL_IN_NAME.search(path or "")
        if found:
            conn.execute("UPDATE ingest_log SET channel_id = ? WHERE id = ?",
                         [found.group(1), row_id])
