-- What an ingest found odd in a file but read on, and who a still-blocked DM probably waits for
-- (docs/ingest.md#warnings, docs/ingest.md#dms-and-consent).
--
-- Why `warnings`: real exports have quirks that are no reason to refuse a file. A file filtered
-- or trimmed by a script keeps its old `messageCount`, and some exports repeat a message id.
-- Such a file used to be logged `failed`, was read again every run and made every later ingest
-- of its folder exit 65; now it is stored and logged `completed`, and this column keeps what
-- was odd about it: a JSON list of texts (NULL when there was nothing), ids and counts only.
--
-- Why `dm_probable_self_id`: a DM refused for want of consent is skipped as unchanged by the
-- next ingest without being read, yet that ingest must still say who it waits for. Its
-- participants are in `dm_participant_ids` (0001); this keeps, for a 1:1 DM read while
-- `discord.self_user_id` was unset, the participant on the other side from the user the DM is
-- named after: probably zos's own account, which needs `self_user_id` set, not a consent.
ALTER TABLE ingest_log ADD COLUMN warnings TEXT;
ALTER TABLE ingest_log ADD COLUMN dm_probable_self_id TEXT;
