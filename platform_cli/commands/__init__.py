"""One thin module per command group: parse arguments, call the library, format output."""
