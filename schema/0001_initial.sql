-- zos schema, version 1: every table and view (docs/database.md#data-model).
-- Times are UTC ISO-8601 text with microseconds and +00:00, so strings sort as times.
-- Discord ids are snowflakes stored as TEXT; ids zos creates are ULIDs.

-- ---------------------------------------------------------------- Discord world
CREATE TABLE servers (
    id TEXT PRIMARY KEY,
    name TEXT,
    icon_url TEXT,
    privacy_gate_role TEXT,
    focus REAL NOT NULL DEFAULT 1.0 CHECK (focus >= 0),
    threads_as_topics INTEGER NOT NULL DEFAULT 0 CHECK (threads_as_topics IN (0, 1)),
    chattiness_config TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    name TEXT,
    display_name TEXT,
    discriminator TEXT,
    avatar_url TEXT,
    is_bot INTEGER NOT NULL DEFAULT 0 CHECK (is_bot IN (0, 1)),
    is_deleted INTEGER NOT NULL DEFAULT 0 CHECK (is_deleted IN (0, 1)),
    first_dm_acknowledged INTEGER NOT NULL DEFAULT 0 CHECK (first_dm_acknowledged IN (0, 1)),
    first_dm_at TEXT,
    first_seen_at TEXT,
    last_seen_at TEXT
);

CREATE TABLE user_server_tracking (
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    server_id TEXT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    nickname TEXT,
    first_seen_at TEXT,
    last_seen_at TEXT,
    message_count INTEGER NOT NULL DEFAULT 0 CHECK (message_count >= 0),
    roles_known INTEGER NOT NULL DEFAULT 0 CHECK (roles_known IN (0, 1)),
    roles_refreshed_at TEXT,
    PRIMARY KEY (user_id, server_id)
);

CREATE TABLE roles (
    id TEXT PRIMARY KEY,
    server_id TEXT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    name TEXT,
    color TEXT,
    position INTEGER
);

CREATE TABLE user_roles (
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role_id TEXT NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
    server_id TEXT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    seen_at TEXT NOT NULL,
    PRIMARY KEY (user_id, role_id)
);

CREATE TABLE channels (
    id TEXT PRIMARY KEY,
    server_id TEXT REFERENCES servers(id) ON DELETE CASCADE,   -- NULL for DMs
    name TEXT,
    type TEXT NOT NULL CHECK (type IN (
        'text', 'news', 'voice', 'stage', 'category', 'forum', 'directory', 'media',
        'dm', 'group_dm', 'news_thread', 'public_thread', 'private_thread', 'unknown')),
    parent_id TEXT,               -- the parent channel of a thread (may not be stored yet)
    category_id TEXT,
    category_name TEXT,
    topic TEXT,
    participant_ids TEXT,         -- JSON array, DMs only: everyone but zos itself
    created_at TEXT,
    updated_at TEXT NOT NULL,
    CHECK ((type IN ('dm', 'group_dm')) = (server_id IS NULL))
);

CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    channel_id TEXT NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    server_id TEXT REFERENCES servers(id) ON DELETE CASCADE,
    author_id TEXT NOT NULL REFERENCES users(id),
    content TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    edited_at TEXT,
    message_type TEXT NOT NULL,
    visibility_scope TEXT NOT NULL CHECK (visibility_scope IN ('public', 'dm')),
    reactions_aggregate TEXT,     -- JSON: per emoji, the count Discord reports
    reply_to_id TEXT,
    thread_id TEXT,
    has_media INTEGER NOT NULL DEFAULT 0 CHECK (has_media IN (0, 1)),
    has_links INTEGER NOT NULL DEFAULT 0 CHECK (has_links IN (0, 1)),
    is_pinned INTEGER NOT NULL DEFAULT 0 CHECK (is_pinned IN (0, 1)),
    stickers TEXT,                -- JSON
    custom_emoji_ids TEXT,        -- JSON array: inline custom emoji ids, one per occurrence
                                  -- (exports render them as :name:, so content cannot tell)
    source_exported_at TEXT,      -- the exportedAt (or fetch time) of the version stored
    ingested_at TEXT NOT NULL,
    updated_at TEXT,
    deleted_at TEXT,
    CHECK ((visibility_scope = 'dm') = (server_id IS NULL))
);
CREATE INDEX idx_messages_channel_created ON messages (channel_id, created_at);
CREATE INDEX idx_messages_author_created ON messages (author_id, created_at);
CREATE INDEX idx_messages_server_created ON messages (server_id, created_at);
CREATE INDEX idx_messages_reply_to ON messages (reply_to_id);

