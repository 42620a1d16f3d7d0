"""Dataset construction: images → validated scenarios → the official parquet layout."""
