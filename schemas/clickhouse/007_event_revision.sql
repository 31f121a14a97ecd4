-- Replays after a parser fix (`mailpipe replay`): a corrected event is written with the
-- replay's revision (Unix ms of its start), and the rows it supersedes (revision lower,
-- same event id) are then deleted, so email_events keeps one row per event whatever field
-- the fix changed. 0: written by the live pipeline.
ALTER TABLE {database}.email_events ADD COLUMN revision UInt64 DEFAULT 0;
