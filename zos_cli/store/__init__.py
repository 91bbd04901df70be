"""Storage, under every stage: the connection and its one write path, migrations, job locks,
the audit/events writer, and the status report read from it all."""
