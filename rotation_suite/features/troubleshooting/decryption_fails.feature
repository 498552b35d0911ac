@troubleshooting @db_encryption_key @staging_only @PCI-3.7.5 @GDPR-32 @SOC2-CC7.4
Feature: Troubleshooting: decryption fails after a key rotation
  Runbook: "Check if re-encryption completed ... If mismatch, re-run migration with old key. Then update to new key."
  Counting non-NULL values, as the runbook's query does, cannot tell old ciphertext from new: here every value is
  tried with the new key and then the old one, and a value neither key opens is named by its row and column.
  Staging only: each scenario kills a rotation part-way on purpose; on live, re-run the rotation command, which
  takes up an interrupted rotation where it stopped.

  Background:
    Given the CRM database holds client PII encrypted under the current database encryption key
    And the current configuration is backed up
    And a database key rotation died part-way through re-encrypting the client data

  Scenario: Finish the interrupted re-encryption with the old key
    When the encrypted values are counted per key
    Then some values are under the new key, the others under the old key, and none under neither
    When the interrupted re-encryption is finished with the old key from the newest backup
    Then the repair reports every value verified under the new key
    When the encrypted values are counted per key
    Then every value is under the new key and none under the old key or neither
    When the application services are started
    Then the system is healthy after the rotation
    And the encryption key loaded by the application is the new key

  Scenario: A value under neither key is reported with its row and column, never skipped
    Given one value the rotation has not reached yet is under neither key
    When the encrypted values are counted per key
    Then the count names that value by its row and column as under neither key
    When the interrupted re-encryption is finished with the old key from the newest backup
    Then the repair stops and names that value by its row and column
    And the re-encryption stays unfinished
    When the encrypted values are counted per key
    Then the count still names that value by its row and column as under neither key
