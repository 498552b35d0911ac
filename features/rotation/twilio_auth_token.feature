@rotation @twilio_token @SOC2-CC6.1 @SOC2-CC6.6 @SOC2-CC8.1 @PCI-8.6.3
Feature: Twilio Auth Token Rotation
  Runbook section 3. The CRM sends SMS through Twilio with TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN.
  Twilio rotates an auth token in two moves: a secondary auth token is created next to the primary, deployed and
  tested, then promoted, and the old primary stops working at promotion. The new token is tested with a read-only
  call before full deployment, a test SMS goes to the admin number, and the old token is proven dead afterwards.

  Background:
    Given the application is running with the current Twilio auth token

  Scenario: Scheduled 90-day rotation of the Twilio auth token
    Given the current configuration is backed up
    And the system is healthy before the rotation
    When a new Twilio auth token is created in the Twilio Console as the secondary auth token
    Then the new Twilio auth token is tested with a read-only account fetch before full deployment
    When the .env file is updated with the new Twilio auth token
    Then the .env file holds the new Twilio auth token, keeps mode 0600 and every other setting
    When the application is reloaded
    Then the system is healthy after the rotation
    And the application uses the new Twilio auth token
    When a test SMS is sent to the admin number with the new Twilio auth token
    Then the test SMS is delivered to the admin number
    When the new Twilio auth token is promoted to primary
    Then the old Twilio auth token is rejected with HTTP 401 and error code 20003
    And the new Twilio auth token still works and the application is still healthy
    When the Twilio auth token rotation is logged
    Then security_credential_rotations records the twilio_token rotation with the previous credential's hash and the next rotation due in 90 days
