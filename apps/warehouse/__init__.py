"""The warehouse service (database warehouse_db)."""
