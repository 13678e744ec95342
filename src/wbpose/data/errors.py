"""The one exception type the data layer raises for bad input files.

Every message names the file, the record (image id, annotation id, detection index) and what was expected,
so a broken COCO copy or a wrong path is diagnosed from the message alone (STYLE: "errors name the file, the
record and what was expected").
"""

from __future__ import annotations


class DataError(ValueError):
    """Bad or missing dataset input: a missing/corrupt image, a malformed json, an empty annotation file."""
