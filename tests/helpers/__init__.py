"""Test code shared by several test files (question factories, the scripted study, training data and the tiny
model, fake servers, subprocess workers); importable as `helpers.*` through pytest's `pythonpath` setting."""