CREATE TABLE reactions (
    message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id),
    emoji TEXT NOT NULL,          -- the character for unicode emoji, the name for custom ones
    emoji_id TEXT NOT NULL DEFAULT '',   -- '' for unicode emoji
    is_custom INTEGER NOT NULL CHECK (is_custom IN (0, 1)),
    created_at TEXT,
    removed_at TEXT,
    PRIMARY KEY (message_id, user_id, emoji, emoji_id),
    CHECK ((is_custom = 1) = (emoji_id <> ''))
);
CREATE INDEX idx_reactions_user ON reactions (user_id);

CREATE TABLE mentions (
    message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id),
    PRIMARY KEY (message_id, user_id)
);
CREATE INDEX idx_mentions_user ON mentions (user_id);

CREATE TABLE role_mentions (
    message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    role_id TEXT NOT NULL,
    PRIMARY KEY (message_id, role_id)
);

CREATE TABLE poll_state (
    channel_id TEXT PRIMARY KEY REFERENCES channels(id) ON DELETE CASCADE,
    last_message_id TEXT,
    last_message_at TEXT,
    last_polled_at TEXT
);

CREATE TABLE backfill_state (
    channel_id TEXT PRIMARY KEY REFERENCES channels(id) ON DELETE CASCADE,
    oldest_message_id TEXT,
    complete INTEGER NOT NULL DEFAULT 0 CHECK (complete IN (0, 1)),
    updated_at TEXT
);

CREATE TABLE media_analysis (
    id TEXT PRIMARY KEY,
    message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    attachment_id TEXT,
    url TEXT NOT NULL,
    file_name TEXT,
    size_bytes INTEGER,
    content_type TEXT,
    description TEXT NOT NULL DEFAULT '',
    analyzed_at TEXT,
    UNIQUE (message_id, url)
);

CREATE TABLE link_analysis (
    id TEXT PRIMARY KEY,
    message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    domain TEXT NOT NULL,
    title TEXT,
    summary TEXT,
    analyzed_at TEXT,
    UNIQUE (message_id, url)
);

CREATE TABLE ingest_log (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('export', 'api')),
    path TEXT NOT NULL,           -- a file path, '-' for stdin, or 'api:channel:<id>'
    size INTEGER,
    sha256 TEXT,
    status TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'skipped')),
    messages_new INTEGER NOT NULL DEFAULT 0,
    messages_seen INTEGER NOT NULL DEFAULT 0,
    reactions_new INTEGER NOT NULL DEFAULT 0,
    users INTEGER NOT NULL DEFAULT 0,
    channels INTEGER NOT NULL DEFAULT 0,
    dm_skipped_without_consent INTEGER NOT NULL DEFAULT 0,
    dm_participant_ids TEXT,      -- JSON: who a skipped DM needs consent from (ids only)
    error TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT
);
CREATE INDEX idx_ingest_log_sha ON ingest_log (sha256);
CREATE INDEX idx_ingest_log_started ON ingest_log (started_at);

CREATE TABLE message_sources (
    message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    source_type TEXT NOT NULL CHECK (source_type IN ('export', 'poll', 'backfill')),
    source_id TEXT NOT NULL,      -- the ingest_log id (export, backfill) or poll run id
    first_seen_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    PRIMARY KEY (message_id, source_id)
);

-- ---------------------------------------------------------------- attention
CREATE TABLE topics (
    key TEXT PRIMARY KEY,
    category TEXT NOT NULL CHECK (category IN (
        'users', 'dyads', 'channels', 'threads', 'user_in_channel', 'dyad_in_channel',
        'subjects', 'roles', 'emoji', 'self')),
    budget_group TEXT NOT NULL CHECK (budget_group IN (
        'social', 'global', 'spaces', 'semantic', 'culture', 'self')),
    server_id TEXT,
    is_global INTEGER NOT NULL CHECK (is_global IN (0, 1)),
    provisional INTEGER NOT NULL DEFAULT 0 CHECK (provisional IN (0, 1)),
    balance REAL NOT NULL DEFAULT 0,     -- maintained from the ledger by trigger
    last_activity_at TEXT,               -- time of the last earn
    created_at TEXT NOT NULL,
    metadata TEXT,
    CHECK ((is_global = 1) = (server_id IS NULL))
);
CREATE INDEX idx_topics_category ON topics (category);
CREATE INDEX idx_topics_balance ON topics (balance DESC);
-- (No second balance index per budget group: every ledger row's trigger would update it too,
-- and group-filtered reads walk idx_topics_balance from the top just as well.)

