-- Ledger rows find their topic by a small integer, not by its text key.
--
-- Why: every batch of an ingest touches tens of thousands of topics spread over the whole
-- ledger index. An index on (topic_key, created_at) holds ~100-byte entries (keys are long:
-- server:<snowflake>:dyad:<snowflake>:<snowflake>), so each batch rewrote most of its pages;
-- (topic_id, created_at) entries are a third of that and the same work costs a fraction.
-- The text key stays on every row (it is the contract, and what readers and writers use);
-- topic_id is the foreign key, filled from the key when a writer does not give it, and
-- `zos salience check` proves the two name the same topic.

-- topics.id: a stable integer per topic (rowid is not: VACUUM may renumber it). Writers that
-- do not give one get max + 1 from the trigger; the salience engine gives it in its insert.
ALTER TABLE topics ADD COLUMN id INTEGER;
UPDATE topics SET id = rowid;
CREATE UNIQUE INDEX idx_topics_id ON topics (id);
CREATE TRIGGER topics_id_ai AFTER INSERT ON topics WHEN NEW.id IS NULL BEGIN
    UPDATE topics SET id = (SELECT coalesce(max(id), 0) + 1 FROM topics) WHERE rowid = NEW.rowid;
END;

-- The ledger, rebuilt with topic_id (SQLite cannot change a column's foreign key in place).
-- Rows keep their rowids: readers order by (created_at, rowid) and the engine remembers the
-- highest rowid it has seen. The old table's triggers go with it (a dropped table's triggers
-- are dropped before its rows, so the balances are untouched) and are made again below.
CREATE TABLE salience_ledger_new (
    id TEXT PRIMARY KEY,
    topic_key TEXT NOT NULL,
    transaction_type TEXT NOT NULL CHECK (transaction_type IN (
        'earn', 'spend', 'retain', 'reset', 'decay', 'propagate', 'spillover', 'warm')),
    amount REAL NOT NULL,
    reason TEXT,
    source_topic TEXT,
    layer_run_id TEXT,
    created_at TEXT NOT NULL,
    -- zos's own writers give it as (SELECT id FROM topics WHERE key = <topic_key>); rows
    -- inserted with the key alone get it from salience_ledger_topic_id below.
    topic_id INTEGER REFERENCES topics(id) ON DELETE CASCADE
);
INSERT INTO salience_ledger_new (rowid, id, topic_key, transaction_type, amount, reason,
                                 source_topic, layer_run_id, created_at, topic_id)
    SELECT l.rowid, l.id, l.topic_key, l.transaction_type, l.amount, l.reason, l.source_topic,
           l.layer_run_id, l.created_at, t.id
    FROM salience_ledger l JOIN topics t ON t.key = l.topic_key
    ORDER BY l.rowid;
DROP TABLE salience_ledger;
ALTER TABLE salience_ledger_new RENAME TO salience_ledger;

CREATE INDEX idx_ledger_topic_created ON salience_ledger (topic_id, created_at);
-- A topic's last decay row, found without reading its other rows (decay is idempotent per day).
CREATE INDEX idx_ledger_decay ON salience_ledger (topic_id, created_at)
    WHERE transaction_type = 'decay';

-- A row given by its key alone (any other writer: sqlite-utils, a test, a script) gets its
-- topic_id here; a key that names no topic is refused, as the key's foreign key refused it.
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

-- The balance triggers of 0001 (the sum of the ledger kept in topics.balance). The salience
-- engine's bulk insert no longer switches the insert trigger off through a flag table, whose
-- check cost every row a sub-query: it drops the insert triggers inside its own write
-- transaction and makes them again before it ends (db.triggers_suspended), adding each
-- touched topic's amounts itself, once per topic per batch, in insertion order.
DROP TABLE salience_bulk_write;
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
