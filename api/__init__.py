"""The HTTP API: a thin Litestar layer over named SQL queries."""
