"""Shared ground of every stage: errors, atomic file writes, token ids and split names,
intervals and time parsing. Imports nothing else from candletok."""
