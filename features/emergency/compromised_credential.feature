@emergency @SOC2-CC7.3 @SOC2-CC7.4 @SOC2-CC8.1 @PCI-3.7.5 @PCI-8.6.3
Feature: Emergency rotation of a compromised credential
  Runbook "Emergency Rotation Procedure", Immediate Actions (within 1 hour): revoke the compromised credential at
  the provider first, generate the new one (skipping the maintenance window), update .env and restart the services
  immediately. There is no overlap window: the compromised credential is dead before its replacement is deployed.
  `--compromised twilio,whatsapp,smtp,db_encryption_key` chooses the scenarios (staging default: all four).

  @twilio_token
  Scenario: Compromised Twilio auth token
    Given the Twilio auth token is reported compromised
    And the system is healthy before the rotation
    When the compromised credential is revoked at the provider and a replacement issued
    Then the provider rejects the compromised credential
    When the .env file is updated with the new credential
    And the application services are restarted immediately
    Then the system is healthy again on the new credential
    When the rotation is logged with reason "emergency"
    Then security_credential_rotations records the emergency rotation of the compromised credential

  @whatsapp_token
  Scenario: Compromised WhatsApp access token
    Given the WhatsApp access token is reported compromised
    And the system is healthy before the rotation
    When the compromised credential is revoked at the provider and a replacement issued
    Then the provider rejects the compromised credential
    When the .env file is updated with the new credential
    And the application services are restarted immediately
    Then the system is healthy again on the new credential
    When the rotation is logged with reason "emergency"
    Then security_credential_rotations records the emergency rotation of the compromised credential

  @smtp_password
  Scenario: Compromised SMTP password
    Given the SMTP password is reported compromised
    And the system is healthy before the rotation
    When the compromised credential is revoked at the provider and a replacement issued
    Then the provider rejects the compromised credential
    When the .env file is updated with the new credential
    And the application services are restarted immediately
    Then the system is healthy again on the new credential
    When the rotation is logged with reason "emergency"
    Then security_credential_rotations records the emergency rotation of the compromised credential

  @db_encryption_key
  Scenario: Compromised database encryption key
    Given the database encryption key is reported compromised
    And the system is healthy before the rotation
    When the application services are stopped so that nothing reads with the compromised key
    And a new database encryption key is generated for the emergency
    And the .env file is updated with the new key
    And all sensitive data is re-encrypted under the new key
    Then every encrypted value decrypts with the new key to its original plaintext
    And the compromised key decrypts no value any more
    When the application services are restarted immediately
    Then the system is healthy again on the new credential
    When the rotation is logged with reason "emergency"
    Then security_credential_rotations records the emergency rotation of the compromised credential
