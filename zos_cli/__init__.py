"""zos: a command-line toolkit over one SQLite file for watching Discord communities."""

__version__ = "0.1.0"
