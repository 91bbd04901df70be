-- Messages stored whose salience is not earned yet.
--
-- Why: `zos ingest --token` reads a channel's history newest page first, channel after
-- channel. Earning as the pages arrive would earn against event time (docs/salience.md#order-and-time): a reply
-- would miss its parent in an older page, and a topic warmed by later messages would receive
-- transfers from earlier ones. So a backfill stores its new messages marked, and at its end
-- earns them (with their reactions) in snowflake order, the way rebuild replays them; the
-- marks are cleared in the transactions of their ledger rows, so a killed backfill leaves
-- them for the next one. Messages deleted by a purge take their marks with them.
ALTER TABLE messages ADD COLUMN salience_pending INTEGER NOT NULL DEFAULT 0;
CREATE INDEX idx_messages_salience_pending ON messages (id) WHERE salience_pending = 1;
