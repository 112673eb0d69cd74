"""Sessions: the trigger, the plan built from a template, the runner's record of each transition, cancel, and
the session and task records in the table."""
