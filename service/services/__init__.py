"""Use cases. They own transaction boundaries and raise domain errors."""
