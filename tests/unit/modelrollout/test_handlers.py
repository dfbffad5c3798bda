from __future__ import annotations

import pytest

from modelrollout.handlers import bearer_token


@pytest.mark.parametrize(
    ("api_key", "token"),
    [
        ({"BearerToken": "Bearer abc.def"}, "abc.def"),
        ({"authorization": "Bearer xyz"}, "xyz"),
        ({}, None),
        ({"BearerToken": ""}, None),
    ],
)
def test_bearer_token_from_any_client_version(api_key: dict[str, str], token: str | None) -> None:
    assert bearer_token(api_key) == token
