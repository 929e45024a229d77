"""Conformance suites shipped with ragkit, so every backend is held to the same contract."""
