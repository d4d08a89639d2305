"""dlnotes: deep-learning notes that run, with the components later chapters reuse.

Importing the package is cheap (no torch); it installs a hook so that a
`DlnotesError` ends a script with its one-line message instead of a traceback.
"""

from dlnotes.errors import install_error_hook

__version__ = "0.1.0"

install_error_hook()
