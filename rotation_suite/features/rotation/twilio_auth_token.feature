@rotation @twilio_token @SOC2-CC6.1 @SOC2-CC6.6 @SOC2-CC8.1 @PCI-8.6.3
Feature: Twilio Auth Token Rotation
  Runbook section 3. The CRM sends SMS through Twilio with its account SID and auth token, kept in .env.
  Twilio rotates an auth token in two moves: a secondary auth token is created next to the primary, deployed and
  tested, then promoted to primary, and the old primary stops working at promotion. The new token is tested before
  full deployment, a test SMS goes to the admin number and must be delivered, and the old token is proven dead
  afterwards.

  Background:
    Given the application is running with the current Twilio auth token

  @scheduled
  Scenario: Scheduled 90-day rotation of the Twilio auth token
    Given the current configuration is backed up
    And the system is healthy before the rotation
    When a new Twilio auth token is created as the secondary auth token
    Then the new Twilio auth token is tested before full deployment
    When the configuration is updated with the new Twilio auth token
    Then the .env file holds the new Twilio auth token, keeps mode 0600 and every other setting
    When the application is reloaded
    Then the system is healthy after the rotation
    And the application uses the new Twilio auth token
    When a test SMS is sent to the admin number with the new Twilio auth token
    Then the test SMS is delivered to the admin number
    When the new Twilio auth token is promoted to primary
    Then the old Twilio auth token is rejected by Twilio
    And the new Twilio auth token still works and the application is still healthy
    When the Twilio auth token rotation is logged
    Then the rotation log records the Twilio auth token rotation with the previous token's hash and the next rotation due in 90 days
