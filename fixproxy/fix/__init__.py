"""The one FIX text layer. Pure text: no engine, no socket, no file, no clock.

- ``parse``: a byte stream cut into messages (``Framer``: BodyLength, CheckSum, garbled input
  skipped), a message read strictly (``fields``: repeated and out-of-order tags named as a
  ``Problem`` with its 373/371) or leniently (``parse``), one field without a parse
  (``first_value``, ``last_value``), the body of a stored message for a resend (``body_of``).
- ``check``: what the FIX 4.2 and 4.4 dictionaries accept (MsgTypes, required fields, value forms,
  the session Reject a refused form gets); ``is_number``, the one grammar of a FIX float.
- ``build``: whole messages with their header (``build``) and frames an engine adds the header to
  (``frame``), sharing one BodyLength/CheckSum writer; ``stamp`` for SendingTime.
- ``codec``: fields to and from the core's events and actions (``oms_to_event``,
  ``venue_to_event``, ``fields_to_order``, ``action_to_message``), 4.2 and 4.4 alike.
- ``desk``: the risk-desk session's KillSwitchRequest and KillSwitchReport (``request_to_event``,
  ``result_to_report``, ``refusal_to_report``).
"""
