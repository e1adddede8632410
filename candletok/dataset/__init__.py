"""Token datasets on disk: takes bars and a tokenizer, gives a time-split folder of
Parquet shards with a manifest (build, writer, manifest) and torch datasets over it."""
