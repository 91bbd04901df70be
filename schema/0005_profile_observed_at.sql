-- When the profile a users row, a user_server_tracking row and a roles row hold was observed:
-- the exportedAt of the export it came from, or the time of the poll.
--
-- Why: exports of one channel overlap, and an older export may be ingested after a newer
-- one. The newest observation wins for a user's name, display name and avatar, for their
-- nickname in a server and for their role set there (which the privacy gate reads), and for a
-- role's name, colour and position, so an old export can no longer bring back a name or a
-- role the user has since lost, nor a role's old name. Rows written
-- before this migration have none: the next observation of any age replaces them once.
ALTER TABLE users ADD COLUMN profile_observed_at TEXT;
ALTER TABLE user_server_tracking ADD COLUMN profile_observed_at TEXT;
ALTER TABLE roles ADD COLUMN observed_at TEXT;
