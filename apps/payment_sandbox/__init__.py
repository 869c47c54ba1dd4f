"""A local card-provider sandbox for the payment service (its own process, port 8009, its own ledger)."""
