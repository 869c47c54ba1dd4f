"""The catalog service (database catalog_db)."""
