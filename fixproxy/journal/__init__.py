"""The write-ahead journal: every input of the core, recorded before the core acts on it.

``writer.Journal`` appends; ``reader`` reads segments and follows the journal as it grows;
``recovery`` rebuilds the core after a restart (the latest snapshot and the journal after it).
"""
