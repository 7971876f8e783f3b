"""Settlement: everything after the meter stops (the single capture, webhooks, refunds)."""
