@monitoring @SOC2-CC7.2 @PCI-3.7.4
Feature: Automated Rotation Monitoring
  The runbook's "Check Rotation Status" and "Set Up Rotation Alerts", from the rotation log, which survives restarts
  (the app's own check starts every clock at process start and never reports a rotation due).
  Schedule: every credential type is rotated every 90 days; the warning starts 7 days before the due date.
  Semantics: days until rotation = whole days left, rounded up; due when 7 or fewer are left; expired from the due
  instant on (0 or fewer left); a credential never rotated counts as expired.

  Background:
    Given the rotation schedule is the runbook's: every 90 days, warning 7 days before
    And the clock reads 2026-11-25T06:00:00+00:00

  Scenario Outline: Status of a credential last rotated <age> ago
    Given every credential type but <credential> was rotated 1 day ago
    And <credential> was last rotated <age> ago
    When the rotation status is checked
    Then <credential> is reported <state> with <days> days until rotation
    And `rotation status` exits <exit_code>

    Examples:
      | credential        | age              | state         | days | exit_code |
      | twilio_token      | 0 days           | current       | 90   | 0         |
      | whatsapp_token    | 82 days          | current       | 8    | 0         |
      | smtp_password     | 82 days 23:59:59 | current       | 8    | 0         |
      | db_encryption_key | 83 days          | due           | 7    | 1         |
      | twilio_token      | 84 days          | due           | 6    | 1         |
      | whatsapp_token    | 89 days          | due           | 1    | 1         |
      | smtp_password     | 89 days 23:59:59 | due           | 1    | 1         |
      | db_encryption_key | 90 days          | expired       | 0    | 2         |
      | twilio_token      | 91 days          | expired       | -1   | 2         |
      | whatsapp_token    | never            | never rotated | no   | 2         |

  @SOC2-CC6.7
  Scenario: The daily check e-mails the runbook's CRITICAL and WARNING lines over verified STARTTLS
    Given the rotation log holds these latest rotations:
      | credential        | rotated  |
      | db_encryption_key | 10 days  |
      | whatsapp_token    | 85 days  |
      | twilio_token      | 95 days  |
    And the SMTP stand-in accepts the alert account only after STARTTLS
    When `rotation status --alert-email admin@eventplanning.example.com` runs with the SMTP settings from .env
    Then `rotation status` exits 2
    And the SMTP stand-in received one "Credential Rotation Alert" e-mail to admin@eventplanning.example.com with exactly these lines:
      | line                                                                                                 |
      | WARNING: whatsapp_token credentials rotation due in 5 days                                           |
      | CRITICAL: twilio_token credentials have EXPIRED!                                                     |
      | CRITICAL: smtp_password credentials have EXPIRED! (never rotated: no row in security_credential_rotations) |
    And the command's output does not contain the SMTP password

  Scenario: No alert e-mail while every credential is current
    Given every credential type was rotated 30 days ago
    And the SMTP stand-in accepts the alert account only after STARTTLS
    When `rotation status --alert-email admin@eventplanning.example.com` runs with the SMTP settings from .env
    Then `rotation status` exits 0
    And the SMTP stand-in received no e-mail
