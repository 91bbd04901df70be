-- What each model call's prompt carried: the messages and insights of its target's context.
--
-- Why: forgetting a DM or erasing a user must scrub the prompt of every call that carried
-- their words, calls that made no insight (a failed or invalid answer) included. Searching
-- the stored prompts for the words misses them once the prompt has changed them (mentions
-- turned into names, long messages clipped, JSON escaped twice); these rows name the calls
-- exactly, the way insight_sources names the insights. Calls recorded before this migration
-- have none: for them the purge still searches the text.
CREATE TABLE llm_call_sources (
    call_id TEXT NOT NULL REFERENCES llm_calls(id) ON DELETE CASCADE,
    source_type TEXT NOT NULL CHECK (source_type IN ('message', 'insight')),
    source_id TEXT NOT NULL,
    PRIMARY KEY (call_id, source_type, source_id)
) WITHOUT ROWID;
CREATE INDEX idx_llm_call_sources_source ON llm_call_sources (source_id, source_type);
