"""Delivery: from the log to subscribers' webhooks (supervisor -> sender -> receiver)."""
