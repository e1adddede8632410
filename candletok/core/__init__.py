"""Shared ground of every stage: errors, atomic file writes, token ids and split names,
intervals and time parsing. Imports nothing else from candletok."""

# What the package offers: its modules. Names are imported from them; this file stays
# light, so importing one module never loads the others (nor torch).
__all__ = ["atomic", "display", "errors", "fields", "ids", "times"]
