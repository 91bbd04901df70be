-- What `zos analyze` learns about the images, files and links people share.
--
-- Why: the writer has always created a media_analysis row per attachment and a link_analysis
-- row per link, with nothing but the URL; analysis completes them in a second stage
-- (zos_cli/analyze/store.py). A row's status says where it stands, so a killed run resumes
-- with what is still pending, and failures are retried a bounded number of times. No image
-- bytes are kept: only their sha256 (the same bytes are described once per scope) and what
-- was said of them.
ALTER TABLE media_analysis ADD COLUMN status TEXT NOT NULL DEFAULT 'pending'
    CHECK (status IN ('pending', 'ok', 'skipped', 'failed'));
ALTER TABLE media_analysis ADD COLUMN skip_reason TEXT;
ALTER TABLE media_analysis ADD COLUMN local_path TEXT;
ALTER TABLE media_analysis ADD COLUMN sha256 TEXT;
ALTER TABLE media_analysis ADD COLUMN width INTEGER;
ALTER TABLE media_analysis ADD COLUMN height INTEGER;
ALTER TABLE media_analysis ADD COLUMN duration_seconds REAL;
ALTER TABLE media_analysis ADD COLUMN analyzer TEXT;
ALTER TABLE media_analysis ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE media_analysis ADD COLUMN error TEXT;
CREATE INDEX idx_media_analysis_status ON media_analysis (status);
CREATE INDEX idx_media_analysis_sha256 ON media_analysis (sha256) WHERE sha256 IS NOT NULL;

-- One fetch per normalized URL, shared by every message that links it.
ALTER TABLE link_analysis ADD COLUMN normalized_url TEXT;
ALTER TABLE link_analysis ADD COLUMN status TEXT NOT NULL DEFAULT 'pending'
    CHECK (status IN ('pending', 'ok', 'skipped', 'robots_disallowed', 'blocked_address',
                      'denied_domain', 'too_large', 'not_text', 'http_error',
                      'too_many_redirects', 'timeout', 'invalid_url', 'unreachable'));
ALTER TABLE link_analysis ADD COLUMN skip_reason TEXT;
ALTER TABLE link_analysis ADD COLUMN http_status INTEGER;
ALTER TABLE link_analysis ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE link_analysis ADD COLUMN description TEXT;
ALTER TABLE link_analysis ADD COLUMN content_type TEXT;
ALTER TABLE link_analysis ADD COLUMN analyzer TEXT;
ALTER TABLE link_analysis ADD COLUMN fetched_at TEXT;
ALTER TABLE link_analysis ADD COLUMN error TEXT;
CREATE INDEX idx_link_analysis_status ON link_analysis (status);
CREATE INDEX idx_link_analysis_normalized_url ON link_analysis (normalized_url);

-- A model call made for analysis names what it carried, as a reflection call names its
-- messages and insights, so forgetting a message finds the calls that described its image
-- or summarised its link. SQLite cannot widen a CHECK in place: the table is made again.
CREATE TABLE llm_call_sources_new (
    call_id TEXT NOT NULL REFERENCES llm_calls(id) ON DELETE CASCADE,
    source_type TEXT NOT NULL CHECK (source_type IN ('message', 'insight', 'media', 'link')),
    source_id TEXT NOT NULL,
    PRIMARY KEY (call_id, source_type, source_id)
) WITHOUT ROWID;
INSERT INTO llm_call_sources_new (call_id, source_type, source_id)
    SELECT call_id, source_type, source_id FROM llm_call_sources;
DROP TABLE llm_call_sources;
ALTER TABLE llm_call_sources_new RENAME TO llm_call_sources;
CREATE INDEX idx_llm_call_sources_source ON llm_call_sources (source_id, source_type);
