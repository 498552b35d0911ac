"""The checkout's root: the suite's plugins (rotation_suite/plugins.py), so `pytest` here runs the procedures."""

pytest_plugins = ["rotation_suite.plugins"]
