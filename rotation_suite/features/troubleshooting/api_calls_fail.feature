@troubleshooting @twilio_token @SOC2-CC6.6 @SOC2-CC7.4 @PCI-8.6.3
Feature: Troubleshooting: API calls fail after a token rotation
  Runbook: verify the new token is valid; test the API connection manually; check for typos in .env; ensure the
  application reloaded its configuration. Each check names what it compared by fingerprint, never the token.

  Background:
    Given the application is running with the current Twilio auth token

  @staging_only
  Scenario: The application never reloaded after the Twilio auth token was rotated
    Given the current configuration is backed up
    And the Twilio auth token was rotated at Twilio and in .env, but the application was not reloaded
    Then the application's Twilio API calls fail
    When the Twilio auth token in .env is checked with Twilio
    Then Twilio accepts the Twilio auth token in .env
    And .env has no typo: it parses and the Twilio auth token has the form Twilio issues
    And the application runs on a configuration loaded before .env last changed, with another Twilio auth token
    When the application is reloaded
    Then the system is healthy again
    And the application uses the Twilio auth token in .env
