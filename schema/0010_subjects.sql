-- Subjects with a lifecycle, and a full-text index of messages (docs/subjects.md).
--
-- Why: subjects piled up (created provisional, never promoted or merged) and a subject's
-- messages were found by LIKE over every message of its server. This adds what a subject's
-- life needs: the names merged or renamed into another subject (subject_aliases), the key
-- terms a reflection gives for a subject (insights.subject_terms), ledger rows that move a
-- balance on a merge (merge_out, merge_in), and messages_fts, the full-text index searched
-- for a subject's name, aliases and key terms.

-- ---------------------------------------------------------------- subject aliases
-- A name that arrives at another subject of the same server: every name is normalised, then
-- mapped through this table (reflect/subjects.py), so a merged or renamed name keeps
-- earning for, and being filed under, the subject it became. Chains are kept flat: merging
-- B into C points every alias of B at C.
CREATE TABLE subject_aliases (
    server_id TEXT NOT NULL,
    alias TEXT NOT NULL,
    subject TEXT NOT NULL,
    created_at TEXT NOT NULL,
    event_id TEXT,                -- the events row of the merge or rename that made it
    PRIMARY KEY (server_id, alias),
    CHECK (alias <> subject)
);
CREATE INDEX idx_subject_aliases_subject ON subject_aliases (server_id, subject);

