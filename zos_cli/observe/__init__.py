"""The one writer: observed Discord records → tables + salience events.

`writer.ObservationWriter` is the public interface, fed by export ingests and API runs alike.
`rows` and `people` are the table writes: the writer calls their batch writes with a
`batch.BatchRows`; other stages write these tables only through their functions that take a
`db` (`rows.ensure_channel`, `rows.set_participants`, `people.record_member_roles`, …)."""
