"""HTTP API: routes, request helpers, and the single place errors become responses."""
