"""Pre-trade risk: limits and rules (pure functions)."""
