"""The CRM database: connections that keep secrets out of logs, the schema, and a synthetic seeder."""
