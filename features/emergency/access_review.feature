@emergency @SOC2-CC7.2 @SOC2-CC7.3 @SOC2-CC7.4
Feature: Verify no unauthorized access, and notify stakeholders
  Runbook "Emergency Rotation Procedure", steps 4 and 5: check crm_data_access_log and crm_communications for
  suspicious activity over the last 24 hours (window configurable), then notify the security team, the system
  administrators and the compliance officer. A row is flagged when its accessor is not allowlisted, its IP address is
  outside the allowed networks, it is an export or a delete, its volume is far above the previous days' baseline, or
  it is a sent message the app did not originate (no origin marker or template of the app).

  Scenario: Verify no unauthorized access over the review window
    Given the review policy names the allowed accessors, networks and the app's message markers
    When crm_data_access_log and crm_communications are reviewed over the review window
    Then the review states how many rows of each table it reviewed
    And no access and no message is flagged for investigation

  Scenario: Notify stakeholders of the rotation and the review's findings
    Given the security team, the system administrators and the compliance officer have e-mail addresses
    When the notification is sent over SMTP with verified STARTTLS
    Then the relay accepted it for every stakeholder
    And the notification says what was rotated, when, and what the review found, without any credential
