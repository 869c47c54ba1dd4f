"""What every service shares: topology, settings, app plumbing (kept once, not copied per service)."""
