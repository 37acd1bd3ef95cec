"""Settings every test shares."""

import os

# The shipped cfg/fixproxy.toml reads the risk desk's FIX password from this variable, as `make run`
# fills it; tests that start a proxy on the shipped config get this one.
os.environ.setdefault("FIXPROXY_DESK_PASSWORD", "test-desk-password-0123")

# pg_server, pg_url, own_pg: a throwaway PostgreSQL (tests/pg.py, docs/testing.md).
pytest_plugins = ["tests.pg"]
