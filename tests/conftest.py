"""Shared fixtures. Test files mirror the modules they test (tests/protocol/test_framing.py …)."""
