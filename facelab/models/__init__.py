"""Paper models, one per file; importing this package registers them all."""
