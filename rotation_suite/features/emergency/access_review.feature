@emergency @SOC2-CC7.2 @SOC2-CC7.3 @SOC2-CC7.4
Feature: Verify no unauthorized access, and notify stakeholders
  Runbook "Emergency Rotation Procedure", steps 4 and 5: check the data access log and the messages sent for
  suspicious activity over the last 24 hours (the review window can be changed), then notify the security team, the
  system administrators and the compliance officer. An access is flagged when its accessor is not allowed, it comes
  from outside the allowed networks, it is an export or a delete, or its volume is far above the previous days'
  baseline; a message is flagged when it was sent but not originated by the app.

  Scenario: Verify no unauthorized access over the review window
    Given the review policy names the allowed accessors, networks and the app's message markers
    When the data access log and the messages sent are reviewed over the review window
    Then the review states how many rows of each table it reviewed
    And no access and no message is flagged for investigation

  Scenario: Notify stakeholders of the rotation and the review's findings
    Given the security team, the system administrators and the compliance officer have e-mail addresses
    When the notification is sent to them through the mail relay over a verified encrypted connection
    Then the relay accepted it for every stakeholder
    And the notification says what was rotated, when, and what the review found, without any credential
