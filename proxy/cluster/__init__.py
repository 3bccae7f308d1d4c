"""A primary and read replicas: the changelog streamed, replayed, and the files copied after it."""
