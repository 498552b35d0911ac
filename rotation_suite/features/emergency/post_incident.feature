@emergency @incident_window @SOC2-CC7.3 @SOC2-CC7.4 @SOC2-CC8.1
Feature: Post-incident actions
  Runbook "Post-Incident Actions" (within 24 hours): the audit report over the incident window, and the incident
  document with its timeline, root cause and preventive measures. The timeline comes from the run's own clock.

  Scenario: Audit the incident window and document the incident
    Given the incident window the operator named
    When the runbook's audit query runs over the incident window
    Then the audit lists every access in the incident window
    When the incident report is written to the run's report folder
    Then the incident report's timeline consists of this run's own timestamps
    And the incident report states time to revoke and time to restore for every rotated credential
    And the incident report records the root cause and the preventive measures
