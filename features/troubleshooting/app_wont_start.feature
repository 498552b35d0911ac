@troubleshooting @SOC2-CC7.4
Feature: Troubleshooting: the application won't start after a rotation
  Runbook: check the logs; verify .env syntax with python-dotenv; restore .env from the backup; restart.
  python-dotenv does not fail on a bad line: it warns and drops it, so the runbook's `load_dotenv(); print('OK')`
  prints OK while the app starts without the setting. The syntax check here parses every line and names the bad ones
  by number (never their content).

  Background:
    Given the application is running with the current key
    And the current configuration is backed up

  Scenario: .env no longer parses after a rotation: restore the newest backup and restart
    Given a rotation left a DB_ENCRYPTION_KEY line in .env that python-dotenv cannot parse
    When the application services are restarted
    Then the application is not healthy
    And the .env syntax check names the line python-dotenv cannot parse
    When .env is restored from the newest backup
    Then the .env syntax check passes
    And .env has mode 0600 after the restore
    When the application services are restarted
    Then the system is healthy after the rotation
