@rotation @whatsapp_token @SOC2-CC6.1 @SOC2-CC6.6 @SOC2-CC8.1 @PCI-8.6.3
Feature: WhatsApp Access Token Rotation
  Runbook section 2. The CRM sends WhatsApp messages through the Meta Graph API (WhatsApp Cloud API) with
  WHATSAPP_ACCESS_TOKEN, a system-user token. A new token is generated for the system user, written to .env, the
  application reloaded without downtime and the connection verified; then the previous token is revoked and proven
  dead (HTTP 401, OAuthException code 190).

  Background:
    Given the application is running with the current WhatsApp access token

  Scenario: Scheduled 90-day rotation of the WhatsApp access token
    Given the current configuration is backed up
    And the system is healthy before the rotation
    When a new WhatsApp access token is generated for the system user in Meta Business Suite
    Then the new WhatsApp access token is tested with a read-only phone number fetch before full deployment
    When the .env file is updated with the new WhatsApp access token
    Then the .env file holds the new WhatsApp access token, keeps mode 0600 and every other setting
    When the application is reloaded
    Then the system is healthy after the rotation
    And the application uses the new WhatsApp access token
    When a test WhatsApp message is sent to the admin number with the new WhatsApp access token
    Then the test WhatsApp message is delivered to the admin number
    When the old WhatsApp access token is revoked in Meta Business Suite
    Then the old WhatsApp access token is rejected with HTTP 401 and error code 190
    And the new WhatsApp access token still works and the application is still healthy
    When the WhatsApp access token rotation is logged
    Then security_credential_rotations records the whatsapp_token rotation with the previous credential's hash and the next rotation due in 90 days
