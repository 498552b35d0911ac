@monitoring @SOC2-CC7.2 @PCI-3.7.4 @staging_only
Feature: Automated Rotation Monitoring
  The runbook's "Check Rotation Status" and "Set Up Rotation Alerts", from the rotation log, which survives restarts
  (the app's own check starts every clock at process start and never reports a rotation due).
  Each credential's interval and warning period come from the deployment configuration, the same registry that
  sets a logged rotation's next due date, so the schedule and the log cannot disagree. A rotation the application
  logs itself, under its own name for the service, counts for that credential.
  Semantics: days until rotation = whole days left, rounded up; due when the warning period has begun; expired from
  the due instant on (0 or fewer days left); a credential never rotated counts as expired.
  These scenarios write the rotation history they check, so they run against staging only.

  Background:
    Given every credential is rotated every 90 days, with the warning 7 days before
    And the clock reads 2026-11-25T06:00:00+00:00

  Scenario Outline: Status of a credential last rotated <age>
    Given the <credential> was last rotated <age>
    And every other credential was rotated 1 day ago
    When the rotation status is checked
    Then the <credential> is reported <state> with <days> days until rotation
    And the daily check reports <verdict>

    Examples:
      | credential              | age                  | state         | days | verdict                  |
      | Twilio auth token       | 0 days ago           | current       | 90   | every credential current |
      | WhatsApp access token   | 82 days ago          | current       | 8    | every credential current |
      | SMTP password           | 82 days 23:59:59 ago | current       | 8    | every credential current |
      | database encryption key | 83 days ago          | due           | 7    | a rotation due           |
      | Twilio auth token       | 84 days ago          | due           | 6    | a rotation due           |
      | WhatsApp access token   | 89 days ago          | due           | 1    | a rotation due           |
      | SMTP password           | 89 days 23:59:59 ago | due           | 1    | a rotation due           |
      | database encryption key | 90 days ago          | expired       | 0    | a credential expired     |
      | Twilio auth token       | 91 days ago          | expired       | -1   | a credential expired     |
      | WhatsApp access token   | never                | never rotated | no   | a credential expired     |

  Scenario: A rotation the application logged itself counts for its credential
    Given the Twilio auth token was last rotated 95 days ago
    And every other credential was rotated 1 day ago
    And the application itself logged a rotation of the Twilio auth token 10 days ago
    When the rotation status is checked
    Then the Twilio auth token is reported current with 80 days until rotation

  @SOC2-CC6.7
  Scenario: The daily check e-mails the runbook's CRITICAL and WARNING lines to the administrator
    Given the rotation log holds these latest rotations:
      | credential              | rotated |
      | database encryption key | 10 days |
      | WhatsApp access token   | 85 days |
      | Twilio auth token       | 95 days |
    And the alert mail account accepts logins only over a verified encrypted connection
    When the daily rotation check runs with alerts to admin@eventplanning.example.com
    Then the administrator receives one "Credential Rotation Alert" e-mail, sent encrypted, with exactly these lines:
      | line                                                                                                       |
      | WARNING: whatsapp_token credentials rotation due in 5 days                                                 |
      | CRITICAL: twilio_token credentials have EXPIRED!                                                           |
      | CRITICAL: smtp_password credentials have EXPIRED! (never rotated: no row in security_credential_rotations) |

  Scenario: No alert e-mail while every credential is current
    Given every credential was rotated 30 days ago
    And the alert mail account accepts logins only over a verified encrypted connection
    When the daily rotation check runs with alerts to admin@eventplanning.example.com
    Then the administrator receives no e-mail
