"""Bars in: every source (Yahoo, files, the bundled sample, the generator) gives the
canonical, validated bars frame. Takes symbols and a source; gives bars."""

# What the package offers: its modules. Names are imported from them; this file stays
# light, so importing one module never loads the others (nor torch).
__all__ = ["bars", "cache", "clean", "files", "sample", "sources", "synthetic", "yahoo"]
