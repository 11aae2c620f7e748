"""Test helpers shared by several test files (fake servers, subprocess workers)."""
