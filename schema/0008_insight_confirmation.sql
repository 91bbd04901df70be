-- Reconfirmation and fading (docs/reflection.md#reconfirmation-and-fading).
--
-- Why: a standing insight that new material restates should stay strong, and one nobody
-- restates should fade. A reflection's answer names the shown insights it restates
-- (`confirms`); reflect/store.py counts each confirmation and moves `last_confirmed_at` to the
-- confirming run's as-of, in the transaction of the new insight.
--
-- The fading clock starts at `last_confirmed_at`, else at the as-of of the run that wrote the
-- insight. That as-of needs no new column: `layer_runs.as_of` (0001, NOT NULL) has held it for
-- every run, and `insights.metadata` carries it too (`$.as_of`) for an insight whose run row
-- is gone. Only an insight with neither falls back to its wall-clock `created_at`.
ALTER TABLE insights ADD COLUMN confirmation_count INTEGER NOT NULL DEFAULT 0
    CHECK (confirmation_count >= 0);
ALTER TABLE insights ADD COLUMN last_confirmed_at TEXT;
