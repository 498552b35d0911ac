@emergency @db_encryption_key @SOC2-CC7.3 @SOC2-CC7.4 @SOC2-CC8.1 @PCI-3.7.5
Feature: Emergency rotation of a compromised database encryption key
  Runbook "Emergency Rotation Procedure", Immediate Actions, for the key that encrypts the clients' personal data: the
  application is stopped first so that nothing reads or writes with the compromised key, a new key is generated and
  put into .env, every encrypted value is re-encrypted under it and proven, and only then is the application started
  again. The compromised key is revoked when it opens no value any more.

  Scenario: Compromised database encryption key
    Given the database encryption key is reported compromised
    And the system is healthy before the rotation
    When the application services are stopped so that nothing reads with the compromised key
    And a replacement database encryption key is generated
    And the .env file is updated with the replacement key
    Then the .env file holds the replacement key, keeps mode 0600 and every other setting
    When all sensitive data is re-encrypted under the replacement key
    Then every encrypted value decrypts with the replacement key to its original plaintext
    And the compromised key decrypts no value any more
    When the application services are restarted immediately
    Then the system is healthy again on the new credential
    When the rotation is logged with reason "emergency"
    Then the rotation log records the emergency rotation of the compromised credential
