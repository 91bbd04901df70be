"""The one writer: observed Discord records → tables + salience events.

`writer.ObservationWriter` is the public interface, fed by export ingests and API runs alike;
`rows` and `people` are its table writes and are called only by the writer."""
