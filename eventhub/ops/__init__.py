"""Operating the hub (SPEC §7): its logs."""