CREATE TABLE salience_ledger (
    id TEXT PRIMARY KEY,
    topic_key TEXT NOT NULL REFERENCES topics(key) ON DELETE CASCADE,
    transaction_type TEXT NOT NULL CHECK (transaction_type IN (
        'earn', 'spend', 'retain', 'reset', 'decay', 'propagate', 'spillover', 'warm')),
    amount REAL NOT NULL,
    reason TEXT,
    source_topic TEXT,
    layer_run_id TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX idx_ledger_topic_created ON salience_ledger (topic_key, created_at);
-- A topic's last decay row, found without reading its other rows (decay is idempotent per day).
CREATE INDEX idx_ledger_decay ON salience_ledger (topic_key, created_at)
    WHERE transaction_type = 'decay';

-- The balance is the sum of the ledger; these triggers keep topics.balance equal to it so
-- reads never sum the ledger. `zos salience check` proves the two agree.
-- One exception, for speed: while salience_bulk_write holds a row (only ever inside the
-- salience engine's own write transaction, emptied before it ends), inserted rows skip the
-- trigger and the engine adds them to topics.balance itself, once per topic per batch, in
-- the same order (salience/batch.py). Every other writer inserts with the table empty.
CREATE TABLE salience_bulk_write (active INTEGER NOT NULL);
CREATE TRIGGER salience_ledger_ai AFTER INSERT ON salience_ledger
WHEN NOT EXISTS (SELECT 1 FROM salience_bulk_write) BEGIN
    UPDATE topics SET balance = balance + NEW.amount WHERE key = NEW.topic_key;
END;
CREATE TRIGGER salience_ledger_ad AFTER DELETE ON salience_ledger BEGIN
    UPDATE topics SET balance = balance - OLD.amount WHERE key = OLD.topic_key;
END;
CREATE TRIGGER salience_ledger_au AFTER UPDATE OF amount, topic_key ON salience_ledger BEGIN
    UPDATE topics SET balance = balance - OLD.amount WHERE key = OLD.topic_key;
    UPDATE topics SET balance = balance + NEW.amount WHERE key = NEW.topic_key;
END;

CREATE VIEW topic_salience AS
    SELECT key AS topic_key, balance, last_activity_at FROM topics;

-- ---------------------------------------------------------------- understanding
CREATE TABLE layer_runs (
    id TEXT PRIMARY KEY,
    layer_name TEXT NOT NULL,
    layer_hash TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'completed', 'partial', 'failed', 'dry_run')),
    started_at TEXT NOT NULL,
    completed_at TEXT,
    as_of TEXT NOT NULL,
    model TEXT,
    targets TEXT NOT NULL DEFAULT '[]',   -- JSON array of topic keys
    targets_ok INTEGER NOT NULL DEFAULT 0,
    targets_failed INTEGER NOT NULL DEFAULT 0,
    insights_created INTEGER NOT NULL DEFAULT 0,
    tokens_input INTEGER NOT NULL DEFAULT 0,
    tokens_output INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0,
    error TEXT                            -- JSON array of {target, error}
);
CREATE INDEX idx_layer_runs_layer_started ON layer_runs (layer_name, started_at);

