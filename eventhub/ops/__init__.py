"""Operating the hub (SPEC §7): what an operator watches and steers it by: its logs and its
metrics."""
