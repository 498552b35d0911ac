@emergency @SOC2-CC7.3 @SOC2-CC7.4 @SOC2-CC8.1 @PCI-8.6.3
Feature: Emergency rotation of a compromised provider credential
  Runbook "Emergency Rotation Procedure", Immediate Actions (within 1 hour): revoke the compromised credential at the
  provider, generate the new one without waiting for a maintenance window, update .env and restart the services
  immediately. There is no overlap window: the compromised credential is dead before its replacement is deployed.
  The replacement is kept safely before anything is revoked, so an interrupted run, started again, finishes the
  rotation without revoking twice and without losing the replacement. The operator names the compromised credentials;
  a staging rehearsal treats every credential as compromised.

  Scenario Outline: Compromised <credential>
    Given the <credential> is reported compromised
    And the system is healthy before the rotation
    When the compromised credential is revoked at the provider and a replacement issued
    Then the provider rejects the compromised credential
    When the .env file is updated with the new credential
    And the application services are restarted immediately
    Then the system is healthy again on the new credential
    When the rotation is logged with reason "emergency"
    Then the rotation log records the emergency rotation of the compromised credential

    @twilio_token
    Examples: Twilio
      | credential        |
      | Twilio auth token |

    @whatsapp_token
    Examples: WhatsApp
      | credential            |
      | WhatsApp access token |

    @smtp_password
    Examples: SMTP
      | credential    |
      | SMTP password |
