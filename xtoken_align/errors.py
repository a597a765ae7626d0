"""The one exception type users see: a clear message, no traceback.

Library code raises `XTokenError` for anything caused by the user's input (a missing file, a
corrupt tokenizer, an unknown name). The CLI prints its message and exits non-zero; the web layer
turns it into a 4xx. Anything else is a bug and keeps its traceback.
"""


class XTokenError(Exception):
    """A problem with the user's input, stated in one line."""
