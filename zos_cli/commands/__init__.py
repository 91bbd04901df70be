"""One thin module per command group: parse arguments, open the database, call one library
function, render. No SQL here."""
