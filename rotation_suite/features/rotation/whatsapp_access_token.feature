@rotation @whatsapp_token @SOC2-CC6.1 @SOC2-CC6.6 @SOC2-CC8.1 @PCI-8.6.3
Feature: WhatsApp Access Token Rotation
  Runbook section 2. The CRM sends WhatsApp messages through Meta's WhatsApp Cloud API with a system-user access
  token kept in .env. A new token is generated for the system user, tested, written to .env, the application
  reloaded (restarted where it cannot reload, which takes it down until it answers healthy again: the evidence
  records that window) and the connection verified with a test message, which Meta must accept (whether it was
  delivered only the application hears, and its own records prove it where configured); then the previous token is
  revoked and proven dead.

  Background:
    Given the application is running with the current WhatsApp access token

  @scheduled
  Scenario: Scheduled 90-day rotation of the WhatsApp access token
    Given the current configuration is backed up
    And the system is healthy before the rotation
    When a new WhatsApp access token is generated for the system user
    Then the new WhatsApp access token is tested before full deployment
    When the configuration is updated with the new WhatsApp access token
    Then the .env file holds the new WhatsApp access token, keeps mode 0600 and every other setting
    When the application is reloaded
    Then the system is healthy after the rotation
    And the application uses the new WhatsApp access token
    When a test WhatsApp message is sent to the admin number with the new WhatsApp access token
    Then the test WhatsApp message is accepted by Meta for the admin number and no delivery failure is reported
    When the old WhatsApp access token is revoked
    Then the old WhatsApp access token is rejected by Meta
    And the new WhatsApp access token still works and the application is still healthy
    When the WhatsApp access token rotation is logged
    Then the rotation log records the WhatsApp access token rotation with the previous token's hash and the next rotation due in 90 days