CREATE TABLE insights (
    id TEXT PRIMARY KEY,
    topic_key TEXT NOT NULL REFERENCES topics(key),
    category TEXT NOT NULL,
    content TEXT NOT NULL,
    sources_scope_max TEXT NOT NULL CHECK (sources_scope_max IN ('public', 'dm', 'derived')),
    layer_run_id TEXT REFERENCES layer_runs(id) ON DELETE SET NULL,
    supersedes TEXT REFERENCES insights(id) ON DELETE SET NULL,
    quarantined INTEGER NOT NULL DEFAULT 0 CHECK (quarantined IN (0, 1)),
    salience_spent REAL NOT NULL DEFAULT 0 CHECK (salience_spent >= 0),
    strength_adjustment REAL NOT NULL DEFAULT 1.0
        CHECK (strength_adjustment BETWEEN 0.1 AND 10),
    strength REAL NOT NULL DEFAULT 0,
    confidence REAL NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    importance REAL NOT NULL CHECK (importance BETWEEN 0 AND 1),
    novelty REAL NOT NULL CHECK (novelty BETWEEN 0 AND 1),
    valence_joy REAL CHECK (valence_joy BETWEEN 0 AND 1),
    valence_concern REAL CHECK (valence_concern BETWEEN 0 AND 1),
    valence_curiosity REAL CHECK (valence_curiosity BETWEEN 0 AND 1),
    valence_warmth REAL CHECK (valence_warmth BETWEEN 0 AND 1),
    valence_tension REAL CHECK (valence_tension BETWEEN 0 AND 1),
    valence_awe REAL CHECK (valence_awe BETWEEN 0 AND 1),
    valence_grief REAL CHECK (valence_grief BETWEEN 0 AND 1),
    valence_longing REAL CHECK (valence_longing BETWEEN 0 AND 1),
    valence_peace REAL CHECK (valence_peace BETWEEN 0 AND 1),
    valence_gratitude REAL CHECK (valence_gratitude BETWEEN 0 AND 1),
    context_channel TEXT,
    context_thread TEXT,
    subject TEXT,
    participants TEXT,            -- JSON array of user ids
    conflicts_with TEXT,          -- JSON array of insight ids
    conflict_resolved INTEGER NOT NULL DEFAULT 0 CHECK (conflict_resolved IN (0, 1)),
    synthesis_source_ids TEXT,    -- JSON array of insight ids
    open_questions TEXT,          -- JSON array of strings
    expires_at TEXT,
    created_at TEXT NOT NULL,
    metadata TEXT,
    CHECK (coalesce(valence_joy, valence_concern, valence_curiosity, valence_warmth,
                    valence_tension, valence_awe, valence_grief, valence_longing,
                    valence_peace, valence_gratitude) IS NOT NULL)
);
CREATE INDEX idx_insights_topic_created ON insights (topic_key, created_at);
CREATE INDEX idx_insights_category_created ON insights (category, created_at);
CREATE INDEX idx_insights_expires ON insights (expires_at);
CREATE INDEX idx_insights_quarantined ON insights (quarantined);
CREATE INDEX idx_insights_layer_run ON insights (layer_run_id);
CREATE INDEX idx_insights_supersedes ON insights (supersedes);

-- Why an insight is quarantined, one row per reason ('gate:<server>:<user>' for a lost
-- privacy-gate role, 'dm_revoked:<user>' for a revoked DM consent). insights.quarantined is 1
-- exactly while an insight has a reason, so regaining a role lifts only that role's reasons.
CREATE TABLE insight_quarantines (
    insight_id TEXT NOT NULL REFERENCES insights(id) ON DELETE CASCADE,
    reason TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (insight_id, reason)
);
CREATE INDEX idx_insight_quarantines_reason ON insight_quarantines (reason);

CREATE TABLE insight_sources (
    insight_id TEXT NOT NULL REFERENCES insights(id) ON DELETE CASCADE,
    source_type TEXT NOT NULL CHECK (source_type IN ('message', 'insight')),
    source_id TEXT NOT NULL,
    PRIMARY KEY (insight_id, source_type, source_id)
);
CREATE INDEX idx_insight_sources_source ON insight_sources (source_id);

CREATE TABLE llm_calls (
    id TEXT PRIMARY KEY,
    layer_run_id TEXT REFERENCES layer_runs(id) ON DELETE SET NULL,
    topic_key TEXT,
    model_profile TEXT,
    model_provider TEXT,
    model_name TEXT,
    prompt TEXT,
    response TEXT,
    tokens_input INTEGER NOT NULL DEFAULT 0,
    tokens_output INTEGER NOT NULL DEFAULT 0,
    estimated_cost_usd REAL NOT NULL DEFAULT 0,
    latency_ms INTEGER,
    status TEXT NOT NULL CHECK (status IN ('ok', 'error', 'invalid', 'cached')),
    error TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX idx_llm_calls_layer_run ON llm_calls (layer_run_id);
CREATE INDEX idx_llm_calls_created ON llm_calls (created_at);
CREATE INDEX idx_llm_calls_profile ON llm_calls (model_profile);

-- A reflection's high-water mark per (layer, target): the newest item it read (a message, or
-- for synthesis a server-scoped insight). The next run reads only what is newer. Ids only.
CREATE TABLE reflection_marks (
    layer_name TEXT NOT NULL,
    topic_key TEXT NOT NULL,
    last_item_at TEXT NOT NULL,
    last_item_id TEXT NOT NULL,
    layer_run_id TEXT REFERENCES layer_runs(id) ON DELETE SET NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (layer_name, topic_key)
);

