@troubleshooting @SOC2-CC7.4 @staging_only
Feature: Troubleshooting: Application Won't Start After Rotation
  Runbook: check the logs; verify .env syntax; restore from backup if needed; restart.
  python-dotenv does not fail on a line it cannot parse: it warns and drops the line, so the runbook's
  `load_dotenv(); print('OK')` prints OK while the app starts without the setting. The syntax check here parses
  every line and names the bad ones by number, never their content.
  These scenarios break .env on purpose, so they run against staging only.

  Background:
    Given the current configuration is backed up
    And a rotation of the database encryption key left its line in .env unparsable
    And the application won't start

  Scenario: Application won't start after rotation: the .env syntax check names the line that does not parse
    When the .env syntax is verified
    Then the check names that line, and no other

  Scenario: Application won't start after rotation: restoring the newest backup and restarting brings it back
    When .env is restored from the newest backup
    And the application services are restarted
    Then the .env syntax check passes
    And only the owner may read or write .env
    And the system is healthy again
