"""Bars in: every source (Yahoo, files, the bundled sample, the generator) gives the
canonical, validated bars frame. Takes symbols and a source; gives bars."""
