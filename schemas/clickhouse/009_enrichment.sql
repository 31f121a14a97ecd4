-- Enrichment (email_event.avsc v2): what the normalize stage derives from the user agent
-- and the IP of engagement events. '' when absent, like the other optional text columns.
-- machine_open: on opened events 1 (a machine: Apple Mail Privacy Protection's prefetch, a
-- link scanner, the provider's own flag) or 0 (a human); NULL on other event types and on
-- rows loaded before this migration. Human opens: event_type = 'opened' AND machine_open = 0
-- (rows from before the migration: ifNull(machine_open, 0) = 0).
ALTER TABLE {database}.email_events ADD COLUMN client_name String DEFAULT '';
ALTER TABLE {database}.email_events ADD COLUMN client_os String DEFAULT '';
ALTER TABLE {database}.email_events ADD COLUMN device_class String DEFAULT '';
ALTER TABLE {database}.email_events ADD COLUMN machine_open Nullable(UInt8);
ALTER TABLE {database}.email_events ADD COLUMN machine_reason String DEFAULT '';
ALTER TABLE {database}.email_events ADD COLUMN geo_source String DEFAULT '';