CREATE TABLE llm_cache (
    cache_key TEXT PRIMARY KEY,   -- sha256 of model and prompt
    model_name TEXT NOT NULL,
    response TEXT NOT NULL,
    tokens_input INTEGER NOT NULL DEFAULT 0,
    tokens_output INTEGER NOT NULL DEFAULT 0,
    topic_key TEXT,
    created_at TEXT NOT NULL
);

-- Full-text search over insight content. A standalone FTS5 table keyed by insight id
-- (insights has a TEXT key, whose implicit rowid VACUUM may renumber), kept in sync by triggers.
CREATE VIRTUAL TABLE insights_fts USING fts5(insight_id UNINDEXED, content);
CREATE TRIGGER insights_fts_ai AFTER INSERT ON insights BEGIN
    INSERT INTO insights_fts (insight_id, content) VALUES (NEW.id, NEW.content);
END;
CREATE TRIGGER insights_fts_ad AFTER DELETE ON insights BEGIN
    DELETE FROM insights_fts WHERE insight_id = OLD.id;
END;
CREATE TRIGGER insights_fts_au AFTER UPDATE OF content ON insights BEGIN
    DELETE FROM insights_fts WHERE insight_id = OLD.id;
    INSERT INTO insights_fts (insight_id, content) VALUES (NEW.id, NEW.content);
END;

CREATE VIEW active_insights AS
    SELECT * FROM insights
    WHERE quarantined = 0
      AND (expires_at IS NULL OR expires_at > strftime('%Y-%m-%dT%H:%M:%f', 'now'));

-- ---------------------------------------------------------------- consent and audit
CREATE TABLE consents (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,        -- may precede anything zos has seen of the user
    consent_type TEXT NOT NULL DEFAULT 'dm_read' CHECK (consent_type IN ('dm_read')),
    granted_at TEXT NOT NULL,
    revoked_at TEXT,
    server_id TEXT,
    note TEXT,
    CHECK (revoked_at IS NULL OR revoked_at >= granted_at)
);
CREATE INDEX idx_consents_user ON consents (user_id, consent_type);

CREATE TABLE tombstones (
    id TEXT PRIMARY KEY,
    object_type TEXT NOT NULL CHECK (object_type IN (
        'message', 'reaction', 'insight', 'llm_call', 'llm_cache', 'channel', 'user', 'topic',
        'ledger')),
    object_id TEXT NOT NULL,
    deleted_at TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX idx_tombstones_object ON tombstones (object_type, object_id);

CREATE TABLE events (
    id TEXT PRIMARY KEY,
    event_type TEXT NOT NULL,
    payload TEXT,                 -- JSON; ids and counts, never message content
    created_at TEXT NOT NULL
);
CREATE INDEX idx_events_type_created ON events (event_type, created_at);

-- Key/value state zos learns at run time (e.g. discord.self_user_id from /users/@me).
CREATE TABLE zos_state (
    key TEXT PRIMARY KEY,
    value TEXT,
    updated_at TEXT NOT NULL
);

-- ---------------------------------------------------------------- speaking phase (tables only)
CREATE TABLE chattiness_ledger (
    id TEXT PRIMARY KEY,
    server_id TEXT,
    channel_id TEXT,
    transaction_type TEXT NOT NULL CHECK (transaction_type IN ('earn', 'spend', 'decay', 'reset')),
    amount REAL NOT NULL,
    reason TEXT,
    created_at TEXT NOT NULL
);

CREATE TABLE speech_pressure (
    id TEXT PRIMARY KEY,
    server_id TEXT,
    channel_id TEXT,
    pressure REAL NOT NULL DEFAULT 0,
    threshold REAL,
    updated_at TEXT NOT NULL
);

CREATE TABLE conversation_log (
    id TEXT PRIMARY KEY,
    server_id TEXT,
    channel_id TEXT,
    message_id TEXT,
    role TEXT NOT NULL CHECK (role IN ('zos', 'user')),
    content TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE draft_history (
    id TEXT PRIMARY KEY,
    server_id TEXT,
    channel_id TEXT,
    content TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('drafted', 'sent', 'discarded')),
    reason TEXT,
    created_at TEXT NOT NULL
);
