"""Ingest runs: a run over export files (`run`) with its file handling (`files`) and its two
gates (`dm_gate`, `role_gate`), and the live API runs, `poll` and `backfill`, with the cursors
they keep (`cursors`, `archived`). Every run stores through the one writer, `zos_cli.observe`."""
