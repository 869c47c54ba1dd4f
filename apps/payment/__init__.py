"""The payment service (database payment_db)."""
