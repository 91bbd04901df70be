"""Live Discord through the REST API: a rate-limit-correct client, the API-to-record
converter, `zos poll` and `zos ingest --token` (backfill).

Only the client talks HTTP; everything stored goes through the one writer
(`zos_cli.observe.ObservationWriter`), exactly as the export ingest does.
"""
