@hygiene
Feature: Best Practices
  The runbook's "Best Practices" as checks on the app's repository, its .env, the rotation log and the PostgreSQL
  server log. Every finding names the credential and where it was found, never its value (fingerprints only).
  The credentials, and the strength policy each must meet, come from the deployment configuration.
  Every scenario but the last only reads, so it may run against the live systems too.

  Background:
    Given the app's source repository and the .env beside it

  @PCI-8.6.2
  Scenario: Never commit credentials: .env is listed in the app repository's .gitignore and not tracked
    Then git ignores .env by a rule in the repository's own .gitignore
    And .env is not tracked by git

  @PCI-3.6.1 @SOC2-CC6.1
  Scenario: Limit credential access: .env is readable by its owner only, and owned by the configured account
    Then only the owner may read or write .env
    And .env is owned by the configured account

  @SOC2-CC6.1
  Scenario: Use strong, unique credentials
    Then .env holds every credential of the deployment configuration
    And each credential meets its strength policy
    And no two credentials share a value

  @PCI-8.6.2
  Scenario: Never commit credentials: no credential value is in the app repository or its history
    Then no credential value appears in any git-tracked file
    And no credential value appears anywhere in the repository's history

  @PCI-3.7.4 @PCI-8.6.3 @SOC2-CC7.2
  Scenario: Document all rotations: every credential was rotated within its interval
    Given the latest rotations in the rotation log
    Then every credential has a rotation logged within its interval

  @db_encryption_key @PCI-3.6.1 @SOC2-CC6.1 @staging_only
  Scenario: After a database key rotation the PostgreSQL server log holds no key
    Given the PostgreSQL server logs every statement of the CRM database
    When the database encryption key is rotated
    Then the PostgreSQL server log holds neither the old nor the new key
