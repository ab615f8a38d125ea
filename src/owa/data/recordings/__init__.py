"""OWAMcap in and out: the version-normalizing reader, the writer and the seeded synthetic-episode generator."""
