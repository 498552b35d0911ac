@rotation @db_encryption_key @SOC2-CC6.1 @SOC2-CC8.1 @PCI-3.7.4 @PCI-3.7.5 @PCI-3.6.1 @GDPR-32
Feature: Database Encryption Key Rotation
  CRITICAL: this is the most sensitive rotation. Existing encrypted data must be re-encrypted.
  The clients' email addresses, phone numbers and full names, and the provider credentials the application keeps in
  the database, are encrypted under the database encryption key. Rotating the key re-encrypts every value and changes
  nothing else: no business timestamp moves and no provider rotation is logged that never happened. Afterwards every
  value must read back unchanged under the new key, and no value anywhere in the application's data may still open
  with the old one. The application is proven stopped before its configuration gets the new key, so nothing is
  written under the old key while the data moves to the new one, and proven to run on the new key afterwards. No key
  ever reaches the database server's log. Run again after an interruption at any point, the rotation takes up where
  it stopped, including any value written under the old key meanwhile. The new values are prepared while the
  application still runs, so that it is stopped only while they are put in place; whatever changed meanwhile is
  re-encrypted then. The search for values the old key still opens runs once the application is back. Before anything
  changes, everything the rotation will need is checked, and a rotation missing any of it is refused naming what is
  missing and how to grant it; only one rotation of the database runs at a time.

  Background:
    Given no other rotation of this database is running and nothing the rotation needs is missing
    And the CRM database holds client PII encrypted under the current database encryption key

  @scheduled
  Scenario: Scheduled 90-day rotation of the database encryption key
    Given the current configuration is backed up
    And the system is healthy before the rotation
    When a new database encryption key is generated
    Then the values no key opens and the other writers of the encrypted data are found before the application stops
    When all sensitive data is prepared under the new key while the application still runs
    And the application services are stopped
    And the .env file is updated with the new key
    Then the .env file keeps its restrictive permissions and every other setting
    When all sensitive data is re-encrypted under the new key
    Then every encrypted value decrypts with the new key to its original plaintext
    When the application services are started
    Then the system is healthy after the rotation
    And the encryption key loaded by the application is the new key
    And no encrypted value decrypts with the old key
    When the rotation is logged
    Then the rotation log records it with the previous key hash and the next rotation due date

  Scenario: A wrong old key is refused before anything is written
    Given the current configuration is backed up
    When the re-encryption is started with an old key that does not open the data
    Then the rotation is refused, naming the data the old key cannot decrypt
    And every encrypted value still decrypts with the current key

  Scenario: A weak new key is refused before anything is written
    Given the current configuration is backed up
    When the re-encryption is started with a new key of 16 characters
    Then the rotation is refused because the new key is too weak
    And every encrypted value still decrypts with the current key
