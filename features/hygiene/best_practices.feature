@hygiene
Feature: Best Practices
  The runbook's "Best Practices" as checks on the app's repository, its .env, the rotation log and the PostgreSQL
  server log. Every finding names the credential and where it was found, never its value (fingerprints only).

  Background:
    Given the app's source repository and the .env beside it

  @PCI-8.6.2 @live_safe
  Scenario: .env is listed in the app repository's .gitignore and not tracked
    Then git ignores .env by a rule in the repository's own .gitignore
    And .env is not tracked by git

  @PCI-3.6.1 @SOC2-CC6.1 @live_safe
  Scenario: .env is readable by its owner only, and owned by the configured account
    Then .env has mode 0600
    And .env is owned by the configured account

  @SOC2-CC6.1 @live_safe
  Scenario: Every credential is strong and unique across credential types
    Then .env holds DB_ENCRYPTION_KEY, WHATSAPP_ACCESS_TOKEN, TWILIO_AUTH_TOKEN and SMTP_PASSWORD
    And each credential meets its strength policy
    And no two credential types share a value

  @PCI-8.6.2 @live_safe
  Scenario: No credential value is committed to the app repository
    Then no credential value appears in any git-tracked file
    And no credential value appears anywhere in the repository's history

  @PCI-3.7.4 @PCI-8.6.3 @SOC2-CC7.2 @live_safe
  Scenario: Every credential type was rotated within its interval
    Given the rotation log of the CRM database
    Then every credential type has a rotation logged within its interval

  @db_encryption_key @PCI-3.6.1 @SOC2-CC6.1
  Scenario: After a database key rotation the PostgreSQL server log holds no key
    Given the PostgreSQL server logs every statement of the CRM database
    When the database encryption key is rotated
    Then the PostgreSQL server log holds neither the old nor the new key
