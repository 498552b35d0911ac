"""The suite's pytest plugins: the rotation plugin (options, fixtures, guard, evidence) and the step definitions.
Loaded by the checkout's conftest.py and by `rotation` (`-p rotation_suite.plugins`)."""

pytest_plugins = [
    "rotation_pytest.plugin",
    "rotation_suite.steps.common",
    "rotation_suite.steps.db_key",
    "rotation_suite.steps.monitoring",
    "rotation_suite.steps.hygiene",
    "rotation_suite.steps.troubleshooting",
    "rotation_suite.steps.troubleshooting_decryption",
    "rotation_suite.steps.troubleshooting_api",
    "rotation_suite.steps.providers",
    "rotation_suite.steps.emergency",
]
