"""The customer service (database customer_db)."""
