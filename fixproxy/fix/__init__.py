"""The one FIX text layer: ``parse`` (framing and fields), ``check`` (what the dictionaries
accept), ``build`` (whole messages) and ``codec`` (fields to and from the core's events and
actions). Pure text: no engine, no socket, no file, no clock."""
