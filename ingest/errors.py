"""Errors a reader raises for a file it cannot turn into a document.

Each says what is wrong with which file and what the user can do. A batch ingest catches
`IngestError` per file, reports it, and goes on with the other files.
"""

from __future__ import annotations

from sopforge.errors import UserError


class IngestError(UserError):
    """A file could not be ingested. `code` is a short stable name used in reports and tests."""

    code = "ingest_error"

    def __init__(self, path: str, message: str):
        self.path = str(path)
        self.message = message
        super().__init__(f"{self.path}: {message}")


class UnsupportedFormatError(IngestError):
    code = "unsupported_format"


class EmptyFileError(IngestError):
    code = "empty_file"


class CorruptFileError(IngestError):
    code = "corrupt_file"


class PasswordRequiredError(IngestError):
    code = "password_required"


class ScannedPDFError(IngestError):
    code = "scanned_no_text"


class FileTooLargeError(IngestError):
    code = "file_too_large"


class NoContentError(IngestError):
    code = "no_content"


class UnreadableFileError(IngestError):
    """The file itself could not be opened (missing, a folder, no permission)."""

    code = "unreadable_file"
