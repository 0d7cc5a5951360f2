"""The example project in production shape: Postgres, Redis, several workers and instances."""
