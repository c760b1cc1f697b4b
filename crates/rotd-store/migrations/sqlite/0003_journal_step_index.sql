-- Finding a secret's latest entry of one step (e.g. its last promotion) without scanning its history.
CREATE INDEX rotation_journal_by_step ON rotation_journal (secret_name, step, id);
