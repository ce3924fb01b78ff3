"""Operating the hub: what an operator watches and steers it by (metrics, logs, retention)."""
