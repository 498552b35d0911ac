@rotation @smtp_password @SOC2-CC6.1 @SOC2-CC6.7 @SOC2-CC8.1 @PCI-8.6.3
Feature: SMTP Password Rotation
  Runbook section 4. The CRM sends e-mail through an SMTP submission server with a username and password kept in
  .env, always over STARTTLS with a verified certificate. SMTP has no rotation API: the operator generates the new
  password at the email provider (for Gmail a new App Password) and hands it over without it ever appearing on a
  command line. Every setting a later step reads (SMTP_HOST, SMTP_PORT, SMTP_USERNAME, SMTP_FROM_EMAIL, ADMIN_EMAIL,
  SMTP_CA_FILE) is checked before anything changes. The connection is tested before the application is reloaded, a
  test email from SMTP_FROM_EMAIL must be accepted by the email provider (SMTP tells no more), and the old password is
  revoked at the provider by the operator, who is asked at the terminal, and proven dead only by the provider's
  permanent refusal (535 5.7.8); a temporary failure (454 4.7.0) proves nothing.

  Background:
    Given the application is running with the current SMTP password

  @scheduled
  Scenario: Scheduled 90-day rotation of the SMTP password
    Given the current configuration is backed up
    And the system is healthy before the rotation
    When a new SMTP password is generated at the email provider
    Then the new SMTP password is tested before full deployment
    When the configuration is updated with the new SMTP password
    Then the .env file holds the new SMTP password, keeps mode 0600 and every other setting
    When the application is reloaded
    Then the system is healthy after the rotation
    And the application uses the new SMTP password
    When a test email is sent to the admin address with the new SMTP password
    Then the test email is accepted by the email provider for the admin address and no delivery failure is reported
    When the old SMTP password is revoked at the email provider
    Then the old SMTP password is rejected by the email provider
    And the new SMTP password still works and the application is still healthy
    When the SMTP password rotation is logged
    Then the rotation log records the SMTP password rotation with the previous password's hash and the next rotation due in 90 days
