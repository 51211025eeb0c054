-- Log lines are stored as one text per log event, outside the JSON data (db/job_sql.ts). The
-- append-only triggers of 0001 and 0002 cover the new column: they refuse any UPDATE or
-- DELETE of an event row, and any insert over an existing one. Rows written before keep a
-- null `log_text` and their lines in `data`, and read back as they are.
ALTER TABLE `events` ADD `log_text` text;
