-- zos's self-concept: versions of the short markdown document in which zos describes itself,
-- shown in every reflection prompt (docs/reflection.md#the-self-concept).
--
-- Why versions and states, not one row: a revision written by the self layer would reach
-- every future prompt, a lasting prompt-injection path, so it is stored `proposed` and the
-- operator decides (`zos self accept`); a revision over the length bound or changing too much
-- at once is kept `rejected` with its reason, so the history says what was refused. The
-- shipped default is not in this file (editing it must change no migration checksum): it is
-- read from the package and stored as version 1 when a database first needs it.
--
-- Independent of 0008 (built in parallel): this touches no table 0008 alters.
CREATE TABLE self_concept (
    version INTEGER PRIMARY KEY CHECK (version >= 1),
    content TEXT NOT NULL,
    created_at TEXT NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('shipped', 'layer', 'operator')),
    layer_run_id TEXT,            -- the self layer's run that proposed it (source 'layer')
    reason TEXT,                  -- why it was written, reverted or rejected
    state TEXT NOT NULL CHECK (state IN ('active', 'proposed', 'rejected', 'superseded'))
);
-- At most one active version, whatever the code does.
CREATE UNIQUE INDEX idx_self_concept_one_active ON self_concept (state) WHERE state = 'active';
