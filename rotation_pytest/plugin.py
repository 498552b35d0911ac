"""The suite's pytest plugin: load it with `-p rotation_pytest.plugin` or from a conftest's `pytest_plugins`.

    options      every command-line option
    fixtures     the configuration and the deployment a scenario acts on
    providers    how provider adapters are built (stand-ins' console and witnesses on staging, the operator's on live)
    markers      credential tags from the configuration; the staging-only hook
    live_guard   the plan, the refusals and the confirmation before anything live is touched
    run_context  what a procedure checks and holds before its first change: reports folder, signing key, run lock
    evidence     the recorder fed by pytest-bdd's hooks, and the signed run folder at the end
    progress     one line per step for live and emergency runs
    emergency    the incident record and the emergency selection (--compromised)
    practices    monitoring, Best Practices and troubleshooting fixtures (alert mail, app repository, history)
    troubles     the troubles the Troubleshooting scenarios start from (staging makes them for real)
    safe_state   SIGINT/SIGTERM stop at a safe point; the one line saying where a rotation stands, what next
    bdd          private pytest / pytest-bdd internals (imported by the others, not a plugin itself)
"""

pytest_plugins = [
    "rotation_pytest.options",
    "rotation_pytest.fixtures",
    "rotation_pytest.providers",
    "rotation_pytest.markers",
    "rotation_pytest.progress",
    "rotation_pytest.emergency",
    "rotation_pytest.practices",
    "rotation_pytest.troubles",
    "rotation_pytest.evidence",
    "rotation_pytest.run_context",
    "rotation_pytest.live_guard",
    "rotation_pytest.safe_state",
]
