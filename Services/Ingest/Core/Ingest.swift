// Ingest service logic.
