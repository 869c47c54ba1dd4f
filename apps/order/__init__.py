"""The order service (database order_db)."""
