"""The checkout service (database checkout_db)."""
