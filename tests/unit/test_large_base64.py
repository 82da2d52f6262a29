"""Large base64 values (a document's content) are checked once, decoded once, and still refused when bad."""

from __future__ import annotations

import base64
import os

import pytest

from carnet.domain import documents
from carnet.domain.errors import InvalidResource
from carnet.domain.validation import validate

CONTENT = os.urandom(30_000)
DATA = base64.b64encode(CONTENT).decode()


def document_with(data: str) -> dict[str, object]:
    return {
        "resourceType": "DocumentReference",
        "status": "current",
        "content": [{"attachment": {"contentType": "application/pdf", "data": data}}],
    }


def test_a_large_valid_binary_and_document_validate() -> None:
    validate({"resourceType": "Binary", "contentType": "application/pdf", "data": DATA})
    validate(document_with(DATA))


def test_a_large_value_that_is_not_base64_is_refused_at_its_element() -> None:
    bad = DATA[:1000] + "!" + DATA[1001:]
    with pytest.raises(InvalidResource) as binary:
        validate({"resourceType": "Binary", "contentType": "application/pdf", "data": bad})
    assert binary.value.expression == ("Binary.data",)
    with pytest.raises(InvalidResource) as document:
        validate(document_with(bad))
    assert document.value.expression == ("DocumentReference.content[0].attachment.data",)


def test_the_rest_of_a_resource_with_large_data_is_still_validated() -> None:
    with pytest.raises(InvalidResource, match="contentType"):
        validate({"resourceType": "Binary", "data": DATA})
    wrong = document_with(DATA)
    wrong["content"][0]["attachment"]["size"] = "large"  # type: ignore[index]
    with pytest.raises(InvalidResource, match="size"):
        validate(wrong)


def test_a_large_value_is_decoded_once_for_its_validation_hash_and_binary() -> None:
    data = base64.b64encode(os.urandom(20_000)).decode()
    before = documents._decoded.cache_info()
    validate(document_with(data))
    content = documents.decode_base64(data, "DocumentReference.content[0].attachment.data")
    after = documents._decoded.cache_info()
    assert content == base64.b64decode(data)
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 1)
    # A value split over lines (as some senders wrap base64) decodes to the same content.
    wrapped = "\n".join(data[i : i + 76] for i in range(0, len(data), 76))
    assert documents.decode_base64(wrapped, "Binary.data") == content


def test_a_value_encoded_here_is_not_decoded_back() -> None:
    """A document this process encoded (a CDA made into a DocumentReference) is checked without a decode."""
    content = os.urandom(30_000)
    data = documents.encode_base64(content)
    assert data == base64.b64encode(content).decode()
    before = documents._decoded.cache_info()
    validate(document_with(data))
    assert documents.decode_base64(data, "DocumentReference.content[0].attachment.data") == content
    after = documents._decoded.cache_info()
    assert (after.misses, after.hits) == (before.misses, before.hits)
    # A different text (one character changed) is decoded and checked as any value.
    altered = ("B" if data[0] != "B" else "C") + data[1:]
    assert documents.decode_base64(altered, "Binary.data") == base64.b64decode(altered)
