"""The returns service (database return_db)."""
