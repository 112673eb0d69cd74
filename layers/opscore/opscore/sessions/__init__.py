"""Sessions: the trigger, the session runner generated from a template (its graph, its ASL, its machine), the
dispatch and the record of each attempt's end, cancel, and the session and task records in the table."""
