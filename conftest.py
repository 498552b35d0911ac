"""The suite's root: the rotation plugin (options, fixtures, guard, evidence) and the step definitions."""

pytest_plugins = [
    "rotation_pytest.plugin",
    "steps.common",
    "steps.db_key",
    "steps.monitoring",
    "steps.hygiene",
    "steps.troubleshooting",
    "steps.troubleshooting_decryption",
    "steps.troubleshooting_api",
    "steps.providers",
    "steps.emergency",
]
