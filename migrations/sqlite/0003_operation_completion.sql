-- Why an operation's end is assumed rather than seen at the vendor (NULL: observed).
ALTER TABLE operations ADD COLUMN completion_note TEXT;
