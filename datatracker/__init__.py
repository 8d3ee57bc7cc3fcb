"""Code shared by the collector and the API: settings, database access, symbols."""