-- Up to 5 short phrases per insight (the answer's `subject_terms`), JSON array: the key terms
-- of the subject it names, searched for that subject's messages beside its name and aliases.
ALTER TABLE insights ADD COLUMN subject_terms TEXT;
-- Which insights name a subject (promotion counts them, and a subject's insights are listed).
CREATE INDEX idx_insights_subject ON insights (subject) WHERE subject IS NOT NULL;

-- Subjects named by insights about 2 different targets become established (the default of
-- `[subjects] promote_after`, which no configuration could set before this version).
UPDATE topics SET provisional = 0
WHERE category = 'subjects' AND provisional = 1 AND server_id IS NOT NULL
  AND (SELECT count(DISTINCT i.topic_key) FROM insights i
       WHERE i.subject = substr(topics.key, length('server:' || topics.server_id || ':subject:') + 1)
         AND i.topic_key GLOB 'server:' || topics.server_id || ':*'
         AND i.topic_key <> topics.key AND i.quarantined = 0) >= 2;

-- ---------------------------------------------------------------- the ledger: merge rows
-- A merge moves a balance by two transfer rows, never by editing old rows: `merge_out` on
-- the subject merged away, `merge_in` on the one it went into. SQLite cannot change a CHECK in
-- place, so the table is rebuilt as 0002 rebuilt it: every row kept with its rowid (readers
-- order by (created_at, rowid), and the engine remembers the highest rowid it has seen), the
-- balances untouched (a dropped table's triggers go before its rows), and every index and
-- trigger of 0002 made again below, word for word.
CREATE TABLE salience_ledger_new (
    id TEXT PRIMARY KEY,
    topic_key TEXT NOT NULL,
    transaction_type TEXT NOT NULL CHECK (transaction_type IN (
        'earn', 'spend', 'retain', 'reset', 'decay', 'propagate', 'spillover', 'warm',
        'merge_out', 'merge_in')),
    amount REAL NOT NULL,
    reason TEXT,
    source_topic TEXT,
    layer_run_id TEXT,
    created_at TEXT NOT NULL,
    topic_id INTEGER REFERENCES topics(id) ON DELETE CASCADE
);
INSERT INTO salience_ledger_new (rowid, id, topic_key, transaction_type, amount, reason,
                                 source_topic, layer_run_id, created_at, topic_id)
    SELECT rowid, id, topic_key, transaction_type, amount, reason, source_topic,
           layer_run_id, created_at, topic_id
    FROM salience_ledger ORDER BY rowid;
DROP TABLE salience_ledger;
ALTER TABLE salience_ledger_new RENAME TO salience_ledger;

CREATE INDEX idx_ledger_topic_created ON salience_ledger (topic_id, created_at);
CREATE INDEX idx_ledger_decay ON salience_ledger (topic_id, created_at)
    WHERE transaction_type = 'decay';

CREATE TRIGGER salience_ledger_topic_id AFTER INSERT ON salience_ledger
WHEN NEW.topic_id IS NULL BEGIN
    SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed: salience_ledger.topic_key names no topic')
    WHERE NOT EXISTS (SELECT 1 FROM topics WHERE key = NEW.topic_key);
    UPDATE salience_ledger SET topic_id = (SELECT id FROM topics WHERE key = NEW.topic_key)
    WHERE rowid = NEW.rowid;
END;
CREATE TRIGGER salience_ledger_topic_key_au AFTER UPDATE OF topic_key ON salience_ledger BEGIN
    SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed: salience_ledger.topic_key names no topic')
    WHERE NOT EXISTS (SELECT 1 FROM topics WHERE key = NEW.topic_key);
    UPDATE salience_ledger SET topic_id = (SELECT id FROM topics WHERE key = NEW.topic_key)
    WHERE rowid = NEW.rowid;
END;
CREATE TRIGGER salience_ledger_ai AFTER INSERT ON salience_ledger BEGIN
    UPDATE topics SET balance = balance + NEW.amount WHERE key = NEW.topic_key;
END;
CREATE TRIGGER salience_ledger_ad AFTER DELETE ON salience_ledger BEGIN
    UPDATE topics SET balance = balance - OLD.amount WHERE key = OLD.topic_key;
END;
CREATE TRIGGER salience_ledger_au AFTER UPDATE OF amount, topic_key ON salience_ledger BEGIN
    UPDATE topics SET balance = balance - OLD.amount WHERE key = OLD.topic_key;
    UPDATE topics SET balance = balance + NEW.amount WHERE key = NEW.topic_key;
END;

-- ---------------------------------------------------------------- messages_fts
-- Full-text index of stored message content. Keyed by rowid = CAST(messages.id AS INTEGER):
-- a snowflake is a 64-bit integer, and an FTS5 table's rowid given explicitly is its content
-- table's INTEGER PRIMARY KEY, which VACUUM keeps (the implicit rowid of a TEXT-keyed table,
-- such as messages itself, it may renumber). A message is found again by
-- `messages.id = CAST(messages_fts.rowid AS TEXT)` (snowflakes have no leading zeros).
--
-- It holds exactly the messages that may be stored and used: public ones not deleted, and a
-- DM's only while every participant's consent holds (`consent revoke` takes them out,
-- `consent grant` puts them back: privacy/message_index.py). Empty texts are not indexed.
-- The writer, which stores and updates a DM only while its consent holds, indexes the
-- messages it inserts (observe/rows.py, through privacy/message_index.py), in one statement
-- per batch: an insert trigger would make every stored row a statement transaction, and FTS5
-- (before 3.44) writes its pending terms to a new segment at each one, which made ingest a
-- fifth slower. The triggers below follow what is rarer: an edit replaces the text, a
-- message Discord deleted (deleted_at) or a purge deleted leaves.
CREATE VIRTUAL TABLE messages_fts USING fts5(content, tokenize = 'unicode61 remove_diacritics 2');

CREATE TRIGGER messages_fts_ad AFTER DELETE ON messages BEGIN
    DELETE FROM messages_fts WHERE rowid = CAST(OLD.id AS INTEGER);
END;
CREATE TRIGGER messages_fts_au AFTER UPDATE OF content, deleted_at ON messages
WHEN OLD.content IS NOT NEW.content OR OLD.deleted_at IS NOT NEW.deleted_at BEGIN
    DELETE FROM messages_fts WHERE rowid = CAST(OLD.id AS INTEGER);
    INSERT INTO messages_fts (rowid, content)
        SELECT CAST(NEW.id AS INTEGER), NEW.content
        WHERE NEW.deleted_at IS NULL AND NEW.content <> '';
END;

-- What is stored now and may be used: public messages, and the messages of DM channels whose
-- every participant (everyone but zos's own account, when zos_state knows it) holds an
-- active dm_read consent, the rule of privacy/consent.py `dm_may_be_stored`. (A participant
-- list that names zos while only zos.toml knows its id counts zos as someone who has not
-- consented: such a DM is left out until the next `consent grant` puts it in.)
INSERT INTO messages_fts (rowid, content)
SELECT CAST(m.id AS INTEGER), m.content FROM messages m
WHERE m.deleted_at IS NULL AND m.content <> ''
  AND (m.server_id IS NOT NULL OR m.channel_id IN (
      SELECT c.id FROM channels c
      WHERE c.type IN ('dm', 'group_dm')
        AND EXISTS (SELECT 1 FROM json_each(coalesce(c.participant_ids, '[]')) p
                    WHERE p.value <> '' AND p.value IS NOT
                          (SELECT value FROM zos_state WHERE key = 'discord.self_user_id'))
        AND NOT EXISTS (
            SELECT 1 FROM json_each(coalesce(c.participant_ids, '[]')) p
            WHERE p.value <> ''
              AND p.value IS NOT (SELECT value FROM zos_state WHERE key = 'discord.self_user_id')
              AND NOT EXISTS (SELECT 1 FROM consents k
                              WHERE k.user_id = p.value AND k.consent_type = 'dm_read'
                                AND k.revoked_at IS NULL))))
ORDER BY CAST(m.id AS INTEGER);
