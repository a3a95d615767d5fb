"""Test support shared by several test files: a real OTLP sink and a rotel collector runner."""
