"""Live Discord through the REST API: a rate-limit-correct client, the calls zos makes, and the
API-to-record converter. The runs that use them, `zos poll` and `zos ingest --token`
(backfill), live in `zos_cli.ingest`; everything they store goes through the one writer
(`zos_cli.observe.writer.ObservationWriter`), exactly as the export ingest does.
"""
