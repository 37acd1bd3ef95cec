"""Risk-desk controls: the thread-safe control facade, the HTTP API and the FIX admin session."""
