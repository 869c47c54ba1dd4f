"""The analytics service (database analytics_db)."""
