"""Token datasets on disk: takes bars and a tokenizer, gives a time-split folder of
Parquet shards with a manifest (build, writer, manifest) and torch datasets over it."""

# What the package offers: its modules. Names are imported from them; this file stays
# light, so importing one module never loads the others (nor torch).
__all__ = ["build", "groups", "manifest", "splits", "torchdata", "writer"]
