-- Reconciled conflicts (docs/reflection.md#reconciled-conflicts): an insight retired by the
-- reconcile layer names the insight that replaced it.
--
-- Why a column: until now an insight was superseded only by a newer one pointing at it
-- (`insights.supersedes`, one id per row). A reconciliation has to retire insights that
-- already exist: `keep_first` retires the second by the first (which may itself already
-- supersede something, so its one `supersedes` slot is taken), and `merge` retires both
-- insights by one merged insight (one row cannot point at two). So the retired row records
-- its replacement. An insight is superseded when a standing (not quarantined) insight points
-- at it either way; if the replacement is quarantined or deleted, the insight stands again
-- (ON DELETE SET NULL; privacy/purge.py also clears it by name, as it does `supersedes`).
ALTER TABLE insights ADD COLUMN superseded_by TEXT REFERENCES insights(id) ON DELETE SET NULL;
CREATE INDEX idx_insights_superseded_by ON insights (superseded_by);
