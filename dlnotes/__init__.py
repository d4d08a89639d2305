"""dlnotes: deep-learning notes that run, with the components later chapters reuse.

Importing the package is cheap (no torch) and changes nothing global: a chapter
script asks for one-line error messages itself (`dlnotes.env.banner` installs
`dlnotes.errors.install_error_hook`).
"""

__version__ = "0.1.0"
